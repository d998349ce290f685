package test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/tufclient"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
	"github.com/fwctl/fwctl/signer/softhsmtest"
)

var pw = func() ([]byte, error) { return []byte("test-passphrase"), nil }

// newFileKey writes an encrypted key file outside any workspace and returns
// its URI.
func newFileKey(t *testing.T, dir, name string) string {
	t.Helper()
	info, _, err := repo.GenerateKey("file:"+filepath.Join(dir, name), "", signer.Ed25519, pw, signer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return info.URI
}

// TestRoot2of3AcrossBackends: root is 2 of 3 keys, one in a SoftHSM2 token
// and two in encrypted files. One key alone cannot sign a new root; two on
// different backends can, and a device follows the new root.
func TestRoot2of3AcrossBackends(t *testing.T) {
	tok := softhsmtest.Token(t, "release-root")
	hsmKey := tok + ";object=root-hsm"
	ref, _ := signer.ParseRef(hsmKey)
	if s, err := signer.GeneratePKCS11(ref, signer.ECDSAP256, signer.Options{}); err != nil {
		t.Fatal(err)
	} else {
		signer.Close(s)
	}
	keys := t.TempDir()
	f1, f2 := newFileKey(t, keys, "root-a.json"), newFileKey(t, keys, "root-b.json")

	dir := filepath.Join(t.TempDir(), "ws")
	res, err := repo.Init(dir, repo.InitOptions{RootThreshold: 2, Passphrase: pw,
		KeyURIs: map[string][]string{metadata.ROOT: {hsmKey, f1, f2}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Keys[metadata.ROOT]); n != 3 {
		t.Fatalf("%d root keys, want 3", n)
	}
	ws, err := repo.Open(dir, pw)
	if err != nil {
		t.Fatal(err)
	}
	root1, _ := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	r := releaseOf(t, ws, filepath.Join(t.TempDir(), "pub"))
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(root1)
	d.mustInstall(v1)

	// Only the token is reachable: root v2 lacks a signature.
	hide := func(uri string) func() {
		p := uri[len("file:"):]
		os.Rename(p, p+".away")
		return func() { os.Rename(p+".away", p) }
	}
	back1, back2 := hide(f1), hide(f2)
	if _, err := ws.RenewRoot(); err != nil {
		t.Fatal(err)
	}
	_, err = ws.Publish(r.pub, repo.PublishOptions{})
	var te *repo.ThresholdError
	if !errors.As(err, &te) || len(te.Missing) != 2 || te.Missing[0].Role != metadata.ROOT || te.Missing[0].Have != 1 || te.Missing[0].Need != 2 {
		t.Fatalf("publish with one root key: %v; want root v2 1 of 2 (old and new root)", err)
	}
	// The token and one file: published, and the device follows to root v2.
	back1()
	v2 := r.add("2.0.0", 2, 20_000)
	r.publish()
	back2()
	if _, err := verify.VerifyDir(r.pub, root1, time.Now()); err != nil {
		t.Fatal(err)
	}
	d.mustInstall(v2)
	if _, err := os.Stat(filepath.Join(d.dir, "state", "roots", "2.root.json")); err != nil {
		t.Fatalf("device did not archive root v2: %v", err)
	}
}

// keyOf loads the workspace key file of role (plaintext test workspaces).
func keyOf(t *testing.T, ws *repo.Workspace, role string) crypto.Signer {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(ws.Dir, "keys", role+"-*.json"))
	if len(files) != 1 {
		t.Fatalf("%s key files: %v", role, files)
	}
	s, _, err := signer.Load(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forgeRelease plays an attacker holding targetsKey who also controls the
// server (and so its online snapshot and timestamp keys): it publishes a
// new targets version offering img with a high counter.
func forgeRelease(t *testing.T, r *release, targetsKey crypto.Signer, img []byte) {
	t.Helper()
	md := filepath.Join(r.pub, "metadata")
	ts, err := metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := metadata.Snapshot().FromFile(filepath.Join(md, fmt.Sprintf("%d.snapshot.json", ts.Signed.Meta["snapshot.json"].Version)))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := metadata.Targets().FromFile(filepath.Join(md, fmt.Sprintf("%d.targets.json", snap.Signed.Meta["targets.json"].Version)))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "evil.img")
	os.WriteFile(p, img, 0o644)
	tf, err := metadata.TargetFile().FromFile(p, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	custom := json.RawMessage(`{"fw":{"schema":1,"hardware":["` + hw + `"],"version":"6.6.6","counter":99,"kind":"full"}}`)
	tf.Custom = &custom
	tf.Path = hw + "/6.6.6/evil.img"
	tg.Signed.Targets[tf.Path] = tf
	tg.Signed.Version++
	tg.ClearSignatures()
	if _, err := tg.Sign(signer.TUF(targetsKey)); err != nil {
		t.Fatal(err)
	}
	tb, _ := tg.ToBytes(true)
	os.WriteFile(filepath.Join(md, fmt.Sprintf("%d.targets.json", tg.Signed.Version)), tb, 0o644)
	dst := filepath.Join(r.pub, "targets", filepath.FromSlash(layout.HashedTarget(tf.Path, tf.Hashes["sha256"])))
	os.MkdirAll(filepath.Dir(dst), 0o755)
	os.WriteFile(dst, img, 0o644)

	th := sha256.Sum256(tb)
	snap.Signed.Version++
	snap.Signed.Meta["targets.json"] = &metadata.MetaFiles{Version: tg.Signed.Version, Length: int64(len(tb)), Hashes: metadata.Hashes{"sha256": th[:]}}
	snap.ClearSignatures()
	snap.Sign(signer.TUF(keyOf(t, r.ws, metadata.SNAPSHOT)))
	sb, _ := snap.ToBytes(true)
	os.WriteFile(filepath.Join(md, fmt.Sprintf("%d.snapshot.json", snap.Signed.Version)), sb, 0o644)
	sh := sha256.Sum256(sb)
	ts.Signed.Version++
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: snap.Signed.Version, Length: int64(len(sb)), Hashes: metadata.Hashes{"sha256": sh[:]}}
	ts.ClearSignatures()
	ts.Sign(signer.TUF(keyOf(t, r.ws, metadata.TIMESTAMP)))
	b, _ := ts.ToBytes(true)
	os.WriteFile(filepath.Join(md, "timestamp.json"), b, 0o644)
}

// TestCompromisedTargetsKeyRotatedOut: the targets key leaks; one command
// rotates it out (root v2 signed by the keys of v1 and v2), the device
// accepts the new chain, and refuses a release signed with the old key.
func TestCompromisedTargetsKeyRotatedOut(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	d.mustInstall(v1)
	old := keyOf(t, r.ws, metadata.TARGETS)
	_, oldID, _ := signer.TUFKey(old.Public())

	newKey := newFileKey(t, t.TempDir(), "targets-new.json")
	r.ws.Passphrase = pw // the new key is encrypted; the workspace's are plaintext
	ch, err := r.ws.Rotate(metadata.TARGETS, repo.RotateOptions{Revoke: []string{oldID[:16]}, Add: []string{newKey}})
	if err != nil {
		t.Fatal(err)
	}
	if ch.RootVersion != 2 || len(ch.Revoked) != 1 || len(ch.Added) != 1 {
		t.Fatalf("rotation: %+v", ch)
	}
	v2 := r.add("2.0.0", 2, 20_000)
	r.publish()
	d.mustInstall(v2)

	evil := make([]byte, 10_000)
	forgeRelease(t, r, old, evil)
	err = attack(t, d, agent.ErrRefused)
	t.Logf("refused as wanted: %v", err)
}

// TestCompromisedKeyControl shows the forged release above is a real
// attack: without the rotation the device would take it.
func TestCompromisedKeyControl(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	d.mustInstall(v1)
	forgeRelease(t, r, keyOf(t, r.ws, metadata.TARGETS), make([]byte, 10_000))
	res, err := d.update()
	if err != nil || !res.Installed || res.Available.Version != "6.6.6" {
		t.Fatalf("forged release with the current targets key: %+v, %v; want it installed (control)", res, err)
	}
}

// TestRootRotationOfflineDevice: three root rotations while a device is
// offline; it then follows root 1 → 4 in one update.
func TestRootRotationOfflineDevice(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	d.mustInstall(v1)
	r.ws.Passphrase = pw
	oldRoot := keyOf(t, r.ws, metadata.ROOT)
	_, oldRootID, _ := signer.TUFKey(oldRoot.Public())
	keys := t.TempDir()

	// v2: replace the root key.
	k2 := newFileKey(t, keys, "root-2.json")
	if _, err := r.ws.Rotate(metadata.ROOT, repo.RotateOptions{Revoke: []string{oldRootID}, Add: []string{k2}}); err != nil {
		t.Fatal(err)
	}
	r.add("2.0.0", 2, 20_000)
	r.publish()
	// v3: 2 of 3 root keys.
	if _, err := r.ws.Rotate(metadata.ROOT, repo.RotateOptions{Add: []string{newFileKey(t, keys, "root-3a.json"), newFileKey(t, keys, "root-3b.json")}, Threshold: 2}); err != nil {
		t.Fatal(err)
	}
	r.add("3.0.0", 3, 20_000)
	r.publish()
	// v4: a new targets key and a new timestamp key.
	tsOld := keyOf(t, r.ws, metadata.TIMESTAMP)
	_, tsID, _ := signer.TUFKey(tsOld.Public())
	os.Remove(filepath.Join(r.ws.Dir, "keys", metadata.TIMESTAMP+"-"+tsID[:16]+".json"))
	if _, err := r.ws.Rotate(metadata.TIMESTAMP, repo.RotateOptions{Revoke: []string{tsID}, Add: []string{newFileKey(t, keys, "ts-4.json")}}); err != nil {
		t.Fatal(err)
	}
	v4 := r.add("4.0.0", 4, 20_000)
	r.publish()

	for v := 1; v <= 4; v++ {
		if _, err := os.Stat(filepath.Join(r.pub, "metadata", fmt.Sprintf("%d.root.json", v))); err != nil {
			t.Fatal(err)
		}
	}
	d.mustInstall(v4)
	for v := 2; v <= 4; v++ {
		if _, err := os.Stat(filepath.Join(d.dir, "state", "roots", fmt.Sprintf("%d.root.json", v))); err != nil {
			t.Fatalf("device did not archive root v%d: %v", v, err)
		}
	}
}

// TestDelegatedVendorOutsidePaths: a vendor role delegated acme-gw-v2/*
// cannot release for other hardware: fwctl refuses to stage it, and when
// the vendor signs such a target anyway fwctl refuses to publish it.
func TestDelegatedVendorOutsidePaths(t *testing.T) {
	r := newRelease(t)
	r.ws.Passphrase = pw
	vendorKey := newFileKey(t, t.TempDir(), "vendor.json")
	if err := r.ws.AddDelegation("acme", repo.DelegationOptions{Paths: []string{hw + "/*/*"}, Keys: []string{vendorKey}}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, make([]byte, 5000), 0o644)
	if _, err := r.ws.AddDelegatedTarget("acme", img, repo.AddOptions{Hardware: []string{hw}, Version: "1.0.0", Counter: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := r.ws.AddDelegatedTarget("acme", img, repo.AddOptions{Hardware: []string{"other-plc"}, Version: "1.0.0", Counter: 1})
	if !errors.Is(err, repo.ErrOutsideDelegation) {
		t.Fatalf("staging outside the delegation: %v, want ErrOutsideDelegation", err)
	}
	// The vendor signs a target outside its paths anyway.
	staged := filepath.Join(r.ws.Dir, "staged", "delegated", "acme.json")
	dt, err := metadata.Targets().FromFile(staged)
	if err != nil {
		t.Fatal(err)
	}
	in := dt.Signed.Targets[hw+"/1.0.0/fw.img"]
	dt.Signed.Targets["other-plc/1.0.0/fw.img"] = in
	os.MkdirAll(filepath.Join(r.ws.Dir, "targets", "other-plc", "1.0.0"), 0o755)
	os.WriteFile(filepath.Join(r.ws.Dir, "targets", "other-plc", "1.0.0", "fw.img"), make([]byte, 5000), 0o644)
	dt.ToFile(staged, true)
	// fwctl publish verifies its output as a device would: the forged
	// role is refused before anything is written. (A device refusing such
	// a role that was published by other means: agent/tuf's delegation
	// tests and repo/verify's.)
	if _, err := r.ws.Publish(r.pub, repo.PublishOptions{}); !errors.Is(err, repo.ErrOutsideDelegation) {
		t.Fatalf("publishing the forged role: %v, want ErrOutsideDelegation", err)
	}
	delete(dt.Signed.Targets, "other-plc/1.0.0/fw.img")
	dt.ToFile(staged, true)
	r.publish()

	up := r.refresh()
	if _, err := up.GetTargetInfo(hw + "/1.0.0/fw.img"); err != nil {
		t.Fatalf("delegated target inside the paths: %v", err)
	}
	if tf, err := up.GetTargetInfo("other-plc/1.0.0/fw.img"); err == nil {
		t.Fatalf("a target outside the vendor's paths resolved: %+v", tf)
	}
	st, err := r.ws.Status()
	if err != nil || len(st.Delegations) != 1 || st.Delegations[0].Paths[0] != hw+"/*/*" {
		t.Fatalf("status delegations: %+v %v", st, err)
	}
}

// TestHashedBins: targets spread over hashed bins are found by the TUF
// updater walking the delegation to the one bin that holds each.
func TestHashedBins(t *testing.T) {
	r := newRelease(t)
	r.ws.Passphrase = pw
	if err := r.ws.AddHashedBins(repo.BinsOptions{Bits: 4, Keys: []string{newFileKey(t, t.TempDir(), "bins.json")}}); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for i := range 5 {
		img := filepath.Join(t.TempDir(), "fw.img")
		os.WriteFile(img, []byte(fmt.Sprintf("image %d", i)), 0o644)
		tg, err := r.ws.AddDelegatedTarget("", img, repo.AddOptions{Hardware: []string{hw}, Version: fmt.Sprintf("1.%d.0", i), Counter: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, tg.Path)
	}
	res, err := r.ws.Publish(r.pub, repo.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Targets != 5 {
		t.Fatalf("published %d targets, want 5", res.Targets)
	}
	up := r.refresh()
	for _, p := range paths {
		if _, err := up.GetTargetInfo(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	st, _ := r.ws.Status()
	if len(st.Delegations) != 1 || st.Delegations[0].Bins != 16 || st.Delegations[0].Targets != 5 {
		t.Fatalf("status: %+v", st.Delegations)
	}
}

// refresh runs the agent's TUF client against the served repository from its
// first root, as a freshly provisioned device would, and returns the updated
// metadata.
func (r *release) refresh() *tufclient.Trusted {
	r.t.Helper()
	c := tufclient.New(r.serve(), r.t.TempDir())
	rootFile := filepath.Join(r.t.TempDir(), "root.json")
	if err := os.WriteFile(rootFile, r.rootJSON(), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := c.Init(rootFile); err != nil {
		r.t.Fatal(err)
	}
	up, err := c.Update(context.Background(), r.rootJSON())
	if err != nil {
		r.t.Fatal(err)
	}
	return up
}
