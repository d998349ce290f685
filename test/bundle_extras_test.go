package test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/repo/bundle"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/transparency/rekortest"
)

// writeBundleOpt bundles with options (writeBundle's general form).
func writeBundleOpt(t *testing.T, r *release, opt bundle.Options) string {
	t.Helper()
	ctx := context.Background()
	src := verify.DirSource(r.pub)
	plan, err := bundle.Prepare(ctx, src, opt)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "site.fwbundle")
	if err := plan.WriteFile(ctx, src, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBundleDelta (issue 17): a bundle written with --delta-from the
// device's installed release carries the delta, and the device installs by
// it; with the full image taken out of the bundle it still installs, so the
// delta is what was used.
func TestBundleDelta(t *testing.T) {
	r, d, _, v2, _ := deltaRelease(t)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		http.Error(w, "an offline site", http.StatusServiceUnavailable)
	}
	v1p, v2p := hw+"/1.0.0/firmware.img", hw+"/2.0.0/firmware.img"
	full := writeBundleOpt(t, r, bundle.Options{Releases: []string{v2p}, DeltaFrom: []string{v1p}})
	fi, _ := os.Stat(full)
	if fi.Size() < int64(len(v2)) {
		t.Fatalf("bundle of %d bytes for a %d-byte image", fi.Size(), len(v2))
	}
	var fullName string
	deltaOnly := rewrite(t, full, func(n string, b []byte) []byte {
		if strings.HasPrefix(n, "targets/") && strings.HasSuffix(n, "firmware.img") && len(b) == len(v2) {
			fullName = n
			return nil
		}
		return b
	})
	if fullName == "" {
		t.Fatal("the bundle holds no full image of 2.0.0")
	}
	fi, _ = os.Stat(deltaOnly)
	if fi.Size() > int64(len(v2))/10 {
		t.Fatalf("without the full image the bundle still has %d bytes (image %d): no delta in it?", fi.Size(), len(v2))
	}
	res, err := d.updateFrom(deltaOnly, agent.UpdateOptions{})
	if err != nil || !res.Installed || res.Delta == "" {
		t.Fatalf("install from a bundle holding only the delta: %+v, %v", res, err)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)

	// A bundle without a delta from the installed base has only the full
	// image; the device installs that.
	r.add("3.0.0", 3, 64<<10)
	r.publish()
	v3p := hw + "/3.0.0/firmware.img"
	res, err = d.updateFrom(writeBundleOpt(t, r, bundle.Options{Releases: []string{v3p}}), agent.UpdateOptions{})
	if err != nil || !res.Installed || res.Delta != "" {
		t.Fatalf("install from a bundle without a delta: %+v, %v", res, err)
	}
}

// TestBundleTransparency (issue 17): a device whose policy requires
// transparency installs from a bundle carrying the release's log proof
// (verified offline: signature, SET, inclusion proof, checkpoint), and
// refuses, with no slot change, a bundle of a release that was never
// logged and a bundle whose proof was taken out.
func TestBundleTransparency(t *testing.T) {
	rekorURL, logPub := rekortest.Need(t)
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 30_000)
	r.publishLogged(rekorURL)
	d := offlineDevice(t, r)
	logPubFile := filepath.Join(t.TempDir(), "log.pub")
	os.WriteFile(logPubFile, logPub, 0o644)
	withConfig(t, d, func(m map[string]any) {
		m["transparency"] = map[string]any{"require": true, "log_public_key": logPubFile,
			"release_public_key": filepath.Join(r.ws.Dir, "release.pub")}
	})
	v1p := hw + "/1.0.0/firmware.img"
	b1 := writeBundleOpt(t, r, bundle.Options{Releases: []string{v1p}})
	var proof bool
	rewrite(t, b1, func(n string, b []byte) []byte {
		proof = proof || strings.HasPrefix(n, "targets/") && strings.Contains(n, "firmware.img.") && !strings.HasSuffix(n, "firmware.img")
		return b
	})
	if !proof {
		t.Fatal("the bundle of a logged release carries no proof")
	}
	d.mustInstallFrom(b1, v1)

	r.add("2.0.0", 2, 30_000)
	r.publish() // not logged (bundled now: the next publishLogged logs every staged image)
	v2p, v3p := hw+"/2.0.0/firmware.img", hw+"/3.0.0/firmware.img"
	unlogged := writeBundleOpt(t, r, bundle.Options{Releases: []string{v2p}})
	r.add("3.0.0", 3, 30_000)
	r.publishLogged(rekorURL)
	stripped := rewrite(t, writeBundleOpt(t, r, bundle.Options{Releases: []string{v3p}}), func(n string, b []byte) []byte {
		if strings.HasPrefix(n, "targets/") && !strings.HasSuffix(n, "firmware.img") {
			return nil
		}
		return b
	})
	for _, tc := range []struct {
		name   string
		bundle string
		opt    agent.UpdateOptions
		want   []error
	}{
		{"release never logged", unlogged, agent.UpdateOptions{Target: v2p}, []error{agent.ErrRefused, agent.ErrNoLogProof}},
		{"proof taken out of the bundle", stripped, agent.UpdateOptions{Target: v3p}, []error{agent.ErrRefused, agent.ErrBundle}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.snap()
			res, err := d.updateFrom(tc.bundle, tc.opt)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("got %v (result %+v), want %v", err, res, w)
				}
			}
			d.assertUnchanged(before)
		})
	}
}
