package mirror

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/verify"
)

// rootChain returns n director roots, each with a new root key, root k+1
// signed by the keys of k and k+1 (TUF rotation).
func rootChain(t *testing.T, n int) [][]byte {
	t.Helper()
	var out [][]byte
	root := metadata.Root(time.Now().Add(24 * time.Hour))
	var prev signature.Signer
	for v := 1; v <= n; v++ {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		sg, err := signature.LoadSigner(priv, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		key, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
			for _, id := range append([]string(nil), root.Signed.Roles[role].KeyIDs...) {
				if err := root.Signed.RevokeKey(id, role); err != nil {
					t.Fatal(err)
				}
			}
			if err := root.Signed.AddKey(key, role); err != nil {
				t.Fatal(err)
			}
		}
		root.Signed.Version = int64(v)
		root.ClearSignatures()
		for _, s := range []signature.Signer{prev, sg} {
			if s != nil {
				if _, err := root.Sign(s); err != nil {
					t.Fatal(err)
				}
			}
		}
		b, err := root.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		prev = sg
	}
	return out
}

// TestOlderDirectorRoots: a mirror provisioned with director root 3 also
// serves roots 1 and 2, so that a device provisioned with root 1 reaches
// root 3; a chain that does not lead to the provisioned root is not
// served. Without syncOlderRoots a root-1 device behind the mirror finds
// no 2.root.json and never verifies the metadata root 3 signs.
func TestOlderDirectorRoots(t *testing.T) {
	chain := rootChain(t, 3)
	upstream := func(roots [][]byte) verify.Source {
		files := map[string][]byte{}
		for i, b := range roots {
			files[manifests.DirectorRoot+"/"+strconv.Itoa(i+1)+".root.json"] = b
		}
		return verify.WithFiles(verify.DirSource(t.TempDir()), files)
	}
	for _, tc := range []struct {
		name  string
		roots [][]byte
		want  bool
	}{
		{"chain to the provisioned root", chain, true},
		{"forged root 2", [][]byte{chain[0], rootChain(t, 2)[1], chain[2]}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Mirror{Dir: t.TempDir(), Director: &Director{Upstream: upstream(tc.roots), Root: chain[2]}}
			if err := m.Open(); err != nil {
				t.Fatal(err)
			}
			err := m.syncOlderRoots(context.Background())
			for v, b := range chain[:2] {
				got, rerr := os.ReadFile(filepath.Join(m.directorStore(), manifests.DirectorRoot, strconv.Itoa(v+1)+".root.json"))
				switch {
				case tc.want && (err != nil || rerr != nil || string(got) != string(b)):
					t.Fatalf("root %d: %v / %v", v+1, err, rerr)
				case !tc.want && (err == nil || rerr == nil):
					t.Fatalf("root %d served from a chain that does not lead to the provisioned root (err %v)", v+1, err)
				}
			}
		})
	}
}
