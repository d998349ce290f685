package test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/mirror"
	"github.com/fwctl/fwctl/repo/online/director"
	"github.com/fwctl/fwctl/repo/verify"
)

// TestMirrorDirector (issue 17): a site mirror also mirrors the director
// for the devices of its site. A device configured for the director, its
// config pointing at the mirror only, installs the release the director
// assigns it (not the newer one); the mirror serves the root hint as
// upstream does; an assignment the image repository did not sign,
// tampered upstream director metadata, another device's
// metadata and a replayed older timestamp are refused by the mirror, which keeps serving the last
// verified state, and the device sees no change; with upstream down the
// mirror keeps serving; the next assignment reaches the device.
func TestMirrorDirector(t *testing.T) {
	ctx := context.Background()
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	img2, tg2 := dr.addRelease("2.0", 2)
	dr.publish()
	dr.assign("dev-1", tg1)
	droot, err := os.ReadFile(dr.rootPath)
	if err != nil {
		t.Fatal(err)
	}
	up, err := verify.NewHTTPSource(dr.serve(), verify.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := &mirror.Mirror{Upstream: up, Dir: t.TempDir(), Root: dr.rootJSON(),
		Director: &mirror.Director{Upstream: up, Root: droot, Devices: []string{"dev-1", "dev-2"}}}
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/director/devices/dev-1/metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(manifests.RootVersionHeader) != "1" {
		t.Fatalf("mirrored director timestamp: %s, %s %q", resp.Status, manifests.RootVersionHeader, resp.Header.Get(manifests.RootVersionHeader))
	}
	oldTS, err := os.ReadFile(filepath.Join(dr.pub, manifests.DirectorDevice("dev-1"), "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}

	d := dr.deviceAt(srv.URL, "dev-1")
	d.mustInstall(img1)
	d2 := dr.deviceAt(srv.URL, "dev-2")
	if res, err := d2.update(); err != nil || res.Installed || !strings.Contains(res.Message, "not assigned") {
		t.Fatalf("unassigned device through the mirror: %+v, %v", res, err)
	}

	// refused runs each attack on the mirror's upstream: the sync fails
	// for dev-1 and the device, updating through the mirror, sees no
	// change.
	inner := dr.wrap
	type attack struct {
		name string
		wrap func(w http.ResponseWriter, req *http.Request, next http.Handler)
	}
	refused := func(attacks ...attack) {
		t.Helper()
		for _, tc := range attacks {
			t.Run(tc.name, func(t *testing.T) {
				dr.wrap = tc.wrap
				defer func() { dr.wrap = inner }()
				err := m.Sync(ctx)
				if err == nil || !strings.Contains(err.Error(), "keeping the last verified state") || !strings.Contains(err.Error(), "device dev-1") {
					t.Fatalf("sync: %v, want an error for device dev-1 keeping the last verified state", err)
				}
				t.Log(err)
				before := d.snap()
				if res, err := d.update(); err != nil || res.Installed || !res.UpToDate {
					t.Fatalf("through the mirror: %+v, %v", res, err)
				}
				d.assertUnchanged(before)
			})
		}
	}
	// tamper rewrites the director's responses whose path ends in suffix.
	tamper := func(suffix, old, new string) func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		return func(w http.ResponseWriter, req *http.Request, next http.Handler) {
			if !strings.HasPrefix(req.URL.Path, "/director/") || !strings.HasSuffix(req.URL.Path, suffix) {
				inner(w, req, next)
				return
			}
			rec := httptest.NewRecorder()
			inner(rec, req, next)
			w.WriteHeader(rec.Code)
			w.Write([]byte(strings.Replace(rec.Body.String(), old, new, 1)))
		}
	}

	// Upstream assigns 2.0, but what reaches the mirror is tampered with:
	// refused, 1.0's assignment stays served.
	dr.assign("dev-1", tg2)
	refused(
		attack{"tampered targets", tamper(".targets.json", tg2.Path, tg1.Path)},
		attack{"tampered timestamp", tamper("/timestamp.json", `"expires":"2`, `"expires":"3`)},
	)

	// A director (its online key stolen) assigns dev-1 a release the
	// image repository never signed, or a signed path with another
	// length: the mirror refuses it, dev-1 keeps 1.0's assignment.
	for name, mod := range map[string]func(a *director.Assignment){
		"director assigns an unsigned release": func(a *director.Assignment) { a.TargetName = "acme-gw-v2/9.9/evil.img" },
		"director assigns another length":      func(a *director.Assignment) { a.Length++ },
	} {
		a, err := director.ForTarget("dev-1", hw, *tg2)
		if err != nil {
			t.Fatal(err)
		}
		mod(&a)
		if err := dr.dir.Assign(ctx, []director.Assignment{a}); err != nil {
			t.Fatal(err)
		}
		refused(attack{name, inner})
	}
	dr.assign("dev-1", tg2)

	// Untampered, the new assignment reaches the device.
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	d.mustInstall(img2)

	// dev-3, not a device of this site, is assigned twice and then
	// unassigned upstream: its (empty) metadata has higher versions than
	// dev-1's, validly signed by the same director key.
	dr.assign("dev-3", tg1)
	dr.assign("dev-3", tg2)
	if err := dr.dir.Unassign(ctx, []string{"dev-3"}); err != nil {
		t.Fatal(err)
	}
	refused(
		attack{"another device's metadata", func(w http.ResponseWriter, req *http.Request, next http.Handler) {
			req.URL.Path = strings.Replace(req.URL.Path, "/devices/dev-1/", "/devices/dev-3/", 1)
			inner(w, req, next)
		}},
		attack{"replayed older timestamp", func(w http.ResponseWriter, req *http.Request, next http.Handler) {
			if req.URL.Path == "/director/devices/dev-1/metadata/timestamp.json" {
				w.Write(oldTS)
				return
			}
			inner(w, req, next)
		}},
		attack{"upstream down", func(w http.ResponseWriter, req *http.Request, next http.Handler) {
			http.Error(w, "down", http.StatusBadGateway)
		}},
	)
}
