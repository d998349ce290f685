package director

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
)

// TestHandlerNamesNewestRoot: a device's director timestamp carries the
// newest director root version (the agent's cue to skip its root probe),
// which follows a new root; other files do not carry it.
func TestHandlerNamesNewestRoot(t *testing.T) {
	d, st, _ := newDirector(t, nil)
	if err := d.Assign(context.Background(), []Assignment{assignment("dev-1")}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(st, http.NotFoundHandler()))
	defer srv.Close()
	hint := func(file string) string {
		t.Helper()
		res, err := http.Get(srv.URL + "/" + manifests.DirectorDevice("dev-1") + "/" + file)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", file, res.StatusCode)
		}
		return res.Header.Get(manifests.RootVersionHeader)
	}
	if h := hint("timestamp.json"); h != "1" {
		t.Fatalf("hint %q, want 1", h)
	}
	if h := hint("1.root.json"); h != "" {
		t.Fatalf("1.root.json carries the hint %q", h)
	}
	// The handler only looks for the file: a copy stands in for root 2.
	b := read(t, st, manifests.DirectorRoot+"/1.root.json")
	os.WriteFile(filepath.Join(string(st), filepath.FromSlash(manifests.DirectorRoot), "2.root.json"), b, 0o644)
	defer func(d time.Duration) { rootHintEvery = d }(rootHintEvery)
	rootHintEvery = 0
	if h := hint("timestamp.json"); h != "2" {
		t.Fatalf("after root 2: hint %q, want 2", h)
	}
}

// TestHandlerTimestampCache: a cached timestamp is served only while the
// stored file has the size and modification time it was read at; a
// re-signed one (same size, another time) is served at once.
func TestHandlerTimestampCache(t *testing.T) {
	st := blob.Dir(t.TempDir())
	name := manifests.DirectorDevice("dev-1") + "/timestamp.json"
	p := filepath.Join(string(st), filepath.FromSlash(name))
	os.MkdirAll(filepath.Dir(p), 0o755)
	srv := httptest.NewServer(Handler(st, http.NotFoundHandler()))
	defer srv.Close()
	get := func() string {
		t.Helper()
		res, err := http.Get(srv.URL + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	old := time.Now().Add(-time.Hour)
	for i, v := range []string{`{"v":1}`, `{"v":2}`, `{"v":3}`} {
		os.WriteFile(p, []byte(v), 0o644)
		os.Chtimes(p, old.Add(time.Duration(i)*time.Second), old.Add(time.Duration(i)*time.Second))
		for range 2 { // read, then from the cache
			if got := get(); got != v {
				t.Fatalf("served %q, want %q", got, v)
			}
		}
	}
	os.Remove(p)
	if res, err := http.Get(srv.URL + "/" + name); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("removed timestamp: %v %v", res, err)
	}
}
