package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T) (*httptest.Server, string) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "metadata"), 0o755)
	os.MkdirAll(filepath.Join(dir, "targets", "hw"), 0o755)
	os.WriteFile(filepath.Join(dir, "metadata", "timestamp.json"), []byte(`{"signed":{}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "metadata", "3.snapshot.json"), []byte(`{"signed":{}}`), 0o644)
	hash := strings.Repeat("ab", 32)
	os.WriteFile(filepath.Join(dir, "targets", "hw", hash+".fw.img"), []byte("0123456789"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("nope"), 0o644)
	s, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, hash
}

func TestServe(t *testing.T) {
	ts, hash := newTestServer(t)
	target := "/targets/hw/" + hash + ".fw.img"
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		body, ctype, cache string
	}{
		{"timestamp short cache", "GET", "/metadata/timestamp.json", nil, 200, `{"signed":{}}`, "application/json", "public, max-age=10"},
		{"versioned immutable", "GET", "/metadata/3.snapshot.json", nil, 200, `{"signed":{}}`, "application/json", "public, max-age=31536000, immutable"},
		{"target", "GET", target, nil, 200, "0123456789", "application/octet-stream", "public, max-age=31536000, immutable"},
		{"range", "GET", target, map[string]string{"Range": "bytes=2-4"}, 206, "234", "", ""},
		{"etag match", "GET", target, map[string]string{"If-None-Match": `"sha256-` + hash + `"`}, 304, "", "", ""},
		{"head", "HEAD", target, nil, 200, "", "", ""},
		{"post refused", "POST", target, nil, 405, "", "", ""},
		{"outside repo", "GET", "/secret", nil, 404, "", "", ""},
		{"traversal", "GET", "/metadata/../secret", nil, 404, "", "", ""},
		{"missing", "GET", "/metadata/9.root.json", nil, 404, "", "", ""},
		{"directory", "GET", "/targets/hw", nil, 404, "", "", ""},
		{"health", "GET", "/healthz", nil, 200, "ok\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.URL+tt.path, nil)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tt.body != "" && string(body) != tt.body {
				t.Fatalf("body %q, want %q", body, tt.body)
			}
			if tt.ctype != "" && res.Header.Get("Content-Type") != tt.ctype {
				t.Fatalf("content type %q, want %q", res.Header.Get("Content-Type"), tt.ctype)
			}
			if tt.cache != "" && res.Header.Get("Cache-Control") != tt.cache {
				t.Fatalf("cache-control %q, want %q", res.Header.Get("Cache-Control"), tt.cache)
			}
			if tt.status == 200 && tt.method == "GET" && tt.path != "/healthz" && res.Header.Get("ETag") == "" {
				t.Fatal("no ETag")
			}
		})
	}
}

func TestMetadataETagRevalidates(t *testing.T) {
	ts, _ := newTestServer(t)
	res, err := http.Get(ts.URL + "/metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/metadata/timestamp.json", nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d, want 304", res.StatusCode)
	}
}

// TestCachedMetadataFollowsPublish: a cached timestamp.json replaced by a
// publish (a rename: new inode) is served new once Revalidate has passed,
// with a new ETag; here Revalidate is a nanosecond, so at once.
func TestCachedMetadataFollowsPublish(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "metadata")
	os.MkdirAll(md, 0o755)
	ts := filepath.Join(md, "timestamp.json")
	os.WriteFile(ts, []byte(`{"v":1}`), 0o644)
	s, err := New(Options{Dir: dir, Revalidate: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func() (string, string) {
		res, err := http.Get(srv.URL + "/metadata/timestamp.json")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b), res.Header.Get("ETag")
	}
	b1, e1 := get()
	if b, e := get(); b != b1 || e != e1 {
		t.Fatalf("second read %q %s, want %q %s", b, e, b1, e1)
	}
	for i, content := range []string{`{"v":2}`, `{"v":3}`} { // same size: the inode tells
		tmp := filepath.Join(md, ".tmp")
		os.WriteFile(tmp, []byte(content), 0o644)
		if err := os.Rename(tmp, ts); err != nil {
			t.Fatal(err)
		}
		if b, e := get(); b != content || e == e1 {
			t.Fatalf("after publish %d: %q %s, want %q and a new ETag", i, b, e, content)
		}
	}
}

// TestPublishShowsAtOnce: a device polling right after a publish must get
// the new timestamp.json, although cached files are otherwise compared
// with the disk only once per Revalidate (here an hour, so only the
// directory watch can make the new file show). The wait is a bounded
// count of tries, far longer than a watch event takes.
func TestPublishShowsAtOnce(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "metadata")
	os.MkdirAll(md, 0o755)
	ts := filepath.Join(md, "timestamp.json")
	os.WriteFile(ts, []byte(`{"v":1}`), 0o644)
	s, err := New(Options{Dir: dir, Revalidate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func() string {
		res, err := http.Get(srv.URL + "/metadata/timestamp.json")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if got := get(); got != `{"v":1}` {
		t.Fatalf("served %q", got)
	}
	tmp := filepath.Join(md, ".tmp")
	os.WriteFile(tmp, []byte(`{"v":2}`), 0o644)
	if err := os.Rename(tmp, ts); err != nil {
		t.Fatal(err)
	}
	got := ""
	for range 200 {
		if got = get(); got == `{"v":2}` {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("after the publish: still %q", got)
}
