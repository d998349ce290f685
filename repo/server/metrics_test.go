package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/manifests"
)

func TestKind(t *testing.T) {
	for path, want := range map[string]string{
		"/metadata/timestamp.json":                       KindTimestamp,
		"/metadata/3.snapshot.json":                      KindMetadata,
		"/metadata/root.json":                            KindMetadata,
		"/targets/hw/ab12.fw.img":                        KindImage,
		"/targets/hw/2.0.0/ab12.fw.img.from-1.0.0.delta": KindDelta,
		manifests.ManifestPath:                           KindDeviceAPI,
		manifests.NoncePath:                              KindDeviceAPI,
		"/healthz":                                       KindHealth,
		"/metrics":                                       KindMetrics,
		"/secret":                                        KindOther,
	} {
		if got := Kind(path); got != want {
			t.Errorf("Kind(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestMetrics serves a repository through Metrics.Wrap and reads the
// counters back from /metrics as Prometheus would scrape them.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "metadata"), 0o755)
	os.MkdirAll(filepath.Join(dir, "targets", "hw"), 0o755)
	os.WriteFile(filepath.Join(dir, "metadata", "timestamp.json"), []byte(`{"signed":{}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "metadata", "3.snapshot.json"), []byte(`{"signed":{}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "targets", "hw", strings.Repeat("ab", 32)+".fw.img"), []byte("0123456789"), 0o644)
	s, err := New(Options{Dir: dir, NoAccessLog: true})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	// The device API stand-in answers as the inventory does: 201 for a
	// manifest it stores, 403 for one it refuses.
	mux := http.NewServeMux()
	mux.Handle("/", s)
	mux.HandleFunc("POST "+manifests.ManifestPath, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test") == "refuse" {
			http.Error(w, "signature does not verify", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	ts := httptest.NewServer(m.Wrap(mux))
	defer ts.Close()
	get := func(path string, hdr ...string) {
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		if len(hdr) == 2 {
			req.Header.Set(hdr[0], hdr[1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	post := func(refuse bool) {
		req, _ := http.NewRequest("POST", ts.URL+manifests.ManifestPath, strings.NewReader("{}"))
		if refuse {
			req.Header.Set("X-Test", "refuse")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	get("/metadata/timestamp.json")
	get("/metadata/timestamp.json")
	get("/metadata/3.snapshot.json")
	get("/targets/hw/"+strings.Repeat("ab", 32)+".fw.img", "Range", "bytes=2-4")
	get("/nothing")
	post(false)
	post(true)
	post(true)
	m.Resign(true, nil)
	m.Resign(false, nil) // a check that had nothing to do
	m.Resign(false, errors.New("key not authorised"))

	checks := []struct {
		metric string
		want   float64
	}{
		{`fwrepo_http_requests_total{code="200",kind="timestamp"}`, 2},
		{`fwrepo_http_requests_total{code="200",kind="metadata"}`, 1},
		{`fwrepo_http_requests_total{code="206",kind="image"}`, 1},
		{`fwrepo_http_requests_total{code="404",kind="other"}`, 1},
		{`fwrepo_http_requests_total{code="201",kind="device_api"}`, 1},
		{`fwrepo_http_requests_total{code="403",kind="device_api"}`, 2},
		{`fwrepo_http_response_bytes_total{kind="timestamp"}`, 2 * float64(len(`{"signed":{}}`))},
		{`fwrepo_http_response_bytes_total{kind="image"}`, 3},
		{`fwrepo_device_reports_total{result="accepted"}`, 1},
		{`fwrepo_device_reports_total{result="refused"}`, 2},
		{`fwrepo_timestamp_resign_total{result="resigned"}`, 1},
		{`fwrepo_timestamp_resign_total{result="failed"}`, 1},
	}
	res, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want the text exposition format", ct)
	}
	values := parseExposition(string(body))
	for _, c := range checks {
		if got, ok := values[c.metric]; !ok || got != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.metric, got, ok, c.want)
		}
	}
	if _, ok := values["go_goroutines"]; !ok {
		t.Error("/metrics lacks the Go runtime collector (go_goroutines)")
	}
}

// parseExposition reads "name{labels} value" lines of the text format.
func parseExposition(s string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(s, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
