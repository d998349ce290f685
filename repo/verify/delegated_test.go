package verify_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
)

// delegatedRepo is a published repository whose releases live in a
// delegated role ("acme", paths hw-a/*/*) or in 4 hashed bins, with every
// key at hand to forge what a broken or malicious publisher could.
type delegatedRepo struct {
	ws       *repo.Workspace
	pub      string
	root     []byte
	delegate crypto.Signer // acme's or the bins' key
	paths    []string      // delegated target paths
}

func newDelegatedRepo(t *testing.T, bins bool) *delegatedRepo {
	t.Helper()
	dir := t.TempDir()
	ws := initWorkspace(t, repo.InitOptions{})
	keyPath := filepath.Join(dir, "delegate.json")
	info, _, err := repo.GenerateKey("file:"+keyPath, "", signer.Ed25519, nil, signer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &delegatedRepo{ws: ws, pub: filepath.Join(dir, "pub"), delegate: loadKey(t, keyPath)}
	role := "acme"
	if bins {
		role = ""
		err = ws.AddHashedBins(repo.BinsOptions{Bits: 2, Keys: []string{info.URI}})
	} else {
		err = ws.AddDelegation("acme", repo.DelegationOptions{Paths: []string{"hw-a/*/*"}, Keys: []string{info.URI}})
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		img := filepath.Join(dir, fmt.Sprintf("fw%d.img", i))
		os.WriteFile(img, []byte(fmt.Sprintf("firmware image %d", i)), 0o644)
		tg, err := ws.AddDelegatedTarget(role, img, repo.AddOptions{Hardware: []string{"hw-a"}, Version: fmt.Sprintf("1.%d", i), Counter: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		r.paths = append(r.paths, tg.Path)
	}
	if _, err := ws.Publish(r.pub, repo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	r.root = mustRoot(t, ws.Dir)
	return r
}

func loadKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	k, _, err := signer.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (r *delegatedRepo) roleKey(t *testing.T, role string) crypto.Signer {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(r.ws.Dir, "keys", role+"-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s keys: %v %v", role, files, err)
	}
	return loadKey(t, files[0])
}

// binOf names the hashed bin of a target path.
func (r *delegatedRepo) binOf(t *testing.T, path string) string {
	staged, err := metadata.Targets().FromFile(filepath.Join(r.ws.Dir, "staged", "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	return staged.Signed.Delegations.SuccinctRoles.GetRolesForTarget(path)[0].Name
}

func (r *delegatedRepo) snapshot(t *testing.T) (*metadata.Metadata[metadata.TimestampType], *metadata.Metadata[metadata.SnapshotType]) {
	t.Helper()
	md := filepath.Join(r.pub, "metadata")
	ts, err := metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	sn, err := metadata.Snapshot().FromFile(filepath.Join(md, fmt.Sprintf("%d.snapshot.json", ts.Signed.Meta["snapshot.json"].Version)))
	if err != nil {
		t.Fatal(err)
	}
	return ts, sn
}

// rolePath is the published file of a delegated role, as snapshot names it.
func (r *delegatedRepo) rolePath(t *testing.T, role string) string {
	_, sn := r.snapshot(t)
	return filepath.Join(r.pub, "metadata", fmt.Sprintf("%d.%s.json", sn.Signed.Meta[role+".json"].Version, role))
}

// forge rewrites a delegated role with edit (which signs it, or not), then
// re-signs snapshot (recording the new length and hash, not the version)
// and timestamp with the online keys, so that only the role itself is wrong.
func (r *delegatedRepo) forge(t *testing.T, role string, edit func(*metadata.Metadata[metadata.TargetsType])) {
	t.Helper()
	p := r.rolePath(t, role)
	md, err := metadata.Targets().FromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edit(md)
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, b, 0o644)
	ts, sn := r.snapshot(t)
	h := sha256.Sum256(b)
	sn.Signed.Meta[role+".json"].Length, sn.Signed.Meta[role+".json"].Hashes = int64(len(b)), metadata.Hashes{"sha256": h[:]}
	sign(t, sn, r.roleKey(t, metadata.SNAPSHOT))
	snb, _ := sn.ToBytes(true)
	os.WriteFile(filepath.Join(r.pub, "metadata", fmt.Sprintf("%d.snapshot.json", sn.Signed.Version)), snb, 0o644)
	h = sha256.Sum256(snb)
	ts.Signed.Meta["snapshot.json"].Length, ts.Signed.Meta["snapshot.json"].Hashes = int64(len(snb)), metadata.Hashes{"sha256": h[:]}
	sign(t, ts, r.roleKey(t, metadata.TIMESTAMP))
	tsb, _ := ts.ToBytes(true)
	os.WriteFile(filepath.Join(r.pub, "metadata", "timestamp.json"), tsb, 0o644)
}

func sign[T metadata.Roles](t *testing.T, md *metadata.Metadata[T], keys ...crypto.Signer) {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		if _, err := md.Sign(signer.TUF(k)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyDelegatedRoles(t *testing.T) {
	type targetsMD = metadata.Metadata[metadata.TargetsType]
	tests := []struct {
		name    string
		bins    bool
		breakIt func(t *testing.T, r *delegatedRepo)
		want    error    // nil: verifies
		says    []string // in the message
		roles   int      // delegated roles verified
	}{
		{name: "named role verifies", roles: 1},
		{name: "hashed bins verify", bins: true, roles: 4},
		{name: "under-signed", want: &metadata.ErrUnsignedMetadata{},
			breakIt: func(t *testing.T, r *delegatedRepo) { r.forge(t, "acme", func(md *targetsMD) { sign(t, md) }) },
			says:    []string{"delegated role acme (delegated by targets)", "not enough signatures, got 0, want 1", "fwctl ceremony"}},
		{name: "signed by the targets key, not acme's", want: &metadata.ErrUnsignedMetadata{},
			breakIt: func(t *testing.T, r *delegatedRepo) {
				r.forge(t, "acme", func(md *targetsMD) { sign(t, md, r.roleKey(t, metadata.TARGETS)) })
			},
			says: []string{"delegated role acme", "signed by the wrong keys"}},
		{name: "tampered after signing", want: &metadata.ErrUnsignedMetadata{},
			breakIt: func(t *testing.T, r *delegatedRepo) {
				r.forge(t, "acme", func(md *targetsMD) { md.Signed.Targets[r.paths[0]].Length++ })
			},
			says: []string{"delegated role acme", "modified after signing"}},
		{name: "expired", want: &metadata.ErrExpiredMetadata{},
			breakIt: func(t *testing.T, r *delegatedRepo) {
				r.forge(t, "acme", func(md *targetsMD) {
					md.Signed.Expires = time.Now().Add(-time.Hour)
					sign(t, md, r.delegate)
				})
			},
			says: []string{"delegated role acme", "expired at", "fresh expiry"}},
		{name: "version differs from snapshot", want: &metadata.ErrBadVersionNumber{},
			breakIt: func(t *testing.T, r *delegatedRepo) {
				r.forge(t, "acme", func(md *targetsMD) { md.Signed.Version++; sign(t, md, r.delegate) })
			},
			says: []string{"delegated role acme", "expected acme version 1, got 2", "mixes metadata"}},
		{name: "target outside the delegated paths", want: verify.ErrOutsideDelegation,
			breakIt: func(t *testing.T, r *delegatedRepo) {
				r.forge(t, "acme", func(md *targetsMD) {
					md.Signed.Targets["hw-b/1.0/fw.img"] = md.Signed.Targets[r.paths[0]]
					sign(t, md, r.delegate)
				})
			},
			says: []string{"delegated role acme", "it lists target hw-b/1.0/fw.img, but targets delegates to acme only paths hw-a/*/*"}},
		{name: "bin holds another bin's target", bins: true, want: verify.ErrOutsideDelegation,
			breakIt: func(t *testing.T, r *delegatedRepo) {
				from := r.binOf(t, r.paths[0])
				to := "bins-0"
				if from == to {
					to = "bins-1"
				}
				var tf *metadata.TargetFiles
				r.forge(t, from, func(md *targetsMD) {
					tf = md.Signed.Targets[r.paths[0]]
					delete(md.Signed.Targets, r.paths[0])
					sign(t, md, r.delegate)
				})
				r.forge(t, to, func(md *targetsMD) { md.Signed.Targets[r.paths[0]] = tf; sign(t, md, r.delegate) })
			},
			says: []string{"(delegated by targets)", "hashed bin"}},
		{name: "bin modified on the server", bins: true, want: &metadata.ErrLengthOrHashMismatch{},
			breakIt: func(t *testing.T, r *delegatedRepo) {
				p := r.rolePath(t, r.binOf(t, r.paths[0]))
				b, _ := os.ReadFile(p)
				os.WriteFile(p, append(b, ' '), 0o644)
			},
			says: []string{"does not match the length and hashes snapshot records"}},
		{name: "bin missing", bins: true, want: os.ErrNotExist,
			breakIt: func(t *testing.T, r *delegatedRepo) { os.Remove(r.rolePath(t, r.binOf(t, r.paths[0]))) },
			says:    []string{"snapshot v1 names", "copy the whole repository"}},
		{name: "delegated image modified", want: errAnyFile,
			breakIt: func(t *testing.T, r *delegatedRepo) {
				files, _ := filepath.Glob(filepath.Join(r.pub, "targets", "hw-a", "1.0", "*"))
				os.WriteFile(files[0], []byte("evil"), 0o644)
			},
			says: []string{"delegated role acme: target hw-a/1.0/fw0.img: length 4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newDelegatedRepo(t, tt.bins)
			if tt.breakIt != nil {
				tt.breakIt(t, r)
			}
			// The same verdict and message from the directory and from
			// the same files served over HTTP.
			srv := httptest.NewServer(http.FileServer(http.Dir(r.pub)))
			defer srv.Close()
			remote, err := verify.NewHTTPSource(srv.URL, verify.HTTPOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, src := range []verify.Source{verify.DirSource(r.pub), remote} {
				res, err := verify.Verify(context.Background(), src, r.root, time.Now())
				if tt.want == nil {
					if err != nil {
						t.Fatalf("Verify(%s): %v", src, err)
					}
					if len(res.Delegated) != tt.roles || len(res.Targets) != len(r.paths) {
						t.Fatalf("%s: verified %d delegated roles and %d targets, want %d and %d", src, len(res.Delegated), len(res.Targets), tt.roles, len(r.paths))
					}
					continue
				}
				if err == nil {
					t.Fatalf("Verify(%s) accepted the broken repository", src)
				}
				if tt.want != errAnyFile && !errors.Is(err, tt.want) {
					t.Fatalf("Verify(%s) = %v\nwant %T", src, err, tt.want)
				}
				for _, s := range tt.says {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: message %q\ndoes not say %q", src, err, s)
					}
				}
			}
		})
	}
}

var errAnyFile = errors.New("a target file error")
