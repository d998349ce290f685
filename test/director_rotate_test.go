package test

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/online/director"
	"github.com/fwctl/fwctl/signer"
)

// rootKey is the director root key newDirected's Init wrote (plaintext
// test keys).
func (dr *directed) rootKey() crypto.Signer {
	dr.t.Helper()
	k, _, err := signer.Load(filepath.Join(filepath.Dir(dr.rootPath), "root.key"), nil)
	if err != nil {
		dr.t.Fatal(err)
	}
	return k
}

// reopen opens the director again with online key k (after a rotation).
func (dr *directed) reopen(k crypto.Signer) {
	dr.t.Helper()
	opt := dr.opt
	opt.KeyURI, opt.Signer = "", k
	d, err := director.Open(context.Background(), opt)
	if err != nil {
		dr.t.Fatal(err)
	}
	dr.t.Cleanup(d.Close)
	dr.dir = d
}

// directorRoot is the version of the director root the device trusts.
func (d *device) directorRoot() int64 {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, "state", "director", "metadata", "root.json"))
	if err != nil {
		d.t.Fatal(err)
	}
	var r struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		d.t.Fatal(err)
	}
	return r.Signed.Version
}

func genKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := signer.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestDirectorRotateOnlineKey: the operator rotates the director's online
// key (a suspected compromise). The device follows director root v2 and
// installs the next assignment, signed by the new key. The attacker kept
// the old key and a copy of the director, and signs an assignment of
// another (image-repository-signed) release with versions above the
// genuine ones: served by a mirror (with the real root chain) or by a
// network that also withholds root v2, the device refuses it and stays
// where it is. A device provisioned with root v1 behind that mirror finds
// v2 and refuses it too. Only a device that never saw v2 and whose
// network withholds it accepts the old key (TUF cannot do better than
// the root it was given), and then only a release the image repository
// signed.
func TestDirectorRotateOnlineKey(t *testing.T) {
	ctx := context.Background()
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	img2, tg2 := dr.addRelease("2.0", 2)
	img3, tg3 := dr.addRelease("3.0", 3)
	dr.publish()
	dr.assign("dev-1", tg1)
	d := dr.device("dev-1")
	d.mustInstall(img1)

	// The attacker's copy of the director, and the old online key.
	att := blob.Dir(t.TempDir())
	if err := os.CopyFS(filepath.Join(string(att), "director"), os.DirFS(filepath.Join(dr.pub, "director"))); err != nil {
		t.Fatal(err)
	}
	root1, err := os.ReadFile(dr.rootPath)
	if err != nil {
		t.Fatal(err)
	}

	online := genKey(t)
	res, err := director.Rotate(ctx, dr.opt, director.Rotation{Signers: []crypto.Signer{dr.rootKey()}, Online: online})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Resigned != 1 {
		t.Fatalf("Rotate = %+v", res)
	}
	// The director still holding the old key signs nothing more.
	a, err := director.ForTarget("dev-1", hw, *tg2)
	if err != nil {
		t.Fatal(err)
	}
	if err := dr.dir.Assign(ctx, []director.Assignment{a}); !errors.Is(err, director.ErrKeyNotAuthorised) {
		t.Fatalf("Assign with the rotated-out key = %v", err)
	}
	dr.reopen(online)

	if res, err := d.update(); err != nil || !res.UpToDate || res.Installed {
		t.Fatalf("update after the rotation = %+v, %v", res, err)
	}
	if v := d.directorRoot(); v != 2 {
		t.Fatalf("the device trusts director root v%d, want v2", v)
	}
	dr.assign("dev-1", tg2)
	d.mustInstall(img2)

	// The attacker signs with the old key: dev-1 -> 3.0, versions above
	// the genuine ones (v3).
	ad, err := director.Open(ctx, director.Options{Store: att, KeyURI: dr.opt.KeyURI, TrustedRoot: root1})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	for range 3 {
		a, _ := director.ForTarget("dev-1", hw, *tg1)
		if err := ad.Assign(ctx, []director.Assignment{a}); err != nil {
			t.Fatal(err)
		}
		if err := ad.Unassign(ctx, []string{"dev-1"}); err != nil {
			t.Fatal(err)
		}
	}
	a3, _ := director.ForTarget("dev-1", hw, *tg3)
	if err := ad.Assign(ctx, []director.Assignment{a3}); err != nil {
		t.Fatal(err)
	}
	if s, _ := ad.Status(ctx, "dev-1"); s.TargetsVersion <= 3 {
		t.Fatalf("forged targets v%d, want above the genuine v3", s.TargetsVersion)
	}

	var mu sync.Mutex
	attack := ""
	attH := director.Handler(att, http.NotFoundHandler())
	inner := dr.wrap
	dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		mu.Lock()
		a := attack
		mu.Unlock()
		p := req.URL.Path
		if strings.HasPrefix(p, "/director/") && (a == "withheld" || (a == "mirror" && !strings.HasSuffix(p, ".root.json"))) {
			attH.ServeHTTP(w, req)
			return
		}
		inner(w, req, next)
	}
	setAttack := func(a string) { mu.Lock(); attack = a; mu.Unlock() }
	for _, a := range []string{"mirror", "withheld"} {
		setAttack(a)
		before := d.snap()
		if res, err := d.update(); !errors.Is(err, agent.ErrRefused) {
			t.Fatalf("%s: update with metadata signed by the rotated-out key = %+v, %v; want refused", a, res, err)
		}
		d.assertUnchanged(before)
		if v := d.directorRoot(); v != 2 {
			t.Fatalf("%s: the device trusts director root v%d, want v2", a, v)
		}
	}
	setAttack("")
	if res, err := d.update(); err != nil || !res.UpToDate {
		t.Fatalf("update after the attack = %+v, %v; want up to date (nothing refused was kept)", res, err)
	}
	d.assertRunning(img2)

	// A device provisioned with root v1 behind the mirror finds v2.
	setAttack("mirror")
	fresh := dr.deviceAt(dr.url, "dev-1")
	before := fresh.snap()
	if res, err := fresh.update(); !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("a v1 device behind the mirror: %+v, %v; want refused", res, err)
	}
	fresh.assertUnchanged(before)
	// The limit: a v1 device whose network withholds v2 takes the old
	// key's word, for a release the image repository signed.
	setAttack("withheld")
	held := dr.deviceAt(dr.url, "dev-1")
	held.mustInstall(img3)
}

// TestDirectorRotateRootKeys: the operator replaces the director root key
// (v2 signed by the old and the new key). The online key is unchanged, so
// the device's timestamp still verifies under v1: it is fwrepo's
// Fwctl-Root-Version hint that makes the device fetch v2 (timestamp
// first, then 2.root.json). It installs the next assignment. A v3 signed
// by the revoked root key (naming the attacker's online key) is refused,
// and a genuine v3 signed by the new key is followed.
func TestDirectorRotateRootKeys(t *testing.T) {
	ctx := context.Background()
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	img2, tg2 := dr.addRelease("2.0", 2)
	dr.publish()
	dr.assign("dev-1", tg1)

	var (
		mu     sync.Mutex
		reqs   []string
		forged []byte // 3.root.json served with hint 3 when set
	)
	inner := dr.wrap
	dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		mu.Lock()
		reqs = append(reqs, req.URL.Path)
		f := forged
		mu.Unlock()
		p := req.URL.Path
		if f != nil && strings.HasPrefix(p, "/director/") && strings.HasSuffix(p, "/3.root.json") {
			w.Write(f)
			return
		}
		rec := httptest.NewRecorder()
		inner(rec, req, next)
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		if f != nil && strings.HasPrefix(p, "/director/") && strings.HasSuffix(p, "/timestamp.json") {
			w.Header().Set(manifests.RootVersionHeader, "3")
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}
	directorReqs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, p := range reqs {
			if strings.HasPrefix(p, "/director/") {
				out = append(out, strings.TrimPrefix(p, "/director/devices/dev-1/metadata/"))
			}
		}
		reqs = nil
		return out
	}
	d := dr.device("dev-1")
	d.mustInstall(img1)
	if res, err := d.update(); err != nil || !res.UpToDate { // the probe recorded: the hint is used from now on
		t.Fatalf("poll = %+v, %v", res, err)
	}

	old := dr.rootKey()
	_, oldID, _ := signer.TUFKey(old.Public())
	k2 := genKey(t)
	res, err := director.Rotate(ctx, dr.opt, director.Rotation{Signers: []crypto.Signer{old, k2},
		AddRootKeys: []crypto.PublicKey{k2.Public()}, RevokeRootKeys: []string{oldID}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Resigned != 0 || slices.Contains(res.RootKeyIDs, oldID) {
		t.Fatalf("Rotate = %+v", res)
	}
	directorReqs()
	if res, err := d.update(); err != nil || !res.UpToDate {
		t.Fatalf("update after the rotation = %+v, %v", res, err)
	}
	if got := directorReqs(); !slices.Equal(got[:2], []string{"timestamp.json", "2.root.json"}) {
		t.Fatalf("director requests %v: want the timestamp, then (on its hint) 2.root.json", got)
	}
	if v := d.directorRoot(); v != 2 {
		t.Fatalf("the device trusts director root v%d, want v2", v)
	}
	dr.assign("dev-1", tg2)
	d.mustInstall(img2)

	// The revoked root key signs v3, naming the attacker's online key.
	b, err := os.ReadFile(filepath.Join(dr.pub, "director", "metadata", "2.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	r3, err := metadata.Root().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	r3.Signed.Version = 3
	evil := genKey(t)
	ek, _, _ := signer.TUFKey(evil.Public())
	for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		for _, id := range slices.Clone(r3.Signed.Roles[role].KeyIDs) {
			if err := r3.Signed.RevokeKey(id, role); err != nil {
				t.Fatal(err)
			}
		}
		if err := r3.Signed.AddKey(ek, role); err != nil {
			t.Fatal(err)
		}
	}
	if err := r3.Signed.AddKey(mustTUFKey(t, old), metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	r3.ClearSignatures()
	if _, err := r3.Sign(signer.TUF(old)); err != nil {
		t.Fatal(err)
	}
	fb, err := r3.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	forged = fb
	mu.Unlock()
	before := d.snap()
	if res, err := d.update(); !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("update with a v3 signed by the revoked root key = %+v, %v; want refused", res, err)
	}
	d.assertUnchanged(before)
	if v := d.directorRoot(); v != 2 {
		t.Fatalf("the device trusts director root v%d after the forged v3, want v2", v)
	}
	mu.Lock()
	forged = nil
	mu.Unlock()

	// A genuine v3 (a renewal, signed by the new root key) is followed.
	if _, err := director.Rotate(ctx, dr.opt, director.Rotation{Signers: []crypto.Signer{k2}}); err != nil {
		t.Fatal(err)
	}
	if res, err := d.update(); err != nil || !res.UpToDate {
		t.Fatalf("update after v3 = %+v, %v", res, err)
	}
	if v := d.directorRoot(); v != 3 {
		t.Fatalf("the device trusts director root v%d, want v3", v)
	}
}

func mustTUFKey(t *testing.T, k crypto.Signer) *metadata.Key {
	t.Helper()
	tk, _, err := signer.TUFKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return tk
}
