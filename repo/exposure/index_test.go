package exposure

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/test/harness"
)

// TestIndex: a published repository's release SBOMs are read once (a
// second Index reads none) and stored; an SBOM changed in the published
// repository is refused and nothing of it is stored.
func TestIndex(t *testing.T) {
	r := harness.NewRelease(t)
	for i, sb := range []string{"rootfs-v1.spdx.json", "rootfs-v2.cdx.json"} {
		r.Add([]byte{byte('a' + i), 'f', 'w'}, repo.AddOptions{Hardware: []string{"acme-gw-v2"}, Version: []string{"1.0.0", "1.1.0"}[i],
			Counter: uint64(i + 1), SBOM: filepath.Join("..", "sbom", "testdata", sb), SupportUntil: "2030-12-31"})
	}
	r.Publish()
	ctx := context.Background()
	db := open(t, filepath.Join(t.TempDir(), "fleet.db"))
	src := verify.DirSource(r.Pub)
	res, err := Index(ctx, db, src, r.Root(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Releases != 2 || res.Indexed != 2 || res.Components != 62 {
		t.Fatalf("Index = %+v, want 2 releases indexed, 62 components", res)
	}
	if res, err := Index(ctx, db, src, r.Root(), time.Now()); err != nil || res.Indexed != 0 {
		t.Fatalf("second Index = %+v, %v; want nothing read again", res, err)
	}
	// Tamper with a published SBOM.
	m, _ := filepath.Glob(filepath.Join(r.Pub, "targets", "acme-gw-v2", "1.0.0", "*.spdx.json"))
	if len(m) != 1 {
		t.Fatalf("published SBOM: %v", m)
	}
	if err := os.WriteFile(m[0], []byte(`{"spdxVersion": "SPDX-2.3"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	db2 := open(t, filepath.Join(t.TempDir(), "fleet2.db"))
	if _, err := Index(ctx, db2, src, r.Root(), time.Now()); err == nil {
		t.Fatal("Index accepted a changed SBOM")
	} else {
		t.Log(err)
	}
	if rels, _ := db2.SBOMReleases(ctx); len(rels) != 0 {
		for _, x := range rels {
			if x.Version == "1.0.0" {
				t.Errorf("the changed SBOM's release was stored: %+v", x)
			}
		}
	}
}
