package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

// loopSlot is a slot on a loop device backed by a file.
type loopSlot struct {
	dev     string // /dev/loopN
	backing string // the file behind it
	fill    []byte // what the whole device held before any update
}

// newLoopSlot creates a size-byte file filled with a pattern unique to
// name, attaches it to a free loop device and detaches it when t ends.
func newLoopSlot(t *testing.T, losetup, name string, size int) *loopSlot {
	t.Helper()
	fill := bytes.Repeat([]byte(fmt.Sprintf("slot %s factory block ", name)), size/20+1)[:size]
	backing := filepath.Join(t.TempDir(), "slot"+name+".img")
	if err := os.WriteFile(backing, fill, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "-f", "--show", backing).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "a loop device", fmt.Sprintf("losetup -f --show failed: %v: %s", err, strings.TrimSpace(string(out))))
	}
	dev := strings.TrimSpace(string(out))
	// Hold the device open for the whole test: the kernel flushes a block
	// device's cache on its last close, which would hide a missing fsync.
	hold, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hold.Close()
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return &loopSlot{dev: dev, backing: backing, fill: fill}
}

// check requires the slot to hold img at its start and its old contents
// after it, both through the block device (as the bootloader reads it) and
// in the backing file, which only sees what the loop driver was handed (so
// the image left the device's page cache); blockUpdate checks the flush.
func (s *loopSlot) check(t *testing.T, img []byte) {
	t.Helper()
	want := append(bytes.Clone(img), s.fill[len(img):]...)
	for _, p := range []string{s.dev, s.backing} {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s is %d bytes, want %d: the slot's size changed", p, len(got), len(want))
		}
		if i := firstDiff(got, want); i >= 0 {
			where := "inside the image"
			if i >= len(img) {
				where = fmt.Sprintf("after the %d-byte image: the agent wrote past it", len(img))
			}
			t.Fatalf("%s differs at byte %d, %s", p, i, where)
		}
	}
}

// ioStats are a block device's completed write and flush requests
// (/sys/block/NAME/stat fields 5 and 16). Every fsync on a loop device
// reaches it as a flush.
type ioStats struct{ writes, flushes uint64 }

func (s *loopSlot) stats(t *testing.T) ioStats {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(s.dev), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 16 {
		testenv.Missing(t, "flush counters in /sys/block/*/stat", "Linux 5.5 or newer")
	}
	var st ioStats
	fmt.Sscan(f[4], &st.writes)
	fmt.Sscan(f[15], &st.flushes)
	return st
}

// update runs an update that must install into want, and checks at the
// block layer that it flushed the target and never wrote the running slot.
func blockUpdate(t *testing.T, d *device, want string, target, running *loopSlot) {
	t.Helper()
	tb, rb := target.stats(t), running.stats(t)
	res, err := d.update()
	if err != nil || !res.Installed || res.Slot != want {
		t.Fatalf("update: %+v, %v; want installed into %s", res, err, want)
	}
	ta, ra := target.stats(t), running.stats(t)
	if ta.writes == tb.writes {
		t.Fatalf("%s (slot %s) saw no write requests", target.dev, want)
	}
	if ta.flushes == tb.flushes {
		t.Fatalf("%s (slot %s) saw no flush: the agent reported success without fsyncing the slot", target.dev, want)
	}
	if ra.writes != rb.writes {
		t.Fatalf("%s, the running slot, saw %d write requests during the update", running.dev, ra.writes-rb.writes)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestBlockDeviceSlots installs into A/B slots on loop devices: the image
// lands at the start of the inactive slot, is flushed to the medium, reads
// back, and nothing else changes (not the bytes after the image, not the
// running slot, not the device size). The block layer's own counters show
// the flush and that the running slot saw no writes.
func TestBlockDeviceSlots(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (loop devices)", "run as root; CI runs as root")
	}
	losetup := testenv.LookPath(t, "losetup", "apt-get install mount")
	const size = 8 << 20
	a := newLoopSlot(t, losetup, "A", size)
	b := newLoopSlot(t, losetup, "B", size)

	r := newRelease(t)
	// Lengths that are not multiples of any block size, and v2 shorter than
	// v1 so that its slot keeps an old tail the agent must leave alone.
	v1 := r.add("1.0.0", 1, 3<<20+4097)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	withConfig(t, d, func(m map[string]any) { m["slots"] = map[string]string{"A": a.dev, "B": b.dev} })
	d.provision(r.rootJSON())

	blockUpdate(t, d, "B", b, a)
	b.check(t, v1)
	a.check(t, nil) // the running slot is never written
	if s := d.boot(); s != "B" {
		t.Fatalf("booted %s after installing into B", s)
	}
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}

	v2 := r.add("2.0.0", 2, 2<<20+1)
	r.publish()
	blockUpdate(t, d, "A", a, b)
	a.check(t, v2)
	b.check(t, v1)
	if s := d.boot(); s != "A" {
		t.Fatalf("booted %s after installing into A", s)
	}
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := d.ag.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Counter != 2 || st.Slots["A"].Status != "good" || st.Slots["A"].Length != int64(len(v2)) {
		t.Fatalf("status after v2: counter %d, slot A %+v", st.Counter, st.Slots["A"])
	}
}
