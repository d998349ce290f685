package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/repo"
)

// TestDeviceInstallsDelegatedRelease: a release signed by a vendor role
// that is delegated this hardware's paths is found and installed by a
// device's ordinary update, with no --target.
func TestDeviceInstallsDelegatedRelease(t *testing.T) {
	r := newRelease(t)
	r.ws.Passphrase = pw
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	vendorKey := newFileKey(t, t.TempDir(), "vendor.json")
	if err := r.ws.AddDelegation("acme", repo.DelegationOptions{Paths: []string{hw + "/*/*"}, Keys: []string{vendorKey}}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "firmware.img")
	v2 := make([]byte, 20_000)
	copy(v2, "vendor build 2.0.0")
	os.WriteFile(img, v2, 0o644)
	if _, err := r.ws.AddDelegatedTarget("acme", img, repo.AddOptions{Hardware: []string{hw}, Version: "2.0.0", Counter: 2}); err != nil {
		t.Fatal(err)
	}
	r.publish()

	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	res, err := d.update()
	if err != nil || !res.Installed || res.Available.Version != "2.0.0" {
		t.Fatalf("update: %+v %v; want the delegated 2.0.0", res, err)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
	_ = v1
}

// sigRE finds the start of a signature's hex value, pretty-printed or not.
var sigRE = regexp.MustCompile(`("sig":\s*")`)

// TestWithheldDelegationStopsUpdate: when the delegated role that holds
// this hardware's releases cannot be verified — the file withheld (404)
// or its signature broken — the update fails and the device stays as it
// is. Offering only the top-level targets instead (the old behaviour,
// which installed the top-level 1.0.0 here) would let whoever controls the
// network keep devices on an older release silently.
func TestWithheldDelegationStopsUpdate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  func(w http.ResponseWriter, r *http.Request, next http.Handler)
		wantErr error
	}{
		{"withheld", func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			http.NotFound(w, r)
		}, agent.ErrNetwork},
		{"bad-signature", func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			b := sigRE.ReplaceAll(rec.Body.Bytes(), []byte(`${1}00`))
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
		}, agent.ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRelease(t)
			r.ws.Passphrase = pw
			r.add("1.0.0", 1, 20_000)
			r.publish()
			vendorKey := newFileKey(t, t.TempDir(), "vendor.json")
			if err := r.ws.AddDelegation("acme", repo.DelegationOptions{Paths: []string{hw + "/*/*"}, Keys: []string{vendorKey}}); err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(t.TempDir(), "firmware.img")
			os.WriteFile(img, bytes.Repeat([]byte("v2"), 10_000), 0o644)
			if _, err := r.ws.AddDelegatedTarget("acme", img, repo.AddOptions{Hardware: []string{hw}, Version: "2.0.0", Counter: 2}); err != nil {
				t.Fatal(err)
			}
			r.publish()
			next := r.h.Handler()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if strings.HasSuffix(req.URL.Path, ".acme.json") {
					tc.tamper(w, req, next)
					return
				}
				next.ServeHTTP(w, req)
			}))
			t.Cleanup(srv.Close)
			d := newDevice(t, srv.URL, hw)
			d.provision(r.rootJSON())
			before := d.snap()
			res, err := d.update()
			if !errors.Is(err, tc.wantErr) || !strings.Contains(fmt.Sprint(err), "delegated targets") {
				t.Fatalf("update: %+v, %v; want %v naming the delegated targets", res, err, tc.wantErr)
			}
			d.assertUnchanged(before)
		})
	}
}
