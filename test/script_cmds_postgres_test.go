package test

import (
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fwctl/fwctl/internal/testenv"
)

// postgres start VAR: start a private PostgreSQL server
// (scripts/postgres.sh) and set $VAR to the DSN of an empty database on it;
// it is stopped when the script ends. Guard it with
// [!postgres] missing PostgreSQL and [!postgres] skip.
func cmdPostgres(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 || args[0] != "start" {
		ts.Fatalf("usage: postgres start VAR")
	}
	pg, err := testenv.StartPostgres()
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(func() {
		if err := pg.Stop(); err != nil {
			ts.Logf("%v", err)
		}
	})
	ts.Setenv(args[1], pg.DSN)
}
