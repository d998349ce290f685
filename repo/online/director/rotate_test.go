package director

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

// rotFixture is a director made by Init with encrypted keys, its root key
// opened, and two devices: dev-1 assigned, dev-2 assigned then unassigned.
type rotFixture struct {
	d       *Director
	st      blob.Dir
	keys    string
	root1   []byte
	rootKey crypto.Signer
	opt     Options
}

func newRotFixture(t *testing.T) *rotFixture {
	t.Helper()
	keys := t.TempDir()
	res, err := Init(InitOptions{Out: keys, RootPassphrase: []byte("root pass"), OnlinePassphrase: []byte("online pass")})
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(res.Root)
	if err != nil {
		t.Fatal(err)
	}
	rk, _, err := signer.Load(res.RootKey, func() ([]byte, error) { return []byte("root pass"), nil })
	if err != nil {
		t.Fatal(err)
	}
	st := blob.Dir(t.TempDir())
	opt := Options{Store: st, KeyURI: res.OnlineKey, TrustedRoot: root,
		KeyOptions: signer.Options{Passphrase: func() ([]byte, error) { return []byte("online pass"), nil }}}
	d, err := Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	ctx := context.Background()
	if err := d.Assign(ctx, []Assignment{assignment("dev-1"), assignment("dev-2")}); err != nil {
		t.Fatal(err)
	}
	if err := d.Unassign(ctx, []string{"dev-2"}); err != nil {
		t.Fatal(err)
	}
	return &rotFixture{d: d, st: st, keys: keys, root1: root, rootKey: rk, opt: opt}
}

func (f *rotFixture) root(t *testing.T, v string) []byte {
	t.Helper()
	return read(t, f.st, manifests.DirectorRoot+"/"+v+".root.json")
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := signer.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyID(t *testing.T, k crypto.Signer) string {
	t.Helper()
	_, id, err := signer.TUFKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRotateOnlineKey: root v2 names the new online key and is signed by
// the root key; every device is re-signed under it with higher versions
// (timestamp, snapshot and targets verify under v2 with go-tuf, the
// assignment is kept, nothing published is rewritten); the director that
// still holds the old key refuses to sign; a Refresh has nothing to do.
func TestRotateOnlineKey(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	before := map[string]*DeviceStatus{}
	published := map[string][]byte{}
	for _, id := range []string{"dev-1", "dev-2"} {
		before[id], _ = f.d.Status(ctx, id)
		for _, n := range []string{"1.targets.json", "1.snapshot.json"} {
			name := manifests.DirectorDevice(id) + "/" + n
			published[name] = read(t, f.st, name)
		}
	}
	online := newKey(t)
	res, err := Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{f.rootKey}, Online: online, Out: f.keys})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Resigned != 2 || res.OnlineKeyID != keyID(t, online) || res.OldOnlineKeyID != f.d.KeyID() || res.RootThreshold != 1 {
		t.Fatalf("Rotate = %+v", res)
	}
	root2 := f.root(t, "2")
	if b, err := os.ReadFile(filepath.Join(f.keys, "2.root.json")); err != nil || !bytes.Equal(b, root2) {
		t.Fatalf("2.root.json in --out differs from the published one (%v)", err)
	}
	r2, err := metadata.Root().FromBytes(root2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r2.Signed.Keys[f.d.KeyID()]; ok {
		t.Fatal("the old online key is still in root v2")
	}
	for id, b := range before {
		tg := verifyDevice(t, f.st, root2, id)
		if tg.Signed.Version != b.TargetsVersion+1 {
			t.Errorf("%s: targets v%d, want v%d", id, tg.Signed.Version, b.TargetsVersion+1)
		}
		n := len(tg.Signed.Targets)
		if want := map[string]int{"dev-1": 1, "dev-2": 0}[id]; n != want {
			t.Errorf("%s: %d targets after the re-sign, want %d", id, n, want)
		}
	}
	for name, b := range published {
		if !bytes.Equal(read(t, f.st, name), b) {
			t.Errorf("%s was rewritten", name)
		}
	}
	// The director still holding the old key (a fwrepo serve not yet
	// restarted) signs nothing more.
	tsBefore := read(t, f.st, manifests.DirectorDevice("dev-1")+"/timestamp.json")
	a := assignment("dev-1")
	a.Counter = 18
	if err := f.d.Assign(ctx, []Assignment{a}); !errors.Is(err, ErrKeyNotAuthorised) {
		t.Fatalf("Assign with the rotated-out key = %v, want ErrKeyNotAuthorised", err)
	}
	if _, err := f.d.Refresh(ctx); !errors.Is(err, ErrKeyNotAuthorised) {
		t.Fatalf("Refresh with the rotated-out key = %v, want ErrKeyNotAuthorised", err)
	}
	if !bytes.Equal(read(t, f.st, manifests.DirectorDevice("dev-1")+"/timestamp.json"), tsBefore) {
		t.Fatal("the rotated-out key published a timestamp")
	}
	if _, err := Open(ctx, f.opt); !errors.Is(err, ErrKeyNotAuthorised) {
		t.Fatalf("Open with the rotated-out key = %v", err)
	}
	opt := f.opt
	opt.KeyURI, opt.Signer = "", online
	d2, err := Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if res, err := d2.Refresh(ctx); err != nil || res.Targets+res.Timestamps != 0 {
		t.Fatalf("Refresh after the rotation = %+v, %v; want nothing to do", res, err)
	}
	if err := d2.Assign(ctx, []Assignment{a}); err != nil {
		t.Fatal(err)
	}
	verifyDevice(t, f.st, root2, "dev-1")
}

// TestRotateRootKeys: the root key is replaced (v2 signed by the old and
// the new key); v3 then needs the new key and no longer accepts the old
// one. A 2-of-2 root needs both signatures, and a refused rotation
// publishes nothing.
func TestRotateRootKeys(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	oldID := keyID(t, f.rootKey)
	k2 := newKey(t)
	res, err := Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{f.rootKey, k2}, AddRootKeys: []crypto.PublicKey{k2.Public()},
		RevokeRootKeys: []string{oldID[:8]}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || len(res.RootKeyIDs) != 1 || res.RootKeyIDs[0] != keyID(t, k2) || res.Resigned != 0 || res.OldOnlineKeyID != "" {
		t.Fatalf("Rotate = %+v", res)
	}
	// Devices need no re-sign: the online key is the same.
	verifyDevice(t, f.st, f.root(t, "2"), "dev-1")
	if _, err := Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{f.rootKey}}); !errors.Is(err, ErrRotation) || !strings.Contains(err.Error(), "not a root key of v2 or v3") {
		t.Fatalf("v3 signed by the revoked key = %v", err)
	}
	// 2 of 2: add k3, threshold 2; both v2's key and (for v3's threshold)
	// both of v3's must sign.
	k3 := newKey(t)
	if _, err := Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{k2}, AddRootKeys: []crypto.PublicKey{k3.Public()}, RootThreshold: 2}); !errors.Is(err, ErrRotation) || !strings.Contains(err.Error(), "2 of v3's root keys") {
		t.Fatalf("v3 (2 of 2) with one signature = %v", err)
	}
	if _, err := f.st.Stat(ctx, manifests.DirectorRoot+"/3.root.json"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("a refused rotation published 3.root.json (%v)", err)
	}
	if res, err = Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{k2, k3}, AddRootKeys: []crypto.PublicKey{k3.Public()}, RootThreshold: 2}); err != nil || res.RootThreshold != 2 {
		t.Fatalf("v3 = %+v, %v", res, err)
	}
	// v4 (a renewal) needs 2 of v3's keys.
	if _, err := Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{k3}}); !errors.Is(err, ErrRotation) || !strings.Contains(err.Error(), "2 of v3's root keys") {
		t.Fatalf("v4 with one of two signatures = %v", err)
	}
	if res, err = Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{k2, k3}}); err != nil || res.Version != 4 {
		t.Fatalf("renewal v4 = %+v, %v", res, err)
	}
	// The chain verifies from v1, as a device provisioned with it does.
	if r, err := verifyChain(ctx, f.st, f.root1); err != nil || r.Signed.Version != 4 {
		t.Fatalf("chain = %v, %v", r, err)
	}
}

// TestRotateRefuses: what is refused before anything is written.
func TestRotateRefuses(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	other := newKey(t)
	online, _, err := signer.Load(filepath.Join(f.keys, "online.key"), func() ([]byte, error) { return []byte("online pass"), nil })
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		rot  Rotation
		want string
	}{
		"no signature":        {Rotation{}, "1 of v1's root keys"},
		"signer not a root":   {Rotation{Signers: []crypto.Signer{other}}, "not a root key"},
		"revoke unknown":      {Rotation{Signers: []crypto.Signer{f.rootKey}, RevokeRootKeys: []string{"00000000"}}, "matches 0 root keys"},
		"revoke short prefix": {Rotation{Signers: []crypto.Signer{f.rootKey}, RevokeRootKeys: []string{keyID(t, f.rootKey)[:4]}}, "matches 0"},
		"revoke the only key": {Rotation{Signers: []crypto.Signer{f.rootKey}, RevokeRootKeys: []string{keyID(t, f.rootKey)}}, "no root keys"},
		"threshold too high":  {Rotation{Signers: []crypto.Signer{f.rootKey}, RootThreshold: 2}, "1 root keys but need 2"},
		"same online key":     {Rotation{Signers: []crypto.Signer{f.rootKey}, Online: online}, "already the online key"},
		"online key as root":  {Rotation{Signers: []crypto.Signer{f.rootKey, online}, AddRootKeys: []crypto.PublicKey{online.Public()}}, "both a root key and the online key"},
		"root key as online":  {Rotation{Signers: []crypto.Signer{f.rootKey}, Online: f.rootKey}, "both a root key and the online key"},
		"new key not signing": {Rotation{Signers: []crypto.Signer{f.rootKey}, AddRootKeys: []crypto.PublicKey{other.Public()}, RevokeRootKeys: []string{keyID(t, f.rootKey)}}, "1 of v2's root keys"},
	} {
		_, err := Rotate(ctx, f.opt, tc.rot)
		if !errors.Is(err, ErrRotation) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Rotate = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := f.st.Stat(ctx, manifests.DirectorRoot+"/2.root.json"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("a refused rotation published 2.root.json (%v)", err)
	}
}

// TestRefreshFinishesRotation: the rotation stopped after publishing root
// v2 and before the devices' timestamps (their metadata still signed by
// the old key): a director opened with the new key re-publishes them on
// its first Refresh.
func TestRefreshFinishesRotation(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	devs := filepath.Join(string(f.st), "director", "devices")
	saved := t.TempDir()
	if err := os.CopyFS(saved, os.DirFS(devs)); err != nil {
		t.Fatal(err)
	}
	online := newKey(t)
	if _, err := Rotate(ctx, f.opt, Rotation{Signers: []crypto.Signer{f.rootKey}, Online: online}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"dev-1", "dev-2"} { // the old timestamps back
		name := filepath.Join(id, "metadata", "timestamp.json")
		b, err := os.ReadFile(filepath.Join(saved, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(devs, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opt := f.opt
	opt.KeyURI, opt.Signer = "", online
	d, err := Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if res, err := d.Refresh(ctx); err != nil || res.Targets != 2 {
		t.Fatalf("Refresh = %+v, %v; want both devices re-published", res, err)
	}
	for _, id := range []string{"dev-1", "dev-2"} {
		verifyDevice(t, f.st, f.root(t, "2"), id)
	}
	if n, err := d.Resign(ctx); err != nil || n != 0 {
		t.Fatalf("Resign after Refresh = %d, %v", n, err)
	}
}

// TestRotateOffline: the root key signs on an offline machine, against a
// copy holding only the root chain, naming the server's new online key by
// its public key; the server publishes the root and its Refresh with the
// new key re-signs every device.
func TestRotateOffline(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	offline := blob.Dir(t.TempDir())
	if err := offline.Put(ctx, manifests.DirectorRoot+"/1.root.json", bytes.NewReader(f.root1), int64(len(f.root1))); err != nil {
		t.Fatal(err)
	}
	online := newKey(t)
	opt := Options{Store: offline}
	res, err := Rotate(ctx, opt, Rotation{Signers: []crypto.Signer{f.rootKey}, OnlinePublic: online.Public()})
	if err != nil || res.Version != 2 || res.Resigned != 0 || res.OnlineKeyID != keyID(t, online) {
		t.Fatalf("Rotate = %+v, %v", res, err)
	}
	if _, err := Rotate(ctx, opt, Rotation{Signers: []crypto.Signer{f.rootKey}, Online: online, OnlinePublic: online.Public()}); !errors.Is(err, ErrRotation) {
		t.Fatalf("Online and OnlinePublic both = %v", err)
	}
	b := read(t, offline, manifests.DirectorRoot+"/2.root.json")
	if v, err := PublishRoot(ctx, f.st, b); err != nil || v != 2 {
		t.Fatalf("PublishRoot = %d, %v", v, err)
	}
	sopt := f.opt
	sopt.KeyURI, sopt.Signer = "", online
	d, err := Open(ctx, sopt)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if r, err := d.Refresh(ctx); err != nil || r.Targets != 2 {
		t.Fatalf("Refresh = %+v, %v", r, err)
	}
	for _, id := range []string{"dev-1", "dev-2"} {
		verifyDevice(t, f.st, b, id)
	}
}
