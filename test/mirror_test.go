package test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/repo/mirror"
	"github.com/fwctl/fwctl/repo/verify"
)

// TestMirror (issue 17): a real agent updates through a site mirror that
// verified upstream first; with upstream down the mirror keeps serving;
// tampered upstream metadata is refused and the old state stays served.
func TestMirror(t *testing.T) {
	r := newRelease(t)
	_, img1 := addTarget(r, "1.0.0", 1, 64<<10)
	r.publish()
	up, err := verify.NewHTTPSource(r.serve(), verify.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := &mirror.Mirror{Upstream: up, Dir: t.TempDir(), Root: r.rootJSON()}
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	d := newDevice(t, srv.URL, hw)
	d.provision(r.rootJSON())
	d.mustInstall(img1)

	// A new release upstream reaches the device through the mirror.
	_, img2 := addTarget(r, "2.0.0", 2, 64<<10)
	r.publish()
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.mustInstall(img2)

	// Upstream down: the sync fails, the last verified state is served.
	addTarget(r, "3.0.0", 3, 64<<10)
	r.publish()
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		http.Error(w, "down", http.StatusBadGateway)
	}
	if err := m.Sync(context.Background()); err == nil {
		t.Fatal("sync with upstream down succeeded")
	}
	if res, err := d.update(); err != nil || !res.UpToDate {
		t.Fatalf("through the mirror with upstream down: %v %+v", err, res)
	}

	// Tampered upstream metadata: refused, the old state stays.
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if strings.HasSuffix(req.URL.Path, ".targets.json") {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, req)
			w.WriteHeader(rec.Code)
			w.Write([]byte(strings.Replace(rec.Body.String(), `"3.0.0"`, `"3.0.9"`, 1)))
			return
		}
		next.ServeHTTP(w, req)
	}
	err = m.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "keeping the last verified state") {
		t.Fatalf("tampered upstream: %v", err)
	}
	before := d.snap()
	if res, err := d.update(); err != nil || !res.UpToDate {
		t.Fatalf("through the mirror after tampered upstream: %v %+v", err, res)
	}
	d.assertUnchanged(before)
}
