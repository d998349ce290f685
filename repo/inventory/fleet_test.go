package inventory

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

func TestIdentityAndTags(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		a, b, c := newTestDevice(t, "gw-1"), newTestDevice(t, "gw-2"), newTestDevice(t, "gw-3")
		a.pem = []byte(strings.Replace(string(a.pem), "-----BEGIN PUBLIC KEY-----\n", "-----BEGIN PUBLIC KEY-----\nIdentity: file\n\n", 1))
		b.pem = []byte(strings.Replace(string(b.pem), "-----BEGIN PUBLIC KEY-----\n", "-----BEGIN PUBLIC KEY-----\nIdentity: tpm\n\n", 1))
		for _, d := range []*testDevice{a, b, c} {
			if _, _, err := db.AddDevice(ctx, d.id, d.pem, AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for id, want := range map[string]string{"gw-1": IdentityFile, "gw-2": IdentityTPM, "gw-3": IdentityUnknown} {
			if dev, err := db.Device(ctx, id); err != nil || dev.Identity != want {
				t.Errorf("%s identity %v, %v; want %s", id, dev, err, want)
			}
		}
		if err := db.SetTags(ctx, "gw-1", map[string]string{"site": "berlin", "ring": "canary"}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetTags(ctx, "gw-2", map[string]string{"site": "berlin"}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetTags(ctx, "nope", map[string]string{"site": "x"}); !errors.Is(err, ErrUnknownDevice) {
			t.Errorf("tag unknown device: %v", err)
		}
		if err := db.SetTags(ctx, "gw-1", map[string]string{"bad key": "x"}); !errors.Is(err, ErrInvalidTag) {
			t.Errorf("bad tag: %v", err)
		}
		g, err := db.Group(ctx, map[string]string{"site": "berlin"})
		if err != nil || len(g) != 2 || g[0].ID != "gw-1" || g[1].ID != "gw-2" {
			t.Fatalf("group site=berlin: %v, %v", g, err)
		}
		if err := db.RemoveTags(ctx, "gw-1", []string{"site"}); err != nil {
			t.Fatal(err)
		}
		dev, _ := db.Device(ctx, "gw-1")
		if !maps.Equal(dev.Tags, map[string]string{"ring": "canary"}) {
			t.Errorf("tags after untag: %v", dev.Tags)
		}
		if _, err := ParseTags([]string{"a=b", "c"}); !errors.Is(err, ErrInvalidTag) {
			t.Errorf("ParseTags without '=': %v", err)
		}
	})
}

// TestHistory: every attempt of every accepted report is kept once, also
// after later reports dropped it from their recent attempts; a refused
// report adds nothing.
func TestHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		dev := newTestDevice(t, "gw-1")
		if _, _, err := db.AddDevice(ctx, dev.id, dev.pem, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		att := func(i int, outcome string) manifests.InstallResult {
			return manifests.InstallResult{At: t0.Add(time.Duration(i) * time.Minute), Target: "gw/2.0/fw.img", Version: "2.0", Outcome: outcome, Error: map[bool]string{true: "boom"}[outcome == "failed"]}
		}
		m := dev.manifest(nonce(t, db), "1.0")
		m.Attempts = []manifests.InstallResult{att(0, "failed"), att(1, "installed")}
		if _, err := db.Accept(ctx, dev.sign(t, m)); err != nil {
			t.Fatal(err)
		}
		m = dev.manifest(nonce(t, db), "2.0")
		m.Attempts = []manifests.InstallResult{att(1, "installed"), att(2, "confirmed")}
		m.LastResult = &m.Attempts[1]
		if _, err := db.Accept(ctx, dev.sign(t, m)); err != nil {
			t.Fatal(err)
		}
		// Forged: another key signs it.
		other := newTestDevice(t, "gw-1")
		m = dev.manifest(nonce(t, db), "2.0")
		m.Attempts = []manifests.InstallResult{att(3, "failed")}
		if _, err := db.Accept(ctx, other.sign(t, m)); !errors.Is(err, manifests.ErrBadSignature) {
			t.Fatalf("forged report: %v", err)
		}
		h, err := db.History(ctx, "gw-1", 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range h {
			got = append(got, e.Outcome)
		}
		if strings.Join(got, ",") != "confirmed,installed,failed" || h[2].Error != "boom" {
			t.Errorf("history %v (%+v), want confirmed,installed,failed", got, h)
		}
		if h, _ := db.History(ctx, "gw-1", 1); len(h) != 1 {
			t.Errorf("limit 1: %d events", len(h))
		}
	})
}

func TestTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		tok, info, err := db.CreateToken(ctx, "alice", RoleOperator)
		if err != nil || info.Role != RoleOperator || !strings.HasPrefix(tok, "fwop_") {
			t.Fatalf("create: %q %v %v", tok, info, err)
		}
		if _, _, err := db.CreateToken(ctx, "alice", RoleViewer); !errors.Is(err, ErrTokenExists) {
			t.Errorf("second alice: %v", err)
		}
		if _, _, err := db.CreateToken(ctx, "bob", "admin"); err == nil {
			t.Error("role admin accepted")
		}
		if _, _, err := db.CreateToken(ctx, rollout.Anonymous, RoleOperator); err == nil {
			t.Errorf("a token named %q (the name of changes made without a token) accepted: it could never approve", rollout.Anonymous)
		}
		got, err := db.Authenticate(ctx, tok)
		if err != nil || got.Name != "alice" || !got.Allows(RoleOperator) {
			t.Fatalf("authenticate: %v %v", got, err)
		}
		var stored string
		if err := db.db.QueryRow("SELECT hash FROM tokens").Scan(&stored); err != nil || strings.Contains(stored, tok[5:]) || len(stored) != 64 {
			t.Errorf("stored %q: want the SHA-256 only", stored)
		}
		for _, bad := range []string{"", tok + "x", "fwop_" + strings.Repeat("A", 43), strings.ToUpper(tok)} {
			if _, err := db.Authenticate(ctx, bad); !errors.Is(err, ErrBadToken) {
				t.Errorf("Authenticate(%q) = %v", bad, err)
			}
		}
		vtok, _, _ := db.CreateToken(ctx, "viewer-1", RoleViewer)
		if v, err := db.Authenticate(ctx, vtok); err != nil || v.Allows(RoleOperator) || !v.Allows(RoleViewer) {
			t.Errorf("viewer: %v %v", v, err)
		}
		if err := db.RevokeToken(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Authenticate(ctx, tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("revoked token: %v", err)
		}
		if err := db.RevokeToken(ctx, "alice"); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("revoke twice: %v", err)
		}
		if l, _ := db.Tokens(ctx); len(l) != 1 || l[0].Name != "viewer-1" || l[0].LastUsed == nil {
			t.Errorf("tokens: %+v", l)
		}
	})
}

func TestRolloutStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		var devs []*testDevice
		for i := range 5 {
			d := newTestDevice(t, "gw-"+string(rune('1'+i)))
			devs = append(devs, d)
			if _, _, err := db.AddDevice(ctx, d.id, d.pem, AddOptions{}); err != nil {
				t.Fatal(err)
			}
			if i < 4 {
				if err := db.SetTags(ctx, d.id, map[string]string{"site": "berlin"}); err != nil {
					t.Fatal(err)
				}
			}
		}
		spec := rollout.Spec{Target: "gw/2.0/fw.img", Filter: map[string]string{"site": "berlin"}, Waves: []rollout.WaveSize{{Count: 1}, {Percent: 50}}}
		if _, err := db.CreateRollout(ctx, "r1", rollout.Spec{Target: "x", Filter: map[string]string{"site": "nowhere"}}, "cli"); !errors.Is(err, ErrNoDevices) {
			t.Errorf("empty filter: %v", err)
		}
		r, err := db.CreateRollout(ctx, "r1", spec, "cli")
		if err != nil {
			t.Fatal(err)
		}
		if r.Waves != 2 || r.Sizes[0] != 1 || r.Sizes[1] != 3 || r.Spec.SuccessThreshold != 1 {
			t.Fatalf("rollout %+v", r)
		}
		if _, err := db.CreateRollout(ctx, "r1", rollout.Spec{Target: "x"}, "cli"); !errors.Is(err, ErrDeviceBusy) {
			t.Errorf("overlapping rollout: %v", err)
		}
		st, err := db.Status(ctx, "r1")
		if err != nil || len(st.Devices) != 4 || st.Counts[0].Pending != 1 || st.Counts[1].Pending != 3 {
			t.Fatalf("status %+v %v", st, err)
		}
		// Start wave 1: gw-1 is assigned; an attempt it reported before the
		// assignment does not count, one after does.
		m := devs[0].manifest(nonce(t, db), "1.0")
		m.Attempts = []manifests.InstallResult{{At: time.Now().Add(-time.Hour), Target: spec.Target, Outcome: "failed"}}
		if _, err := db.Accept(ctx, devs[0].sign(t, m)); err != nil {
			t.Fatal(err)
		}
		r2, err := db.UpdateRollout(ctx, r, Update{State: rollout.State{Status: rollout.Running, Waves: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.UpdateRollout(ctx, r, Update{State: rollout.State{Status: rollout.Paused, Waves: 2}}); !errors.Is(err, ErrConflict) {
			t.Errorf("stale update: %v", err)
		}
		time.Sleep(time.Millisecond) // received strictly after
		if err := db.SetDeviceStates(ctx, r2, []string{"gw-1"}, "assigned", time.Now()); err != nil {
			t.Fatal(err)
		}
		phase := func() rollout.Phase {
			st, err := db.Status(ctx, "r1")
			if err != nil {
				t.Fatal(err)
			}
			return st.Devices[0].Phase
		}
		if p := phase(); p != rollout.Assigned {
			t.Errorf("phase before a report: %s", p)
		}
		m = devs[0].manifest(nonce(t, db), "1.0")
		m.Attempts = []manifests.InstallResult{{At: time.Now().Add(-time.Hour), Target: spec.Target, Outcome: "failed"}, {At: time.Now(), Target: spec.Target, Outcome: "deferred"}}
		if _, err := db.Accept(ctx, devs[0].sign(t, m)); err != nil {
			t.Fatal(err)
		}
		if p := phase(); p != rollout.Deferred {
			t.Errorf("phase after deferred: %s", p)
		}
		m = devs[0].manifest(nonce(t, db), "2.0")
		m.Attempts = append(m.Attempts, manifests.InstallResult{At: time.Now().Add(time.Second), Target: spec.Target, Outcome: "confirmed"})
		if _, err := db.Accept(ctx, devs[0].sign(t, m)); err != nil {
			t.Fatal(err)
		}
		if p := phase(); p != rollout.Succeeded {
			t.Errorf("phase after confirmed: %s", p)
		}
		if r, err := db.DeviceRollout(ctx, "gw-1"); err != nil || r == nil || r.ID != "r1" {
			t.Errorf("DeviceRollout: %v %v", r, err)
		}
		if l, err := db.Rollouts(ctx); err != nil || len(l) != 1 || l[0].Status != rollout.Running {
			t.Errorf("list: %v %v", l, err)
		}
	})
}

// TestMigrateV1: a version 1 database (devices, reports) opens as
// version 2 with its devices and reports, on both backends.
func TestMigrateV1(t *testing.T) {
	v1 := []string{
		`CREATE TABLE devices (id TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, public_key TEXT NOT NULL, added_at INT64 NOT NULL, last_seen INT64, manifest BLOB)`,
		`CREATE TABLE nonces (nonce TEXT PRIMARY KEY, expires INT64 NOT NULL)`,
		`CREATE TABLE removed (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, removed_at INT64 NOT NULL)`,
	}
	dev := newTestDevice(t, "old-1")
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			var raw *sql.DB
			var err error
			if b.name == "sqlite" {
				raw, err = sql.Open("sqlite", dsn)
			} else {
				raw, err = sql.Open("pgx", dsn)
			}
			if err != nil {
				t.Fatal(err)
			}
			stmts := append([]string{}, v1...)
			if b.name == "sqlite" {
				for i := range stmts {
					stmts[i] = sqliteStmt(stmts[i])
				}
				stmts = append(stmts, "PRAGMA user_version = 1")
			} else {
				for i := range stmts {
					stmts[i] = strings.ReplaceAll(strings.ReplaceAll(stmts[i], "INT64", "BIGINT"), "BLOB", "BYTEA")
				}
				stmts = append(stmts, "CREATE TABLE fwrepo_schema (version INTEGER NOT NULL)", "INSERT INTO fwrepo_schema VALUES (1)")
			}
			ph := "?, ?, ?, ?"
			if b.name != "sqlite" {
				ph = "$1, $2, $3, $4"
			}
			for _, s := range stmts {
				if _, err := raw.Exec(s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
			if _, err := raw.Exec("INSERT INTO devices (id, key_id, public_key, added_at) VALUES ("+ph+")", dev.id, "k1", string(dev.pem), 1); err != nil {
				t.Fatal(err)
			}
			raw.Close()
			for range 2 { // and again: nothing to do the second time
				db, err := Open(dsn)
				if err != nil {
					t.Fatal(err)
				}
				d, err := db.Device(context.Background(), "old-1")
				if err != nil || d.Identity != IdentityUnknown {
					t.Fatalf("migrated device: %+v %v", d, err)
				}
				if err := db.SetTags(context.Background(), "old-1", map[string]string{"site": "x"}); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
		})
	}
}
