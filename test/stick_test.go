package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/internal/testenv"
)

// stick is a vfat filesystem on a loop device, mounted as a USB stick
// would be.
type stick struct {
	t        *testing.T
	dev, mnt string
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// newStick makes a size-MiB vfat stick labelled label and mounts it.
func newStick(t *testing.T, label string, mib int) *stick {
	t.Helper()
	losetup := testenv.LookPath(t, "losetup", "util-linux")
	mkfs := testenv.LookPath(t, "mkfs.vfat", "apt-get install dosfstools (scripts/deps.sh)")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "loop devices and mount need root")
	}
	backing := filepath.Join(t.TempDir(), "stick.img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, int64(mib)<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "-f", "--show", backing).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "a loop device", fmt.Sprintf("losetup -f --show failed: %v: %s", err, strings.TrimSpace(string(out))))
	}
	s := &stick{t: t, dev: strings.TrimSpace(string(out)), mnt: filepath.Join(t.TempDir(), "media")}
	t.Cleanup(func() { exec.Command(losetup, "-d", s.dev).Run() })
	run(t, mkfs, "-n", label, s.dev)
	os.MkdirAll(s.mnt, 0o755)
	return s
}

// put copies file onto the stick as name (mtools: no mount needed, so it
// works where the kernel has no vfat driver).
func (s *stick) put(file, name string) {
	s.t.Helper()
	run(s.t, testenv.LookPath(s.t, "mcopy", "apt-get install mtools"), "-i", s.dev, file, "::"+name)
}

// plug mounts the stick read-only, as the device sees it: the kernel's
// vfat driver, or fusefat on the same loop device where the kernel lacks
// one (this CI's VM kernel).
func (s *stick) plug() {
	s.t.Helper()
	if out, err := exec.Command("mount", "-t", "vfat", "-o", "ro", s.dev, s.mnt).CombinedOutput(); err == nil {
		s.t.Cleanup(func() { exec.Command("umount", s.mnt).Run() })
		return
	} else if !strings.Contains(string(out), "unknown filesystem type") {
		s.t.Fatalf("mount -t vfat %s: %v: %s", s.dev, err, out)
	}
	run(s.t, testenv.LookPath(s.t, "fusefat", "no vfat in this kernel: apt-get install fusefat"), "-o", "ro", s.dev, s.mnt)
	s.t.Cleanup(func() { exec.Command("umount", s.mnt).Run() })
}

// TestBundleFromVfatStick: a bundle file copied onto a real vfat stick
// installs from the stick's mount point, and a bundle directory on it too.
func TestBundleFromVfatStick(t *testing.T) {
	r := newRelease(t)
	p1, img1 := addTarget(r, "1.0.0", 1, 1<<20)
	r.publish()
	s := newStick(t, "FWUPDATE", 32)
	s.put(writeBundle(t, r, p1), "site.fwbundle")
	s.plug()
	d := offlineDevice(t, r)
	d.mustInstallFrom(s.mnt, img1)

	// The same stick after the site was updated: nothing newer, nothing done.
	before := d.snap()
	res, err := d.updateFrom(s.mnt, agent.UpdateOptions{})
	if err != nil || res.Installed || !res.UpToDate {
		t.Fatalf("second run: %v %+v", err, res)
	}
	d.assertUnchanged(before)
}
