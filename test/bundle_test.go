package test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/policy"
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/bundle"
	"github.com/fwctl/fwctl/repo/verify"
)

// offline is a device that never reaches a repository: its URL refuses.
func offlineDevice(t *testing.T, r *release) *device {
	t.Helper()
	d := newDevice(t, "http://127.0.0.1:1", hw)
	d.provision(r.rootJSON())
	return d
}

// writeBundle bundles releases of r's published repository into a file.
func writeBundle(t *testing.T, r *release, releases ...string) string {
	t.Helper()
	ctx := context.Background()
	src := verify.DirSource(r.pub)
	plan, err := bundle.Prepare(ctx, src, bundle.Options{Releases: releases})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "site.fwbundle")
	if err := plan.WriteFile(ctx, src, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// addTarget stages and returns the target path of a random image.
func addTarget(r *release, version string, counter uint64, n int) (string, []byte) {
	img := make([]byte, n)
	rand.Read(img)
	tg := r.h.Add(img, repo.AddOptions{Version: version, Counter: counter, Force: true})
	return tg.Path, img
}

// rewrite copies bundle file in to a new file, passing each entry's bytes
// through edit (nil: drop the entry).
func rewrite(t *testing.T, in string, edit func(name string, b []byte) []byte) string {
	t.Helper()
	return editEntries(t, in, func(h *tar.Header, b []byte) []byte { return edit(h.Name, b) })
}

// editEntries copies bundle file in, passing each entry's header and bytes
// through edit, which may change the header (nil bytes: drop the entry).
func editEntries(t *testing.T, in string, edit func(h *tar.Header, b []byte) []byte) string {
	t.Helper()
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	tr, tw := tar.NewReader(f), tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if b = edit(h, b); b == nil {
			continue
		}
		h.Size = int64(len(b))
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
	out := filepath.Join(t.TempDir(), "edited.fwbundle")
	os.WriteFile(out, buf.Bytes(), 0o644)
	return out
}

func (d *device) updateFrom(p string, opt agent.UpdateOptions) (*agent.UpdateResult, error) {
	return d.ag.UpdateFrom(context.Background(), p, opt)
}

func (d *device) mustInstallFrom(p string, img []byte) {
	d.t.Helper()
	res, err := d.updateFrom(p, agent.UpdateOptions{})
	if err != nil {
		d.t.Fatal(err)
	}
	if !res.Installed {
		d.t.Fatalf("nothing installed: %s", res.Message)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		d.t.Fatal(err)
	}
	d.assertRunning(img)
}

// TestBundleInstall: a device that never reaches the repository installs a
// release from a bundle file, and from the same files unpacked.
func TestBundleInstall(t *testing.T) {
	r := newRelease(t)
	p1, img1 := addTarget(r, "1.0.0", 1, 64<<10)
	r.publish()
	d := offlineDevice(t, r)
	d.mustInstallFrom(writeBundle(t, r, p1), img1)

	p2, img2 := addTarget(r, "2.0.0", 2, 64<<10)
	r.publish()
	src := verify.DirSource(r.pub)
	plan, err := bundle.Prepare(context.Background(), src, bundle.Options{Releases: []string{p2}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "stick", "site") + "/"
	if err := plan.WriteDir(context.Background(), src, dir); err != nil {
		t.Fatal(err)
	}
	d.mustInstallFrom(filepath.Dir(filepath.Clean(dir)), img2) // the mount point holding it
}

// TestBundleAttacks: every refused bundle leaves the slots, the boot
// environment and the counter as they were.
func TestBundleAttacks(t *testing.T) {
	r := newRelease(t)
	p1, _ := addTarget(r, "1.0.0", 1, 64<<10)
	r.publish()
	old := writeBundle(t, r, p1)
	p2, img2 := addTarget(r, "2.0.0", 2, 64<<10)
	r.publish()
	cur := writeBundle(t, r, p2)
	d := offlineDevice(t, r)
	d.mustInstallFrom(cur, img2)
	p3, _ := addTarget(r, "3.0.0", 3, 64<<10)
	r.publish()
	next := writeBundle(t, r, p3)

	other := newRelease(t)
	po, _ := addTarget(other, "9.0.0", 9, 64<<10)
	other.publish()

	isImage := func(name string) bool { return strings.HasPrefix(name, "targets/") }
	for _, tc := range []struct {
		name   string
		bundle func() string
		opt    agent.UpdateOptions
		now    time.Duration
		want   []error
	}{
		{"another fleet", func() string { return writeBundle(t, other, po) }, agent.UpdateOptions{}, 0, []error{agent.ErrRefused, tuf.ErrSignature}},
		{"older bundle (metadata rollback)", func() string { return old }, agent.UpdateOptions{}, 0, []error{agent.ErrRefused, tuf.ErrRollback}},
		{"older image, newer metadata (counter rollback)", func() string { return writeBundle(t, r, p1) }, agent.UpdateOptions{Target: p1}, 0, []error{agent.ErrRefused, policy.ErrRollback}},
		{"image swapped", func() string {
			return rewrite(t, next, func(n string, b []byte) []byte {
				if isImage(n) {
					rand.Read(b)
				}
				return b
			})
		}, agent.UpdateOptions{}, 0, []error{agent.ErrRefused}},
		{"image longer than signed", func() string {
			return rewrite(t, next, func(n string, b []byte) []byte {
				if isImage(n) {
					b = append(b, make([]byte, 4096)...)
				}
				return b
			})
		}, agent.UpdateOptions{}, 0, []error{agent.ErrRefused, tuf.ErrEndlessData}},
		{"truncated", func() string {
			b, _ := os.ReadFile(next)
			p := filepath.Join(t.TempDir(), "cut.fwbundle")
			os.WriteFile(p, b[:len(b)/2], 0o644)
			return p
		}, agent.UpdateOptions{}, 0, []error{agent.ErrRefused, agent.ErrBundle}},
		{"image missing", func() string {
			return rewrite(t, next, func(n string, b []byte) []byte {
				if isImage(n) {
					return nil
				}
				return b
			})
		}, agent.UpdateOptions{}, 0, []error{agent.ErrRefused, agent.ErrBundle}},
		{"expired under the default policy", func() string { return next }, agent.UpdateOptions{}, 3 * 24 * time.Hour, []error{agent.ErrRefused, tuf.ErrFreeze}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.ag.Now = func() time.Time { return time.Now().Add(tc.now) }
			defer func() { d.ag.Now = time.Now }()
			before := d.snap()
			res, err := d.updateFrom(tc.bundle(), tc.opt)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("got %v (result %+v), want %v", err, res, w)
				}
			}
			if tc.now > 0 && !strings.Contains(err.Error(), "offline.max_metadata_age") {
				t.Fatalf("the expiry error does not name the policy knob: %v", err)
			}
			d.assertUnchanged(before)
		})
	}

	// The same expired bundle under an explicit offline grace installs.
	d.cfg.Offline.MaxMetadataAge = agent.Duration(7 * 24 * time.Hour)
	d.ag.Now = func() time.Time { return time.Now().Add(3 * 24 * time.Hour) }
	if res, err := d.updateFrom(next, agent.UpdateOptions{}); err != nil || !res.Installed {
		t.Fatalf("with offline.max_metadata_age 7d: %v %+v", err, res)
	}
}
