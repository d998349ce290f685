package test

import (
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/fwctl/fwctl/internal/depcheck"
)

// rule says which packages of ours the packages matching from may depend on
// (transitively; their own tree is always allowed). Every package of the
// module must match exactly one rule: a new package, or a new import
// across packages, is a decision written here.
type rule struct {
	from, allowed []string
}

// The arrow of DESIGN.md: cmd → internal/*cli → {repo/..., signer,
// transparency, agent, delta} → {tlog, tpm, manifests, internal leaves}.
var rules = []rule{
	// Leaves: nothing of ours.
	{from: []string{"manifests/..."}},
	{from: []string{"tlog/..."}},
	{from: []string{"tpm"}},
	{from: []string{"delta/..."}},
	{from: []string{"internal/atomicfile"}},
	{from: []string{"internal/testenv"}},
	{from: []string{"internal/cli/..."}},
	{from: []string{"internal/depcheck"}},
	{from: []string{"internal/duration"}},
	// Test helpers of leaves.
	{from: []string{"tpm/tpmtest"}, allowed: []string{"internal/testenv"}},

	// The device.
	{from: []string{"agent/..."}, allowed: []string{"tpm", "tlog", "manifests/...", "delta", "internal/atomicfile", "internal/duration"}},

	// The release side.
	{from: []string{"signer"}, allowed: []string{"tpm", "internal/atomicfile"}},
	{from: []string{"signer/softhsmtest"}, allowed: []string{"signer", "tpm", "internal/atomicfile", "internal/testenv"}},
	{from: []string{"transparency"}, allowed: []string{"tlog", "manifests", "internal/atomicfile"}},
	{from: []string{"transparency/attest"}, allowed: []string{"transparency", "tlog", "manifests/...", "signer", "tpm", "internal/atomicfile"}},
	{from: []string{"transparency/rekortest"}, allowed: []string{"tlog", "internal/testenv"}},
	{from: []string{"repo/layout"}},
	{from: []string{"repo/blob"}, allowed: []string{"repo/layout", "internal/atomicfile"}},
	{from: []string{"repo/blob/blobtest"}, allowed: []string{"repo/blob", "repo/layout", "internal/atomicfile"}},
	{from: []string{"repo/inventory/..."}, allowed: []string{"manifests/...", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo/verify"}, allowed: []string{"repo/blob", "repo/layout", "manifests", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo/upload"}, allowed: []string{"repo/blob", "repo/layout", "manifests", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo/online/..."}, allowed: []string{"repo/blob", "repo/layout", "repo/verify", "manifests/...", "signer", "tpm", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo/server/..."}, allowed: []string{"repo/blob", "repo/layout", "repo/verify", "repo/online/...", "repo/inventory/...", "repo/sbom/...", "repo/exposure/...", "manifests/...", "signer", "tpm", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo/sbom/..."}, allowed: []string{"manifests/...", "internal/atomicfile"}},
	{from: []string{"repo/exposure/..."}, allowed: []string{"repo/sbom/...", "repo/inventory/...", "repo/blob", "repo/layout", "repo/verify", "manifests/...", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo/mirror/..."}, allowed: []string{"repo/blob", "repo/bundle/...", "repo/layout", "repo/verify", "repo/server/...", "repo/inventory/...", "repo/online/...", "repo/sbom/...", "repo/exposure/...", "manifests/...", "signer", "tpm", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo/bundle/..."}, allowed: []string{"repo/blob", "repo/layout", "repo/verify", "manifests/...", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"repo"}, allowed: []string{"repo/blob", "repo/layout", "repo/verify", "repo/upload", "repo/sbom/...", "repo/bundle/...", "manifests/...", "signer", "tpm", "tlog", "transparency", "delta/...", "internal/atomicfile", "internal/duration"}},

	// CLIs: wiring only.
	{from: []string{"internal/cobracli"}, allowed: []string{"internal/cli/...", "internal/atomicfile", "internal/duration"}},
	{from: []string{"internal/fwagentcli", "cmd/fwagent"}, allowed: []string{"internal/fwagentcli", "internal/cli/...", "internal/cobracli", "agent/...", "tpm", "tlog", "manifests/...", "delta", "internal/atomicfile", "internal/duration"}},
	{from: []string{"internal/fwrepocli", "cmd/fwrepo"}, allowed: []string{"internal/fwrepocli", "internal/cli/...", "internal/cobracli", "repo/blob", "repo/layout", "repo/verify", "repo/online/...", "repo/server/...", "repo/inventory/...", "repo/upload", "repo/exposure/...", "repo/sbom/...", "repo/mirror/...", "repo/bundle/...", "manifests/...", "signer", "tpm", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"internal/fwctlcli", "cmd/fwctl"}, allowed: []string{"internal/fwctlcli", "internal/cli/...", "internal/cobracli", "repo/...", "signer/...", "transparency/...", "manifests/...", "delta/...", "tpm", "tlog", "internal/atomicfile", "internal/duration"}},
	{from: []string{"cmd/fwdelta"}, allowed: []string{"delta/...", "internal/cli"}},

	// Release packaging: third-party builders only.
	{from: []string{"internal/packaging"}},

	// End-to-end tests and their harness, and build tools that ship in no
	// binary, may use anything.
	{from: []string{"test/..."}, allowed: []string{"..."}},
	{from: []string{"tools/..."}, allowed: []string{"..."}},
}

// fwagentModules is the allow-list of third-party modules the device agent
// links: zstd for deltas, Merkle proofs, and the system and terminal
// packages. TUF verification is agent/tuf's own (go-tuf stays on the
// release side), and so is the TPM's wire format (tpm/wire.go; go-tpm stays
// on the release side and in tests). Adding one is a decision about the device's attack
// surface and size budget.
var fwagentModules = []string{
	"github.com/klauspost/compress",
	"github.com/transparency-dev/merkle",
	"golang.org/x/sys",
	"golang.org/x/term",
}

var (
	graphsOnce sync.Once
	graphs     []*depcheck.Graph
	graphsErr  error
)

// loadGraphs loads the whole module once per shipped configuration.
func loadGraphs(t *testing.T) []*depcheck.Graph {
	t.Helper()
	graphsOnce.Do(func() {
		for _, c := range depcheck.Shipped() {
			g, err := depcheck.Load("..", c, "./...")
			if err != nil {
				graphsErr = err
				return
			}
			graphs = append(graphs, g)
		}
	})
	if graphsErr != nil {
		t.Fatal(graphsErr)
	}
	return graphs
}

// TestDependencyRules holds the allow-list above in every shipped build
// configuration (linux on amd64, arm64, arm, riscv64; cgo on and off).
func TestDependencyRules(t *testing.T) {
	for _, g := range loadGraphs(t) {
		t.Run(g.Config.String(), func(t *testing.T) {
			for _, p := range g.Select(g.Module + "/...") {
				n := 0
				for _, r := range rules {
					if g.Match(p.ImportPath, r.from) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%s matches %d dependency rules, want exactly 1: add or narrow its rule in test/deps_test.go", g.Rel(p.ImportPath), n)
				}
			}
			for _, r := range rules {
				if len(r.allowed) == 1 && r.allowed[0] == "..." {
					continue
				}
				depcheck.AssertOnlyDependencies(t, g, r.from, r.allowed)
			}
		})
	}
}

// TestNamedDependencyRules states issue 11's rules in its own words, on top
// of the allow-list, so that loosening the allow-list cannot drop them.
func TestNamedDependencyRules(t *testing.T) {
	for _, g := range loadGraphs(t) {
		t.Run(g.Config.String(), func(t *testing.T) {
			for _, leaf := range []string{"manifests", "tlog", "tpm", "delta"} {
				depcheck.AssertNoDependency(t, g, []string{leaf}, othersThan(g, leaf))
			}
			depcheck.AssertNoDependency(t, g, []string{"agent/...", "cmd/fwagent"}, []string{"repo/...", "signer/...", "transparency/..."})
			depcheck.AssertNoDependency(t, g, []string{"repo/online/...", "repo/server/..."}, []string{"transparency/...", "delta/zstdref"})
		})
	}
}

// othersThan is every package of ours outside leaf's own tree.
func othersThan(g *depcheck.Graph, leaf string) []string {
	seen := map[string]bool{}
	for _, p := range g.Packages {
		for _, d := range append(g.Ours(p), p.ImportPath) {
			if g.Match(d, []string{g.Module + "/..."}) && !g.Match(d, []string{leaf + "/..."}) {
				seen[d] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// TestAgentDependencies holds DESIGN.md's line: the device agent links no
// cosign, Rekor client, cloud SDK, database driver or server framework, and
// only the third-party modules of its allow-list.
func TestAgentDependencies(t *testing.T) {
	forbidden := []string{
		"github.com/sigstore/cosign/...", "github.com/sigstore/rekor/...", "github.com/sigstore/sigstore-go/...",
		"github.com/sigstore/sigstore/pkg/signature/kms/...", "github.com/transparency-dev/trillian/...",
		"cloud.google.com/...", "github.com/aws/...", "github.com/Azure/...", "google.golang.org/api/...",
		"database/sql/...", "github.com/lib/pq/...", "github.com/jackc/...", "github.com/go-sql-driver/...", "modernc.org/sqlite/...", "github.com/mattn/go-sqlite3/...",
		"github.com/gin-gonic/...", "github.com/labstack/echo/...", "github.com/gofiber/...", "github.com/go-chi/...", "github.com/gorilla/mux/...",
		"google.golang.org/grpc/...", "github.com/miekg/pkcs11/...", "github.com/ThalesIgnite/crypto11/...",
		"github.com/DataDog/zstd/...", // cgo, release side only
		// agent/tuf verifies TUF metadata; go-tuf stays on the release side (issue 14)
		"github.com/theupdateframework/go-tuf/...", "github.com/sigstore/...", "google.golang.org/protobuf/...",
		// tpm encodes its fourteen commands itself: go-tpm's reflection-based
		// marshalling cost fwagent 0.33-0.38 MB (issue 21)
		"github.com/google/go-tpm/...",
	}
	for _, g := range loadGraphs(t) {
		t.Run(g.Config.String(), func(t *testing.T) {
			depcheck.AssertNoDependency(t, g, []string{"cmd/fwagent"}, forbidden)
			depcheck.AssertOnlyModules(t, g, "cmd/fwagent", fwagentModules)
		})
	}
}

// TestFwrepoDependencies: fwrepo serves and re-signs; it links no Rekor
// client, no go-openapi (Rekor's generated client) and no libzstd, and stays
// at most 400 packages (issue 11).
func TestFwrepoDependencies(t *testing.T) {
	for _, g := range loadGraphs(t) {
		t.Run(g.Config.String(), func(t *testing.T) {
			t.Run("no-rekor-openapi-libzstd", func(t *testing.T) {
				depcheck.AssertNoDependency(t, g, []string{"cmd/fwrepo"},
					[]string{"github.com/sigstore/rekor/...", "github.com/go-openapi/...", "github.com/DataDog/zstd/..."})
			})
			t.Run("at-most-400-packages", func(t *testing.T) {
				p := g.Packages[g.Module+"/cmd/fwrepo"]
				if p == nil {
					t.Fatal("cmd/fwrepo not loaded")
				}
				if n := len(p.Deps) + 1; n > 400 {
					t.Errorf("fwrepo links %d packages, want at most 400", n)
				}
			})
		})
	}
}
