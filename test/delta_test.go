package test

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fwctl/fwctl/repo"
)

// deltaRelease publishes v1 and a v2 that differs from it in a few places,
// with a delta from v1; it returns a device running v1 and both images.
func deltaRelease(t *testing.T) (*release, *device, []byte, []byte, *atomic.Int64) {
	return deltaReleaseOn(t, false)
}

// deltaReleaseOn is deltaRelease; with factory, v1 is the device's factory
// image (written into slot A before provisioning, never installed by the
// agent) instead of an install.
func deltaReleaseOn(t *testing.T, factory bool) (*release, *device, []byte, []byte, *atomic.Int64) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 2<<20)
	r.publish()
	var served atomic.Int64
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		rec := &countingWriter{ResponseWriter: w}
		next.ServeHTTP(rec, req)
		if strings.HasPrefix(req.URL.Path, "/targets/") {
			served.Add(rec.n)
		}
	}
	d := newDevice(t, r.serve(), hw)
	if factory {
		if err := os.WriteFile(d.cfg.Slots["A"], v1, 0o644); err != nil {
			t.Fatal(err)
		}
		d.provision(r.rootJSON())
	} else {
		d.provision(r.rootJSON())
		d.mustInstall(v1)
	}

	v2 := append([]byte(nil), v1...)
	for _, off := range []int{1000, 500_000, 1_500_000} {
		rand.Read(v2[off : off+300])
	}
	v2 = append(v2[:1_000_000], append(make([]byte, 4096), v2[1_000_000:]...)...) // an insertion shifts the rest
	p := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(p, v2, 0o644)
	tg, err := r.ws.AddTarget(p, repo.AddOptions{Hardware: []string{hw}, Version: "2.0.0", Counter: 2})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := r.ws.AddDeltas(context.Background(), tg.Path, 3, nil)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deltas %v, %v; want one from 1.0.0", ds, err)
	}
	if ds[0].Length > int64(len(v2))/20 {
		t.Fatalf("delta is %d bytes for a %d-byte image with 900 changed and 4096 inserted bytes", ds[0].Length, len(v2))
	}
	r.publish()
	served.Store(0)
	return r, d, v1, v2, &served
}

func TestDeltaUpdate(t *testing.T) {
	_, d, _, v2, served := deltaRelease(t)
	res, err := d.update()
	if err != nil || !res.Installed || res.Delta == "" {
		t.Fatalf("update: %+v, %v; want an install by delta", res, err)
	}
	if n := served.Load(); n > int64(len(v2))/20 {
		t.Fatalf("the device downloaded %d bytes for a delta update of a %d-byte image", n, len(v2))
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
}

// A device fresh from the factory, whose factory image is a published
// release, gets its first update as a delta too: the agent reads the
// running slot, which its state knows nothing of, and finds the delta's
// base there. A factory image that is no delta's base still gets the full
// image (TestDeltaUpdate's devices, and the rest of the tests).
func TestDeltaFromFactoryImage(t *testing.T) {
	_, d, _, v2, served := deltaReleaseOn(t, true)
	if got := d.boot(); got != "A" {
		t.Fatalf("booted %s, want the factory slot A", got)
	}
	res, err := d.update()
	if err != nil || !res.Installed || res.Slot != "B" || res.Delta == "" {
		t.Fatalf("update: %+v, %v; want an install into B by delta", res, err)
	}
	if n := served.Load(); n > int64(len(v2))/20 {
		t.Fatalf("the device downloaded %d bytes for a delta update of a %d-byte image", n, len(v2))
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
}

func TestDeltaWrongBaseFallsBackToFullImage(t *testing.T) {
	_, d, _, v2, served := deltaRelease(t)
	// The running slot no longer holds what the agent recorded (bit rot, a
	// manual write): the delta's base check fails, the full image is used.
	running := d.cfg.Slots["B"]
	b := mustRead(t, running)
	b[12345] ^= 1
	os.WriteFile(running, b, 0o644)
	res, err := d.update()
	if err != nil || !res.Installed || res.Delta != "" || !strings.Contains(res.DeltaError, "base") {
		t.Fatalf("update: %+v, %v; want a full install after the delta's base check failed", res, err)
	}
	if served.Load() < int64(len(v2)) {
		t.Fatalf("served %d bytes, want the full image too", served.Load())
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
}

func TestDeltaTamperedFallsBackToFullImage(t *testing.T) {
	r, d, _, v2, _ := deltaRelease(t)
	files, _ := filepath.Glob(filepath.Join(r.pub, "targets", hw, "2.0.0", "*.delta"))
	if len(files) != 1 {
		t.Fatalf("delta files %v", files)
	}
	b := mustRead(t, files[0])
	b[len(b)/2] ^= 0xff
	os.WriteFile(files[0], b, 0o644)
	res, err := d.update()
	if err != nil || !res.Installed || res.Delta != "" || res.DeltaError == "" {
		t.Fatalf("update: %+v, %v; want a full install after the delta failed", res, err)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
}
