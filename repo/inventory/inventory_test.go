package inventory

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/manifests"
)

type testDevice struct {
	id  string
	key *ecdsa.PrivateKey
	pem []byte
}

func newTestDevice(t *testing.T, id string) *testDevice {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return &testDevice{id: id, key: k, pem: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func (d *testDevice) manifest(nonce, version string) *manifests.DeviceManifest {
	return &manifests.DeviceManifest{Schema: 1, DeviceID: d.id, Hardware: "acme-gw-v2", RunningSlot: "A", Counter: 1,
		Slots: map[string]manifests.SlotReport{
			"A": {Status: manifests.SlotGood, Image: manifests.Image{Version: version, Counter: 1, SHA256: strings.Repeat("ab", 32), Length: 5}},
			"B": {Status: manifests.SlotUnknown},
		},
		Time: time.Now().UTC().Truncate(time.Second), Nonce: nonce}
}

func (d *testDevice) sign(t *testing.T, m *manifests.DeviceManifest) []byte {
	t.Helper()
	env, err := manifests.SignDeviceManifest(m, d.key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// backend is one database the inventory runs on; every test runs on each.
type backend struct {
	name string
	// dsn returns the location of a new, empty inventory.
	dsn func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "inventory.db") }},
	{"postgres", func(t *testing.T) string { return postgres(t).NewDatabase(t) }},
}

// One private PostgreSQL server for the package's tests, started on first
// use and stopped by TestMain.
var (
	pgOnce sync.Once
	pg     *testenv.Postgres
	pgErr  error
)

func postgres(t *testing.T) *testenv.Postgres {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = testenv.StartPostgres() })
	if errors.Is(pgErr, testenv.ErrNoPostgres) {
		testenv.Missing(t, "PostgreSQL", pgErr.Error())
	}
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pg
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		if err := pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// forEachBackend runs f as a subtest per backend, with open returning a new
// empty inventory on it (closed when the subtest ends).
func forEachBackend(t *testing.T, f func(t *testing.T, b backend, open func() *DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			f(t, b, func() *DB {
				t.Helper()
				db, err := Open(b.dsn(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			})
		})
	}
}

func nonce(t *testing.T, db *DB) string {
	t.Helper()
	n, _, err := db.Nonce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAddDevice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		a, b := newTestDevice(t, "gw-1"), newTestDevice(t, "gw-2")
		if _, added, err := db.AddDevice(ctx, a.id, a.pem, AddOptions{}); err != nil || !added {
			t.Fatalf("add: %v %v", added, err)
		}
		tests := []struct {
			name  string
			id    string
			pem   []byte
			opt   AddOptions
			want  error
			added bool
		}{
			{name: "same again", id: a.id, pem: a.pem},
			{name: "other key for the ID", id: a.id, pem: b.pem, want: ErrDeviceExists},
			{name: "same key for another ID", id: "gw-3", pem: a.pem, want: ErrKeyInUse},
			{name: "bad ID", id: "../x", pem: b.pem, want: errAny},
			{name: "not a key", id: "gw-4", pem: []byte("nope"), want: errAny},
			{name: "second device", id: b.id, pem: b.pem, added: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, added, err := db.AddDevice(ctx, tt.id, tt.pem, tt.opt)
				if (tt.want == errAny && err == nil) || (tt.want != errAny && !errors.Is(err, tt.want)) || added != tt.added {
					t.Fatalf("AddDevice = %v, %v; want %v, %v", added, err, tt.added, tt.want)
				}
			})
		}
		// A replaced TPM: --replace re-keys the ID.
		c := newTestDevice(t, a.id)
		if _, added, err := db.AddDevice(ctx, a.id, c.pem, AddOptions{Replace: true}); err != nil || !added {
			t.Fatalf("replace: %v %v", added, err)
		}
		devs, err := db.List(ctx)
		if err != nil || len(devs) != 2 || devs[0].ID != "gw-1" || devs[1].ID != "gw-2" {
			t.Fatalf("List = %v, %v", devs, err)
		}
		if want, _ := manifests.KeyID(&c.key.PublicKey); devs[0].KeyID != want {
			t.Fatalf("replaced key ID %s, want %s", devs[0].KeyID, want)
		}
	})
}

var errAny = errors.New("any error")

func TestAccept(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		now := time.Now()
		db.Now = func() time.Time { return now }
		dev, other := newTestDevice(t, "gw-1"), newTestDevice(t, "gw-1")
		stranger := newTestDevice(t, "gw-9")
		if _, _, err := db.AddDevice(ctx, dev.id, dev.pem, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		good := dev.sign(t, dev.manifest(nonce(t, db), "1.0.0"))
		modified := bytes.Replace(dev.sign(t, dev.manifest(nonce(t, db), "1.0.0")), []byte(`"counter":1,`), []byte(`"counter":2,`), 1)
		expiring := dev.sign(t, dev.manifest(nonce(t, db), "1.0.0"))
		tests := []struct {
			name    string
			env     []byte
			advance time.Duration
			want    error
		}{
			{name: "registered device, fresh nonce", env: good},
			{name: "replayed", env: good, want: ErrNonce},
			{name: "wrong key", env: other.sign(t, other.manifest(nonce(t, db), "1.0.0")), want: manifests.ErrBadSignature},
			{name: "modified body", env: modified, want: manifests.ErrBadSignature},
			{name: "unregistered device", env: stranger.sign(t, stranger.manifest(nonce(t, db), "1.0.0")), want: ErrUnknownDevice},
			{name: "nonce never issued", env: dev.sign(t, dev.manifest(strings.Repeat("f", 64), "1.0.0")), want: ErrNonce},
			{name: "malformed", env: []byte(`{"manifest":{}}`), want: manifests.ErrInvalidDeviceManifest},
			{name: "expired nonce", env: expiring, advance: DefaultNonceTTL + time.Second, want: ErrNonce},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				now = now.Add(tt.advance)
				_, err := db.Accept(ctx, tt.env)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Accept = %v, want %v", err, tt.want)
				}
			})
		}
		// The forgeries did not replace the accepted report, and a newer one
		// does.
		got, err := db.Device(ctx, dev.id)
		if err != nil || got.Manifest == nil || got.Manifest.Running().Version != "1.0.0" || got.LastSeen == nil {
			t.Fatalf("stored report: %+v, %v", got, err)
		}
		if _, err := db.Accept(ctx, dev.sign(t, dev.manifest(nonce(t, db), "2.0.0"))); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Device(ctx, dev.id); got.Manifest.Running().Version != "2.0.0" {
			t.Fatalf("latest report not kept: %+v", got.Manifest)
		}
	})
}

// TestForgeryKeepsNonce: a forged report naming a real nonce does not burn
// it, so an attacker who sees nonces cannot stop a device from reporting.
func TestForgeryKeepsNonce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		dev, forger := newTestDevice(t, "gw-1"), newTestDevice(t, "gw-1")
		db.AddDevice(ctx, dev.id, dev.pem, AddOptions{})
		n := nonce(t, db)
		if _, err := db.Accept(ctx, forger.sign(t, forger.manifest(n, "6.6.6"))); !errors.Is(err, manifests.ErrBadSignature) {
			t.Fatalf("forgery: %v", err)
		}
		if _, err := db.Accept(ctx, dev.sign(t, dev.manifest(n, "1.0.0"))); err != nil {
			t.Fatalf("genuine report after a forgery with its nonce: %v", err)
		}
	})
}

func TestNonceLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		db := openDB()
		db.MaxOutstanding = 2
		now := time.Now()
		db.Now = func() time.Time { return now }
		nonce(t, db)
		nonce(t, db)
		if _, _, err := db.Nonce(context.Background()); !errors.Is(err, ErrBusy) {
			t.Fatalf("third nonce: %v, want busy", err)
		}
		now = now.Add(DefaultNonceTTL) // the two expire
		nonce(t, db)
	})
}

// TestConcurrentNonceLimit: nonce requests sent at once through several
// handles (several fwrepo servers on one PostgreSQL) never get more than
// MaxOutstanding nonces between them; the rest are refused with ErrBusy.
func TestConcurrentNonceLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, _ func() *DB) {
		ctx := context.Background()
		dsn := b.dsn(t)
		const limit, n, rounds = 5, 64, 5
		dbs := make([]*DB, 4)
		for i := range dbs {
			db, err := Open(dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			db.MaxOutstanding = limit
			// Keep the connections of one round for the next, so that
			// requests race instead of queueing behind connection set-up.
			db.db.SetMaxIdleConns(n)
			dbs[i] = db
		}
		// Several rounds: one overshoot is a race that may not show at once.
		for round := range rounds {
			if _, err := dbs[0].db.ExecContext(ctx, "DELETE FROM nonces"); err != nil {
				t.Fatal(err)
			}
			granted, errs := race(n, "nonce", ErrBusy, func(i int) error {
				_, _, err := dbs[i%len(dbs)].Nonce(ctx)
				return err
			})
			if len(errs) > 0 || granted != limit {
				t.Fatalf("round %d: %d of %d concurrent nonce requests granted, want %d; errors: %v", round, granted, n, limit, errs)
			}
			var stored int
			if err := dbs[0].db.QueryRowContext(ctx, "SELECT count(*) FROM nonces").Scan(&stored); err != nil || stored != limit {
				t.Fatalf("round %d: %d nonces stored (%v), want %d", round, stored, err, limit)
			}
		}
	})
}

func TestReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, _ func() *DB) {
		p := b.dsn(t)
		db, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		dev := newTestDevice(t, "gw-1")
		db.AddDevice(context.Background(), dev.id, dev.pem, AddOptions{})
		db.Close()
		db, err = Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Device(context.Background(), "gw-1"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		db := openDB()
		dev := newTestDevice(t, "gw-1")
		db.AddDevice(context.Background(), dev.id, dev.pem, AddOptions{})
		srv := httptest.NewServer(Handler(db, nil))
		defer srv.Close()
		getNonce := func() string {
			resp, err := http.Get(srv.URL + manifests.NoncePath)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var nr manifests.NonceResponse
			if err := json.NewDecoder(resp.Body).Decode(&nr); err != nil || resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("nonce: %d %v", resp.StatusCode, err)
			}
			return nr.Nonce
		}
		good := dev.sign(t, dev.manifest(getNonce(), "1.0.0"))
		tests := []struct {
			name, method, path string
			body               []byte
			status             int
			accepted           bool
		}{
			{"accepted", "POST", manifests.ManifestPath, good, 200, true},
			{"replay", "POST", manifests.ManifestPath, good, 403, false},
			{"malformed", "POST", manifests.ManifestPath, []byte("{"), 400, false},
			{"too large", "POST", manifests.ManifestPath, bytes.Repeat([]byte(" "), manifests.MaxDeviceManifestSize+1), 413, false},
			{"GET on manifests", "GET", manifests.ManifestPath, nil, 405, false},
			{"POST on nonce", "POST", manifests.NoncePath, nil, 405, false},
			{"elsewhere", "GET", "/api/v1/other", nil, 404, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, _ := http.NewRequest(tt.method, srv.URL+tt.path, bytes.NewReader(tt.body))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var rr manifests.ReportResponse
				json.NewDecoder(resp.Body).Decode(&rr)
				if resp.StatusCode != tt.status || rr.Accepted != tt.accepted {
					t.Fatalf("%s %s: %d %+v, want %d accepted=%v", tt.method, tt.path, resp.StatusCode, rr, tt.status, tt.accepted)
				}
			})
		}
	})
}

// TestRemoveDevice: a removed (decommissioned) device leaves the fleet, its
// reports are refused as removed (403 over HTTP), removing it again or an
// ID never registered is ErrUnknownDevice, and registering it again puts it
// back into service.
func TestRemoveDevice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		a, b := newTestDevice(t, "gw-1"), newTestDevice(t, "gw-2")
		for _, d := range []*testDevice{a, b} {
			if _, _, err := db.AddDevice(ctx, d.id, d.pem, AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Accept(ctx, a.sign(t, a.manifest(nonce(t, db), "1.0.0"))); err != nil {
			t.Fatal(err)
		}
		// Signed before the removal with a nonce issued before it: still refused.
		pending := a.sign(t, a.manifest(nonce(t, db), "1.0.1"))
		tests := []struct {
			name string
			id   string
			want error
		}{
			{"registered", a.id, nil},
			{"again", a.id, ErrUnknownDevice},
			{"never registered", "gw-9", ErrUnknownDevice},
			{"empty", "", ErrUnknownDevice},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				dev, err := db.RemoveDevice(ctx, tt.id)
				if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
					t.Fatalf("RemoveDevice(%q) = %v, want %v", tt.id, err, tt.want)
				}
				if err == nil && (dev.ID != tt.id || dev.Manifest == nil) {
					t.Fatalf("RemoveDevice returned %+v, want the device with its last report", dev)
				}
			})
		}
		devs, err := db.List(ctx)
		if err != nil || len(devs) != 1 || devs[0].ID != b.id {
			t.Fatalf("List after removal = %v, %v; want only %s", devs, err, b.id)
		}
		removed, err := db.ListRemoved(ctx)
		if err != nil || len(removed) != 1 || removed[0].ID != a.id || removed[0].KeyID != keyIDOf(&a.key.PublicKey) || removed[0].RemovedAt.IsZero() {
			t.Fatalf("ListRemoved = %+v, %v; want %s with its key and removal time", removed, err, a.id)
		}
		_, err = db.Accept(ctx, pending)
		if !errors.Is(err, ErrDeviceRemoved) || !strings.Contains(err.Error(), "was removed at") {
			t.Fatalf("report of a removed device: %v, want ErrDeviceRemoved", err)
		}
		if got := refusalStatus(err); got != http.StatusForbidden {
			t.Fatalf("HTTP status for a removed device: %d, want 403", got)
		}
		// The other device still reports; the removed one, registered again, too.
		if _, err := db.Accept(ctx, b.sign(t, b.manifest(nonce(t, db), "1.0.0"))); err != nil {
			t.Fatal(err)
		}
		if _, added, err := db.AddDevice(ctx, a.id, a.pem, AddOptions{}); err != nil || !added {
			t.Fatalf("register a removed device again: %v %v", added, err)
		}
		if removed, err := db.ListRemoved(ctx); err != nil || len(removed) != 0 {
			t.Fatalf("ListRemoved after re-registering = %+v, %v; want none", removed, err)
		}
		if _, err := db.Accept(ctx, a.sign(t, a.manifest(nonce(t, db), "1.0.2"))); err != nil {
			t.Fatalf("report after re-registering: %v", err)
		}
	})
}

// TestConcurrentReports: one nonce, many correctly signed reports sent at
// once (several fwrepo connections, or several fwrepo servers on one
// PostgreSQL): exactly one is accepted, the rest are refused with ErrNonce.
// Concurrent nonce requests all succeed and are distinct.
func TestConcurrentReports(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, _ func() *DB) {
		ctx := context.Background()
		dsn := b.dsn(t)
		// Separate handles, as separate fwrepo processes would have.
		dbs := make([]*DB, 4)
		for i := range dbs {
			db, err := Open(dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			dbs[i] = db
		}
		dev := newTestDevice(t, "gw-1")
		if _, _, err := dbs[0].AddDevice(ctx, dev.id, dev.pem, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		const n = 24
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			nonces = map[string]bool{}
			errs   []error
		)
		for i := range n {
			wg.Go(func() {
				nc, _, err := dbs[i%len(dbs)].Nonce(ctx)
				mu.Lock()
				defer mu.Unlock()
				if err != nil || nonces[nc] {
					errs = append(errs, fmt.Errorf("nonce %d: %q %v", i, nc, err))
				}
				nonces[nc] = true
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("concurrent nonce requests: %v", errs)
		}
		shared := nonce(t, dbs[0])
		envs := make([][]byte, n)
		for i := range envs {
			envs[i] = dev.sign(t, dev.manifest(shared, fmt.Sprintf("1.0.%d", i)))
		}
		accepted, errs := race(n, "report", ErrNonce, func(i int) error {
			_, err := dbs[i%len(dbs)].Accept(ctx, envs[i])
			return err
		})
		if len(errs) > 0 || accepted != 1 {
			t.Fatalf("%d of %d reports with one nonce accepted, want 1; errors: %v", accepted, n, errs)
		}
	})
}

// race runs call(0), …, call(n-1) at once (released together) and returns how
// many succeeded, and every error other than refused.
func race(n int, what string, refused error, call func(i int) error) (ok int, errs []error) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			err := call(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, refused):
				errs = append(errs, fmt.Errorf("%s %d: %w, want nil or %v", what, i, err, refused))
			}
		})
	}
	close(start)
	wg.Wait()
	return ok, errs
}

func keyIDOf(pub *ecdsa.PublicKey) string {
	id, _ := manifests.KeyID(pub)
	return id
}
