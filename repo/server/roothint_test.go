package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
)

// bucket hides blob.Dir's type, so the server treats it as object
// storage (no directory watch, no sendfile).
type bucket struct{ blob.Store }

// TestTimestampNamesNewestRoot: timestamp.json carries the newest
// N.root.json's version (the agent's cue to skip its root probe), follows
// a new root at once, and is absent from other files and from a
// repository without versioned roots.
func TestTimestampNamesNewestRoot(t *testing.T) {
	for _, kind := range []string{"directory", "bucket"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			md := filepath.Join(dir, "metadata")
			os.MkdirAll(md, 0o755)
			os.WriteFile(filepath.Join(md, "timestamp.json"), []byte(`{"v":1}`), 0o644)
			opt := Options{Dir: dir, Revalidate: time.Nanosecond}
			if kind == "bucket" {
				opt = Options{Store: bucket{blob.Dir(dir)}, Revalidate: time.Nanosecond}
			}
			s, err := New(opt)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(s)
			defer srv.Close()
			hint := func(name string) string {
				t.Helper()
				res, err := http.Get(srv.URL + "/metadata/" + name)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.Header.Get(manifests.RootVersionHeader)
			}
			if h := hint("timestamp.json"); h != "" {
				t.Fatalf("no N.root.json: hint %q, want none", h)
			}
			// A root published before a timestamp (the publish order)
			// shows with that timestamp.
			for i, want := range []string{"1", "2", "4"} {
				os.WriteFile(filepath.Join(md, want+".root.json"), []byte(`{}`), 0o644)
				if want == "4" {
					os.WriteFile(filepath.Join(md, "3.root.json"), []byte(`{}`), 0o644)
				}
				tmp := filepath.Join(md, ".tmp")
				os.WriteFile(tmp, []byte(fmt.Sprintf(`{"v":%d}`, i+2)), 0o644)
				if err := os.Rename(tmp, filepath.Join(md, "timestamp.json")); err != nil {
					t.Fatal(err)
				}
				if h := hint("timestamp.json"); h != want {
					t.Fatalf("after root %s and a timestamp: hint %q, want %q", want, h, want)
				}
			}
			// A root alone shows once the directory watch (or, in a
			// bucket, Revalidate) says metadata/ changed.
			os.WriteFile(filepath.Join(md, "5.root.json"), []byte(`{}`), 0o644)
			h := ""
			for range 200 {
				if h = hint("timestamp.json"); h == "5" {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if h != "5" {
				t.Fatalf("after root 5 alone: hint %q", h)
			}
			if h := hint("1.root.json"); h != "" {
				t.Fatalf("1.root.json carries the hint %q", h)
			}
		})
	}
}
