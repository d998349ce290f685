package inventory

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPostgresOpenErrors: a bad URL and an unreachable server say what is
// wrong and what to do, and never print the password.
func TestPostgresOpenErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String() // nothing listens once closed
	l.Close()
	tests := []struct {
		name, dsn string
		want      []string
	}{
		{"bad URL", "postgres://fwrepo:s3cret@127.0.0.1:notaport/fleet", []string{"not a valid PostgreSQL URL", "postgres://USER[:PASSWORD]@HOST"}},
		{"unreachable", "postgres://fwrepo:s3cret@" + closed + "/fleet?sslmode=disable", []string{"cannot connect to PostgreSQL", "check that the server runs", "xxxxx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			db, err := OpenContext(ctx, tt.dsn)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// TestPostgresSchema: fwrepo processes starting at once on a new database
// all create the schema without error, and a database from a newer fwrepo
// is refused.
func TestPostgresSchema(t *testing.T) {
	dsn := postgres(t).NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			db, err := Open(dsn)
			if err == nil {
				db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
	}
	db, err := Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.db.QueryRow("SELECT count(*) FROM fwrepo_schema").Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema versions recorded: %d, %v; want 1", n, err)
	}
	if _, err := db.db.Exec(fmt.Sprintf("UPDATE fwrepo_schema SET version = %d", schemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(dsn); err == nil || !strings.Contains(err.Error(), "upgrade fwrepo") {
		if db != nil {
			db.Close()
		}
		t.Fatalf("open a newer schema: %v, want 'upgrade fwrepo'", err)
	}
}
