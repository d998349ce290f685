package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// ErrNoPostgres means PostgreSQL is not installed; tests then call Missing.
var ErrNoPostgres = errors.New("PostgreSQL is not installed (apt-get install -y postgresql, or make deps)")

// Postgres is a private PostgreSQL server started by scripts/postgres.sh:
// its own cluster in a temporary directory, on 127.0.0.1 at a free port.
type Postgres struct {
	script, dir string
	// DSN is the server's database "fwrepo".
	DSN string
	n   atomic.Int64
}

// HavePostgres reports whether PostgreSQL's server programs are installed
// (where scripts/postgres.sh looks: Debian's /usr/lib/postgresql/*/bin, or
// initdb on $PATH).
func HavePostgres() bool {
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		return true
	}
	_, err := exec.LookPath("initdb")
	return err == nil
}

// StartPostgres starts a private PostgreSQL server. The error wraps
// ErrNoPostgres when PostgreSQL is not installed. Stop it with Stop.
func StartPostgres() (*Postgres, error) {
	script, err := repoFile("scripts", "postgres.sh")
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: under root the server runs as the postgres user, who
	// cannot enter a 0700 test directory.
	parent, err := os.MkdirTemp("", "fwctl-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(parent, 0o755); err != nil {
		os.RemoveAll(parent)
		return nil, err
	}
	dir := filepath.Join(parent, "cluster")
	out, err := exec.Command(script, "start", dir).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		os.RemoveAll(parent)
		return nil, fmt.Errorf("%w: %s", ErrNoPostgres, strings.TrimSpace(string(exit.Stderr)))
	}
	if err != nil {
		exec.Command(script, "stop", dir).Run()
		os.RemoveAll(parent)
		return nil, fmt.Errorf("start PostgreSQL with %s: %w: %s", script, err, stderr(err))
	}
	return &Postgres{script: script, dir: dir, DSN: strings.TrimSpace(string(out))}, nil
}

// RequirePostgres starts a private PostgreSQL server for t and stops it
// when t ends; without PostgreSQL it calls Missing.
func RequirePostgres(t testing.TB) *Postgres {
	t.Helper()
	pg, err := StartPostgres()
	if errors.Is(err, ErrNoPostgres) {
		Missing(t, "PostgreSQL", err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Error(err)
		}
	})
	return pg
}

// NewDatabase creates an empty database on the server and returns its DSN,
// so that tests sharing one server do not see each other's tables.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", p.n.Add(1))
	out, err := exec.Command(p.script, "createdb", p.dir, name).Output()
	if err != nil {
		t.Fatalf("create PostgreSQL database %s: %v: %s", name, err, stderr(err))
	}
	return strings.TrimSpace(string(out))
}

// Stop stops the server and removes its directory.
func (p *Postgres) Stop() error {
	out, err := exec.Command(p.script, "stop", p.dir).CombinedOutput()
	os.RemoveAll(filepath.Dir(p.dir))
	if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w: %s", p.dir, err, out)
	}
	return nil
}

func stderr(err error) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return strings.TrimSpace(string(exit.Stderr))
	}
	return ""
}

// repoFile finds a file of this repository from a test's working directory
// (its package directory) by walking up to go.mod.
func repoFile(elem ...string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(append([]string{dir}, elem...)...), nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("%s: no go.mod above the working directory", filepath.Join(elem...))
		}
		dir = up
	}
}
