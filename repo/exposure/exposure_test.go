package exposure

import (
	"archive/zip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/sbom"
)

var (
	pgOnce sync.Once
	pg     *testenv.Postgres
	pgErr  error
)

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

// backends returns a DSN maker per inventory backend: SQLite, PostgreSQL.
func forEachBackend(t testing.TB, f func(t testing.TB, dsn string)) {
	run := func(name string, dsn func() string) {
		switch tt := t.(type) {
		case *testing.T:
			tt.Run(name, func(t *testing.T) { f(t, dsn()) })
		case *testing.B:
			tt.Run(name, func(b *testing.B) { f(b, dsn()) })
		}
	}
	run("sqlite", func() string { return filepath.Join(t.TempDir(), "fleet.db") })
	run("postgres", func() string {
		pgOnce.Do(func() { pg, pgErr = testenv.StartPostgres() })
		if errors.Is(pgErr, testenv.ErrNoPostgres) {
			testenv.Missing(t, "PostgreSQL", pgErr.Error())
		}
		if pgErr != nil {
			t.Fatal(pgErr)
		}
		return pg.NewDatabase(t)
	})
}

func open(t testing.TB, dsn string) *inventory.DB {
	t.Helper()
	db, err := inventory.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// storeRelease stores the components of one of repo/sbom's test SBOMs
// (the benchmark corpus rootfs images' real package lists).
func storeRelease(t testing.TB, db *inventory.DB, file, target, version string, counter uint64, support string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "sbom", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := sbom.Parse(file, f, sbom.DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	rel := inventory.SBOMRelease{Target: target, Version: version, Hardware: "acme-gw-v2", Counter: counter, SupportUntil: support, SBOMSHA256: strings.Repeat("0", 64)}
	if err := db.StoreSBOMRelease(context.Background(), rel, Components(doc)); err != nil {
		t.Fatal(err)
	}
}

// report registers device id and has it report running target, signed,
// through the inventory's real Accept path.
func report(t testing.TB, db *inventory.DB, id, target, version string, tags map[string]string) {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if _, _, err := db.AddDevice(ctx, id, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), inventory.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	nonce, _, err := db.Nonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests.DeviceManifest{Schema: 1, DeviceID: id, Hardware: "acme-gw-v2", RunningSlot: "A", Counter: 1,
		Slots: map[string]manifests.SlotReport{"A": {Status: manifests.SlotGood, Image: manifests.Image{Target: target, Version: version, Counter: 1}},
			"B": {Status: manifests.SlotUnknown}},
		Time: time.Now().UTC(), Nonce: nonce}
	env, err := manifests.SignDeviceManifest(m, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Accept(ctx, env); err != nil {
		t.Fatal(err)
	}
	if len(tags) > 0 {
		if err := db.SetTags(ctx, id, tags); err != nil {
			t.Fatal(err)
		}
	}
}

func load(t testing.TB, paths ...string) *Data {
	t.Helper()
	d, err := Load(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExposure: the curl and git advisories affect release 1.0.0 (rootfs
// v1) and are fixed by 1.1.0 (rootfs v2); the devices and groups on 1.0.0
// are named; the advisories fixed before v1 affect nothing; VEX statements
// (OpenVEX, CycloneDX) take the v1 components out; release 1.0.0 is past
// its support period.
func TestExposure(t *testing.T) {
	forEachBackend(t, func(t testing.TB, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		storeRelease(t, db, "rootfs-v1.cdx.json", "acme-gw-v2/1.0.0/rootfs.img", "1.0.0", 1, "2025-06-30")
		storeRelease(t, db, "rootfs-v2.cdx.json", "acme-gw-v2/1.1.0/rootfs.img", "1.1.0", 2, "2030-12-31")
		report(t, db, "gw-1", "acme-gw-v2/1.0.0/rootfs.img", "1.0.0", map[string]string{"site": "berlin"})
		report(t, db, "gw-2", "acme-gw-v2/1.0.0/rootfs.img", "1.0.0", map[string]string{"site": "paris"})
		report(t, db, "gw-3", "acme-gw-v2/1.1.0/rootfs.img", "1.1.0", nil)
		if err := Import(ctx, db, load(t, "testdata/osv")); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		for _, cve := range []string{"CVE-2024-7264", "cve-2025-48384"} {
			rep, err := Query(ctx, db, cve, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Vulnerabilities) != 1 {
				t.Fatalf("%s: %d advisories, want 1", cve, len(rep.Vulnerabilities))
			}
			v := rep.Vulnerabilities[0]
			if len(v.Releases) != 1 || v.Releases[0].Target != "acme-gw-v2/1.0.0/rootfs.img" {
				t.Fatalf("%s: releases %+v, want only 1.0.0", cve, v.Releases)
			}
			r := v.Releases[0]
			if !slices.Equal(r.Devices, []string{"gw-1", "gw-2"}) || r.Groups["site=berlin"] != 1 || r.Groups["site=paris"] != 1 {
				t.Errorf("%s: devices %v groups %v, want gw-1 (berlin), gw-2 (paris)", cve, r.Devices, r.Groups)
			}
			if !slices.Equal(r.FixedBy, []string{"acme-gw-v2/1.1.0/rootfs.img"}) {
				t.Errorf("%s: fixed by %v, want 1.1.0", cve, r.FixedBy)
			}
			if !r.PastSupport {
				t.Errorf("%s: 1.0.0 (support until 2025-06-30) not past support", cve)
			}
			if len(rep.PastSupport) != 2 {
				t.Errorf("past support: %+v, want gw-1 and gw-2", rep.PastSupport)
			}
		}
		for _, cve := range []string{"CVE-2023-46218", "CVE-2025-4598", "CVE-2025-32462"} {
			rep, err := Query(ctx, db, cve, now)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(rep.Vulnerabilities[0].Releases); n != 0 {
				t.Errorf("%s (fixed before v1): %d releases affected, want 0: %+v", cve, n, rep.Vulnerabilities[0].Releases)
			}
		}
		all, err := Query(ctx, db, "", now)
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Vulnerabilities) != 2 {
			t.Errorf("all advisories: %d affect a release, want 2 (curl, git)", len(all.Vulnerabilities))
		}
		if _, err := Query(ctx, db, "CVE-1999-0001", now); err == nil || !strings.Contains(err.Error(), "no imported advisory") {
			t.Errorf("unknown CVE: %v", err)
		}
		if err := Import(ctx, db, load(t, "testdata/vex")); err != nil {
			t.Fatal(err)
		}
		for _, cve := range []string{"CVE-2024-7264", "CVE-2025-48384"} {
			rep, err := Query(ctx, db, cve, now)
			if err != nil {
				t.Fatal(err)
			}
			v := rep.Vulnerabilities[0]
			if len(v.Releases) != 0 || len(v.NotAffected) != 1 {
				t.Errorf("%s after VEX: releases %+v, not affected %+v; want none and one", cve, v.Releases, v.NotAffected)
			}
		}
	})
}

// TestImportRefusals: a bad file is refused naming the file and the
// field, and nothing of the batch it came in stays behind.
func TestImportRefusals(t *testing.T) {
	tests := []struct {
		file  string
		wants []string
		is    error
	}{
		{"ecosystem.json", []string{"bad/ecosystem.json", "affected[0].package.ecosystem", `"Slackware"`}, ErrUnknownEcosystem},
		{"range.json", []string{"bad/range.json", "affected[0].ranges[0].events", "no introduced event"}, ErrBrokenRange},
		{"version.json", []string{"bad/version.json", "affected[0].ranges[0].events[1].fixed", "not-a-version"}, ErrBrokenRange},
		{"json.json", []string{"bad/json.json", "bad JSON"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load("testdata/osv", filepath.Join("testdata/bad", tt.file))
			if err == nil {
				t.Fatal("loaded")
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v is not an *InputError", err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

// TestImportAllOrNothing: a batch whose storing fails halfway leaves none
// of its advisories behind (the records before the failure included).
func TestImportAllOrNothing(t *testing.T) {
	forEachBackend(t, func(t testing.TB, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		d := load(t, "testdata/osv")
		// A NUL byte PostgreSQL and SQLite's TEXT handling differ on is
		// not a portable failure; a canceled context fails on both.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := Import(cctx, db, d); err == nil {
			t.Fatal("import with a canceled context succeeded")
		}
		advs, err := db.Advisories(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(advs) != 0 {
			t.Errorf("%d advisories left behind", len(advs))
		}
	})
}

func TestCompare(t *testing.T) {
	tests := []struct {
		o    Ordering
		a, b string
		want int
	}{
		{OrderDpkg, "7.88.1-10+deb12u5", "7.88.1-10+deb12u7", -1},
		{OrderDpkg, "7.88.1-10+deb12u15", "7.88.1-10+deb12u7", 1},
		{OrderDpkg, "1:2.39.5-0+deb12u2", "2.40.0-1", 1}, // epoch
		{OrderDpkg, "3.0.20-1~deb12u2", "3.0.20-1", -1},  // tilde sorts first
		{OrderSemver, "1.2.3", "1.10.0", -1},
		{OrderSemver, "1.0.0-rc.1", "1.0.0", -1},
		{OrderGo, "v0.23.0", "0.3.0", 1},
		{OrderGo, "v1.2.3", "v1.2.3", 0},
		{OrderDpkg, "0", "0.1", -1},
	}
	for _, tt := range tests {
		got, err := Compare(tt.o, tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("Compare(%s, %s, %s) = %d, %v; want %d", tt.o, tt.a, tt.b, got, err, tt.want)
		}
	}
	if _, err := Compare(OrderSemver, "1.x", "1.0.0"); err == nil {
		t.Error("semver 1.x parsed")
	}
}

func TestAffects(t *testing.T) {
	a := Affected{Ranges: []Range{{Order: OrderSemver, Events: []Event{{Introduced: "1.0.0"}, {Fixed: "1.2.0"}, {Introduced: "2.0.0"}, {LastAffected: "2.1.0"}}}}}
	for v, want := range map[string]bool{"0.9.0": false, "1.0.0": true, "1.1.9": true, "1.2.0": false, "2.0.5": true, "2.1.0": true, "2.1.1": false} {
		got, err := a.Affects(v)
		if err != nil || got != want {
			t.Errorf("Affects(%s) = %v, %v; want %v", v, got, err, want)
		}
	}
}

func FuzzParseOSV(f *testing.F) {
	for _, dir := range []string{"testdata/osv", "testdata/bad"} {
		m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, p := range m {
			b, _ := os.ReadFile(p)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseOSV("f.json", b)
		if err != nil {
			return
		}
		for _, a := range r.Affected {
			_, _ = a.Affects("1.0.0")
		}
	})
}

// TestLoadZip: an osv.dev-style zip export (records at its top level) loads
// like the directory, and a bad record inside names the zip and the entry.
func TestLoadZip(t *testing.T) {
	write := func(extra string) string {
		p := filepath.Join(t.TempDir(), "all.zip")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		z := zip.NewWriter(f)
		m, _ := filepath.Glob("testdata/osv/*.json")
		if extra != "" {
			m = append(m, extra)
		}
		for _, name := range m {
			b, _ := os.ReadFile(name)
			w, _ := z.Create(filepath.Base(name))
			w.Write(b)
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	d, err := Load(write(""))
	if err != nil || len(d.Records) != 5 {
		t.Fatalf("Load(zip) = %d records, %v; want 5", len(d.Records), err)
	}
	_, err = Load(write("testdata/bad/ecosystem.json"))
	if err == nil || !strings.Contains(err.Error(), "all.zip!ecosystem.json: affected[0].package.ecosystem") {
		t.Fatalf("bad record in zip: %v", err)
	}
}
