package exposure

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/repo/inventory"
)

// Issue 16's scale: 10,000 devices on 50 releases of 2,000 components
// each; the answer must come in at most 1 s on SQLite and PostgreSQL.
const (
	benchDevices    = 10_000
	benchReleases   = 50
	benchComponents = 2_000
)

// BenchmarkExposure times Query for one CVE that affects the first half of
// the releases (make bench-exposure prints the figures).
func BenchmarkExposure(b *testing.B) {
	forEachBackend(b, func(t testing.TB, dsn string) {
		b := t.(*testing.B)
		ctx := context.Background()
		db := open(b, dsn)
		seedFleet(b, db, dsn)
		rec := `{"id": "CVE-2024-0001", "modified": "2025-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Debian:12", "name": "pkg-0007"},
			"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-25"}]}]}]}`
		r, err := ParseOSV("bench.json", []byte(rec))
		if err != nil {
			b.Fatal(err)
		}
		if err := Import(ctx, db, &Data{Records: []*Record{r}}); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		var rep *Report
		b.ResetTimer()
		start := time.Now()
		for b.Loop() {
			if rep, err = Query(ctx, db, "CVE-2024-0001", now); err != nil {
				b.Fatal(err)
			}
		}
		per := time.Since(start) / time.Duration(b.N)
		v := rep.Vulnerabilities[0]
		if len(v.Releases) != 25 || v.Devices != benchDevices/2 {
			b.Fatalf("%d releases, %d devices affected; want 25, %d", len(v.Releases), v.Devices, benchDevices/2)
		}
		b.ReportMetric(float64(per.Milliseconds()), "ms/query")
		fmt.Printf("exposure %s: %d devices, %d releases x %d components: %v per query (limit 1s)\n",
			filepath.Base(b.Name()), benchDevices, benchReleases, benchComponents, per.Round(time.Millisecond))
		if per > time.Second {
			b.Errorf("exposure query took %v, over the 1 s budget", per)
		}
	})
}

// seedFleet stores the releases through the inventory's API, and the
// devices' reports straight into its devices table (signing and accepting
// 10,000 reports one by one would time the set-up, not the query; Running
// reads only the stored manifest's JSON).
func seedFleet(b *testing.B, db *inventory.DB, dsn string) {
	ctx := context.Background()
	for r := range benchReleases {
		comps := make([]inventory.ReleaseComponent, benchComponents)
		for c := range comps {
			name := fmt.Sprintf("pkg-%04d", c)
			ver := fmt.Sprintf("1.0-%d", r)
			comps[c] = inventory.ReleaseComponent{Ecosystem: "deb", Name: name, Version: ver, PURL: "pkg:deb/debian/" + name + "@" + ver}
		}
		rel := inventory.SBOMRelease{Target: fmt.Sprintf("gw/%d/rootfs.img", r), Version: fmt.Sprintf("1.%d", r), Hardware: "gw",
			Counter: uint64(r + 1), SupportUntil: "2030-01-01", SBOMSHA256: strings.Repeat("0", 64)}
		if err := db.StoreSBOMRelease(ctx, rel, comps); err != nil {
			b.Fatal(err)
		}
	}
	driver, conn := "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)"
	if inventory.IsPostgres(dsn) {
		driver, conn = "pgx", dsn
	}
	raw, err := sql.Open(driver, conn)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	ph := func(n int) string {
		if driver == "pgx" {
			return fmt.Sprintf("($%d, $%d, 'pem', 0, $%d)", 3*n+1, 3*n+2, 3*n+3)
		}
		return "(?, ?, 'pem', 0, ?)"
	}
	const per = 500
	for i := 0; i < benchDevices; i += per {
		var q strings.Builder
		q.WriteString("INSERT INTO devices (id, key_id, public_key, added_at, manifest) VALUES ")
		var args []any
		for j := range per {
			n := i + j
			if j > 0 {
				q.WriteString(", ")
			}
			q.WriteString(ph(j))
			r := n % benchReleases
			env := fmt.Sprintf(`{"manifest":{"schema":1,"device_id":"d%05d","hardware":"gw","running_slot":"A","slots":{"A":{"status":"good","target":"gw/%d/rootfs.img","version":"1.%d"},"B":{"status":"unknown"}}},"signature":"AA==","keyid":"%064d"}`, n, r, r, n)
			args = append(args, fmt.Sprintf("d%05d", n), fmt.Sprintf("%064d", n), []byte(env))
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
