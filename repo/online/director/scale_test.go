package director

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// TestAssignWave signs and publishes a wave of devices and reports the
// time (issue 15: 10,000 devices in at most 10 s). The full 10,000 run
// with FWCTL_DIRECTOR_WAVE=10000 (make bench-fleet); the default is a
// quick 500 so that make test stays fast.
func TestAssignWave(t *testing.T) {
	n := 500
	if v := os.Getenv("FWCTL_DIRECTOR_WAVE"); v != "" {
		fmt.Sscan(v, &n)
	}
	d, _, _ := newDirector(t, nil)
	as := make([]Assignment, n)
	for i := range as {
		as[i] = assignment(fmt.Sprintf("device-%05d", i))
	}
	start, cpu := time.Now(), processCPU()
	if err := d.Assign(context.Background(), as); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("director: signed and published %d devices in %s (%.0f devices/s), CPU %s", n, el.Round(time.Millisecond), float64(n)/el.Seconds(),
		(processCPU() - cpu).Round(time.Millisecond))
	start, cpu = time.Now(), processCPU()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = as[i].DeviceID
	}
	if err := d.Unassign(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
	t.Logf("director: unassigned %d devices in %s, CPU %s", n, time.Since(start).Round(time.Millisecond), (processCPU() - cpu).Round(time.Millisecond))
}

// TestOpenSweepsStaleTemps: a publish that crashed between writing its temp
// files and renaming them leaves .NAME.tmp* files in device directories.
// Opening the director removes those older than staleTemp, and nothing else:
// not a fresh temp file (a publish of another process may be under way),
// not a published name, not a file of another kind.
func TestOpenSweepsStaleTemps(t *testing.T) {
	d, st, root := newDirector(t, nil)
	ctx := context.Background()
	if err := d.Assign(ctx, []Assignment{assignment("dev-1"), assignment("dev-2")}); err != nil {
		t.Fatal(err)
	}
	dir := func(id string) string {
		return filepath.Join(string(st), filepath.FromSlash(manifests.DirectorDevice(id)))
	}
	old := time.Now().Add(-2 * time.Hour)
	mk := func(p string, mtime time.Time) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := []string{
		mk(filepath.Join(dir("dev-1"), ".timestamp.json.tmp123456"), old),
		mk(filepath.Join(dir("dev-1"), ".2.targets.json.tmp42"), old),
		mk(filepath.Join(dir("dev-2"), ".2.snapshot.json.tmp-99"), old), // atomicfile's pattern (Dir.Put)
		mk(filepath.Join(dir("dev-3"), ".1.targets.json.tmp7"), old),    // a new device that crashed before its timestamp
	}
	keep := []string{
		mk(filepath.Join(dir("dev-2"), ".timestamp.json.tmp77"), time.Now()), // fresh: maybe another publish
		mk(filepath.Join(dir("dev-2"), "notes.txt"), old),
		mk(filepath.Join(dir("dev-2"), ".hidden"), old),
		filepath.Join(dir("dev-1"), "timestamp.json"),
		filepath.Join(dir("dev-1"), "1.targets.json"),
		filepath.Join(dir("dev-2"), "1.snapshot.json"),
	}
	// Published files are old too: age alone never removes one.
	for _, p := range keep[3:] {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	d2, err := Open(ctx, Options{Store: st, Signer: d.opt.Signer, KeyURI: d.opt.KeyURI, KeyOptions: d.opt.KeyOptions, TrustedRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	for _, p := range stale {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale temp file %s is still there (%v)", p, err)
		}
	}
	for _, p := range keep {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	// Both devices still verify and read back.
	verifyDevice(t, st, root, "dev-1")
	if a, err := d2.Current(ctx, "dev-2"); err != nil || a == nil {
		t.Fatalf("dev-2 after the sweep: %v %v", a, err)
	}
	// A read-only director never removes anything.
	mk(filepath.Join(dir("dev-1"), ".timestamp.json.tmp5"), old)
	ro, err := Open(ctx, Options{Store: st, ReadOnly: true, TrustedRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	if _, err := os.Lstat(filepath.Join(dir("dev-1"), ".timestamp.json.tmp5")); err != nil {
		t.Errorf("a read-only open removed a temp file: %v", err)
	}
}
