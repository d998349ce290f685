package test

import (
	"archive/tar"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/repo/bundle"
	"github.com/fwctl/fwctl/repo/verify"
)

// renameEntries copies bundle file in, renaming each entry through name.
func renameEntries(t *testing.T, in string, name func(string) string) string {
	t.Helper()
	return editEntries(t, in, func(h *tar.Header, b []byte) []byte { h.Name = name(h.Name); return b })
}

// TestBundleDirector (issue 17): a device configured for a director
// installs from a bundle only what the director assigned it, with the
// image repository agreeing: a bundle carrying both releases and its
// assignment installs the assigned (older) one; a bundle without its
// director metadata and one whose director metadata is another device's
// are refused with no slot change, and leave no trace: the same device
// then installs from its own bundle. fwctl bundle refuses to write a bundle
// for a device without an assignment to a bundled release.
func TestBundleDirector(t *testing.T) {
	ctx := context.Background()
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	_, tg2 := dr.addRelease("2.0", 2)
	dr.publish()
	dr.assign("dev-1", tg1)
	dr.assign("dev-2", tg1)
	dr.assign("dev-2", tg2) // dev-2's director versions are above dev-1's
	d := dr.device("dev-1")
	dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		http.Error(w, "an offline site", http.StatusServiceUnavailable)
	}
	src := verify.DirSource(dr.pub)
	write := func(opt bundle.Options) string {
		t.Helper()
		plan, err := bundle.Prepare(ctx, src, opt)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "site.fwbundle")
		if err := plan.WriteFile(ctx, src, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	both := []string{tg1.Path, tg2.Path}

	for _, tc := range []struct {
		name   string
		bundle string
		want   []error
		msg    string
	}{
		{"no director metadata", write(bundle.Options{Releases: both}), []error{agent.ErrRefused, agent.ErrBundle}, "carries no director metadata for device dev-1"},
		{"only another device's", write(bundle.Options{Releases: both, Devices: []string{"dev-2"}}), []error{agent.ErrRefused, agent.ErrBundle}, "fwctl bundle --device dev-1"},
		{"another device's under this device's name", renameEntries(t, write(bundle.Options{Releases: both, Devices: []string{"dev-2"}}), func(n string) string {
			return strings.Replace(n, "director/devices/dev-2/", "director/devices/dev-1/", 1)
		}), []error{agent.ErrRefused}, `for device "dev-2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The same device throughout: refused director metadata is
			// never stored, so its own (lower) versions install below.
			before := d.snap()
			res, err := d.updateFrom(tc.bundle, agent.UpdateOptions{})
			for _, w := range tc.want {
				if !errors.Is(err, w) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("got %v (result %+v), want %v saying %q", err, res, w, tc.msg)
				}
			}
			d.assertUnchanged(before)
		})
	}

	// With its assignment the device installs 1.0, not the newer 2.0.
	d.mustInstallFrom(write(bundle.Options{Releases: both, Devices: []string{"dev-1", "dev-2"}}), img1)

	for _, tc := range []struct {
		name string
		opt  bundle.Options
		msg  string
	}{
		{"device not assigned", bundle.Options{Releases: both, Devices: []string{"dev-3"}}, "no metadata for it"},
		{"assigned release not bundled", bundle.Options{Releases: []string{tg1.Path}, Devices: []string{"dev-2"}}, "not a release of this bundle"},
	} {
		t.Run("fwctl bundle: "+tc.name, func(t *testing.T) {
			_, err := bundle.Prepare(ctx, src, tc.opt)
			if !errors.Is(err, bundle.ErrNotAssigned) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Prepare: %v, want ErrNotAssigned saying %q", err, tc.msg)
			}
		})
	}
}
