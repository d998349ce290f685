package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/signer"
)

// tufjsResult is one line client.mjs prints.
type tufjsResult struct {
	Path   string `json:"path"`
	Length int64  `json:"length"`
	File   string `json:"file"`
	Error  string `json:"error"`
}

// tufjs runs an independent TUF client (tuf-js) against a repository:
// metadata under metaURL, targets under targetsURL, trusting root, and
// returns what it got for each path (and the refresh error, if any).
func tufjs(t *testing.T, metaURL, targetsURL string, root []byte, paths ...string) (map[string]tufjsResult, string) {
	t.Helper()
	node, client := testenv.TUFJS(t)
	dir := t.TempDir()
	meta, dl := filepath.Join(dir, "metadata"), filepath.Join(dir, "targets")
	os.MkdirAll(meta, 0o755)
	os.MkdirAll(dl, 0o755)
	if err := os.WriteFile(filepath.Join(meta, "root.json"), root, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, append([]string{client, metaURL, targetsURL, meta, dl}, paths...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("tuf-js: %v: %s", err, stderr.String())
	}
	res := map[string]tufjsResult{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r tufjsResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("tuf-js printed %q (stderr %s)", out, stderr.String())
		}
		if r.Path == "" {
			return nil, r.Error
		}
		res[r.Path] = r
	}
	return res, ""
}

// TestTUFJSReadsOurRepository: tuf-js, the TUF client npm's sigstore
// uses, written by other people from the same specification, reads what
// fwctl publishes: a root chain with the root key replaced and then a
// 2-of-3 root threshold, a rotated timestamp key and a delegated vendor
// role; in a second repository, hashed bins. It downloads every target
// with the right bytes, and refuses a target whose served bytes were
// changed. Our own client and go-tuf agreeing with our own repository
// cannot catch a deviation from the specification both share (as our
// metadata dates once were, refused by the reference implementation).
func TestTUFJSReadsOurRepository(t *testing.T) {
	stage := func(r *release, imgs map[string][]byte, role, hardware, version string, counter uint64) {
		img := []byte(fmt.Sprintf("%s image %s %s", role, hardware, version))
		p := filepath.Join(t.TempDir(), "firmware.img")
		os.WriteFile(p, img, 0o644)
		tg, err := r.ws.AddDelegatedTarget(role, p, repo.AddOptions{Hardware: []string{hardware}, Version: version, Counter: counter})
		if err != nil {
			t.Fatal(err)
		}
		imgs[tg.Path] = img
	}
	check := func(r *release, imgs map[string][]byte) {
		t.Helper()
		url := r.serve()
		var paths []string
		for p := range imgs {
			paths = append(paths, p)
		}
		got, rerr := tufjs(t, url+"/metadata", url+"/targets", r.rootJSON(), paths...)
		if rerr != "" {
			t.Fatalf("tuf-js refused our repository: %s", rerr)
		}
		for p, img := range imgs {
			g := got[p]
			b, err := os.ReadFile(g.File)
			if g.Error != "" || err != nil || !bytes.Equal(b, img) {
				t.Errorf("tuf-js %s: %+v (%v)", p, g, err)
			}
		}
	}
	keys := t.TempDir()

	t.Run("rotations and a delegated role", func(t *testing.T) {
		r := newRelease(t)
		r.ws.Passphrase = pw
		imgs := map[string][]byte{hw + "/1.0.0/firmware.img": r.add("1.0.0", 1, 20_000)}
		r.publish()
		_, oldRootID, _ := signer.TUFKey(keyOf(t, r.ws, metadata.ROOT).Public())
		if _, err := r.ws.Rotate(metadata.ROOT, repo.RotateOptions{Revoke: []string{oldRootID}, Add: []string{newFileKey(t, keys, "root-2.json")}}); err != nil {
			t.Fatal(err)
		}
		r.publish()
		if _, err := r.ws.Rotate(metadata.ROOT, repo.RotateOptions{Add: []string{newFileKey(t, keys, "root-3a.json"), newFileKey(t, keys, "root-3b.json")}, Threshold: 2}); err != nil {
			t.Fatal(err)
		}
		_, tsID, _ := signer.TUFKey(keyOf(t, r.ws, metadata.TIMESTAMP).Public())
		os.Remove(filepath.Join(r.ws.Dir, "keys", metadata.TIMESTAMP+"-"+tsID[:16]+".json"))
		if _, err := r.ws.Rotate(metadata.TIMESTAMP, repo.RotateOptions{Revoke: []string{tsID}, Add: []string{newFileKey(t, keys, "ts-3.json")}}); err != nil {
			t.Fatal(err)
		}
		if err := r.ws.AddDelegation("acme", repo.DelegationOptions{Paths: []string{"vendor/*/*"}, Keys: []string{newFileKey(t, keys, "vendor.json")}}); err != nil {
			t.Fatal(err)
		}
		stage(r, imgs, "acme", "vendor", "2.0.0", 2)
		r.publish()
		if _, err := os.Stat(filepath.Join(r.pub, "metadata", "3.root.json")); err != nil {
			t.Fatal(err)
		}
		check(r, imgs)
	})

	t.Run("hashed bins, and a changed target", func(t *testing.T) {
		r := newRelease(t)
		r.ws.Passphrase = pw
		if err := r.ws.AddHashedBins(repo.BinsOptions{Bits: 3, Keys: []string{newFileKey(t, keys, "bins.json")}}); err != nil {
			t.Fatal(err)
		}
		imgs := map[string][]byte{}
		for i := range 5 {
			stage(r, imgs, "", fmt.Sprintf("board-%d", i), "1.0.0", 1)
		}
		r.publish()
		check(r, imgs)

		victim := "board-0/1.0.0/firmware.img"
		r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
			if strings.HasPrefix(req.URL.Path, "/targets/board-0/") {
				w.Write(bytes.Repeat([]byte{'x'}, len(imgs[victim])))
				return
			}
			next.ServeHTTP(w, req)
		}
		url := r.serve()
		got, rerr := tufjs(t, url+"/metadata", url+"/targets", r.rootJSON(), victim)
		if rerr != "" || got[victim].Error == "" {
			t.Fatalf("tuf-js accepted a changed target: %+v %s", got[victim], rerr)
		}
	})
}

// TestTUFJSReadsOurDirector: a device's director metadata is a TUF
// repository of its own (the director root chain served under the
// device's path); tuf-js verifies it and downloads the assigned image
// from the image repository's targets.
func TestTUFJSReadsOurDirector(t *testing.T) {
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	dr.addRelease("2.0", 2)
	dr.publish()
	dr.assign("dev-1", tg1)
	droot, err := os.ReadFile(dr.rootPath)
	if err != nil {
		t.Fatal(err)
	}
	url := dr.serve()
	got, rerr := tufjs(t, url+"/director/devices/dev-1/metadata", url+"/targets", droot, tg1.Path)
	if rerr != "" {
		t.Fatalf("tuf-js refused our director metadata: %s", rerr)
	}
	b, err := os.ReadFile(got[tg1.Path].File)
	if got[tg1.Path].Error != "" || err != nil || !bytes.Equal(b, img1) {
		t.Fatalf("tuf-js %s: %+v (%v)", tg1.Path, got[tg1.Path], err)
	}
}
