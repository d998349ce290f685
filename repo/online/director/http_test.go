package director

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
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
