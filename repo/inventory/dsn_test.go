package inventory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fwctl/fwctl/manifests"
)

// TestSQLiteFileMode: fleet.db holds the fleet's keys and reports; it
// used to be created 0644 (the umask's default).
func TestSQLiteFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, _, err := db.Nonce(context.Background()); err != nil { // a write: creates -wal
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if os.IsNotExist(err) && p != path {
			continue
		}
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", filepath.Base(p), fi.Mode().Perm(), err)
		}
	}
}

// TestDSNForms: both PostgreSQL forms are recognised (a URL's scheme in
// any case), their password never shows in RedactDSN, and a string that is a
// connection string of neither form is refused instead of becoming the
// name of a new SQLite file.
func TestDSNForms(t *testing.T) {
	tests := []struct {
		dsn      string
		postgres bool
		refused  bool
	}{
		{"postgres://fwrepo:s3cret@db/fleet", true, false},
		{"POSTGRES://fwrepo:s3cret@db/fleet", true, false},
		{"PostgreSQL://fwrepo:s3cret@db/fleet?sslmode=disable", true, false},
		{"postgres://fwrepo@db/fleet?password=s3cret", true, false},
		{"host=db user=fwrepo password=s3cret dbname=fleet", true, false},
		{"user=fwrepo password='s3 cret' host=db", true, false},
		{"  dbname=fleet sslpassword=s3cret", true, false},
		{"fleet.db", false, false},
		{"/var/lib/fwrepo/fleet.db", false, false},
		{"mysql://fwrepo:s3cret@db/fleet", false, true},
		{"fwrepo:s3cret@tcp(db)/fleet?tls=true", false, true},
		{"pasword=s3cret host=db", false, true},
		{"file:fleet.db?mode=rwc", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			if got := IsPostgres(tt.dsn); got != tt.postgres {
				t.Errorf("IsPostgres = %v, want %v", got, tt.postgres)
			}
			if r := RedactDSN(tt.dsn); !tt.refused && strings.Contains(r, "s3cret") || strings.Contains(r, "s3 cret") {
				t.Errorf("RedactDSN = %q", r)
			}
			if !tt.postgres {
				err := checkSQLitePath(tt.dsn)
				if (err != nil) != tt.refused {
					t.Errorf("checkSQLitePath = %v, want refused %v", err, tt.refused)
				}
				if err != nil && strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the password: %v", err)
				}
			}
		})
	}
}

// TestOpenDSNNeverCreatesFileOrShowsPassword: an upper-case URL or a
// keyword=value string for an unreachable server used to fall back to
// SQLite and create a file named after the DSN (and its password); now
// each is a PostgreSQL connection that fails saying so, without the
// password, and creates no file.
func TestOpenDSNNeverCreatesFileOrShowsPassword(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close() // nothing listens now
	dir := t.TempDir()
	t.Chdir(dir)
	for _, dsn := range []string{
		"POSTGRES://fwrepo:s3cret@" + host + ":" + port + "/fleet?sslmode=disable",
		"postgresql://fwrepo:s3cret@" + host + ":" + port + "/fleet?sslmode=disable",
		fmt.Sprintf("host=%s port=%s user=fwrepo password=s3cret dbname=fleet sslmode=disable", host, port),
		fmt.Sprintf("host=%s port=%s user=fwrepo password='s3 cret' dbname=fleet sslmode=disable", host, port),
		fmt.Sprintf("host=%s port=notaport user=fwrepo password=s3cret", host),
		"mysql://fwrepo:s3cret@" + host + "/fleet",
	} {
		t.Run(RedactDSN(dsn), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			db, err := OpenContext(ctx, dsn)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "s3 cret") {
				t.Errorf("error shows the password: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("Open created %s", entries[0].Name())
			}
		})
	}
}

// TestPostgresDSNForms: the same database opens by URL, by upper-case URL
// and by keyword=value string.
func TestPostgresDSNForms(t *testing.T) {
	dsn := postgres(t).NewDatabase(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	kv := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, cfg.Database)
	if cfg.Password != "" {
		kv += " password='" + strings.ReplaceAll(cfg.Password, "'", `\'`) + "'"
	}
	scheme, rest, _ := strings.Cut(dsn, "://")
	for _, d := range []string{dsn, strings.ToUpper(scheme) + "://" + rest, kv} {
		db, err := Open(d)
		if err != nil {
			t.Fatalf("Open(%s): %v", RedactDSN(d), err)
		}
		if _, err := db.List(context.Background()); err != nil {
			t.Fatalf("List on %s: %v", RedactDSN(d), err)
		}
		db.Close()
	}
}

// TestAcceptRefusesDuplicateMembers: a device manifest envelope with a
// second "manifest" member (encoding/json keeps the last, another reader
// the first) used to be accepted and stored. Signed JSON with a duplicated
// member is refused as malformed, anywhere in it, and the nonce stays
// usable.
func TestAcceptRefusesDuplicateMembers(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dev := newTestDevice(t, "gw-1")
	if _, _, err := db.AddDevice(ctx, dev.id, dev.pem, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	n := nonce(t, db)
	env := dev.sign(t, dev.manifest(n, "1.0.0"))
	for name, forged := range map[string][]byte{
		"envelope member": append([]byte(`{"manifest":{"device_id":"gw-1","running_slot":"B"},`), env[1:]...),
		"keyid twice":     append([]byte(`{"keyid":"`+strings.Repeat("0", 64)+`",`), env[1:]...),
	} {
		if _, err := db.Accept(ctx, forged); !errors.Is(err, manifests.ErrInvalidDeviceManifest) || !errors.Is(err, manifests.ErrDuplicateKey) {
			t.Errorf("%s: Accept = %v, want a malformed manifest (duplicate member)", name, err)
		}
	}
	if _, err := db.Accept(ctx, env); err != nil {
		t.Fatalf("the genuine report after the refusals: %v", err)
	}
}
