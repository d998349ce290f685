package test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// TestNoUpdatePollRequests: a device configured for a director that is up
// to date asks for the two timestamps and nothing else (issue 15: at most
// 2 requests and 4 KB per no-update poll): fwrepo names its newest root on
// each timestamp, so the agent skips the root probes (N+1.root.json of the
// image repository and of the director), which were 2 more requests.
func TestNoUpdatePollRequests(t *testing.T) {
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	dr.publish()
	dr.assign("dev-1", tg1)
	var (
		mu    sync.Mutex
		reqs  []string
		bytes int
	)
	inner := dr.wrap
	dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		rec := httptest.NewRecorder()
		inner(rec, req, next)
		mu.Lock()
		reqs = append(reqs, req.URL.Path)
		bytes += rec.Body.Len()
		for k, vs := range rec.Header() {
			for _, v := range vs {
				bytes += len(k) + len(v) + 4
			}
		}
		mu.Unlock()
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}
	d := dr.device("dev-1")
	d.mustInstall(img1)
	for i := range 3 {
		mu.Lock()
		reqs, bytes = nil, 0
		mu.Unlock()
		res, err := d.update()
		if err != nil || res.Installed || !res.UpToDate {
			t.Fatalf("poll %d: %+v, %v", i, res, err)
		}
		mu.Lock()
		got, n := slices.Clone(reqs), bytes
		mu.Unlock()
		want := []string{"/metadata/timestamp.json", "/director/devices/dev-1/metadata/timestamp.json"}
		if !slices.Equal(got, want) {
			t.Fatalf("no-update poll %d requested %v, want %v", i, got, want)
		}
		if n > 4096-1024 { // leave a KB for request lines and headers
			t.Fatalf("no-update poll %d: %d bytes of responses, want well under 4 KB", i, n)
		}
		t.Logf("no-update poll %d: %v, %d bytes of responses", i, got, n)
	}
}
