package vm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/test/vm/logwrites"
)

// tornUnit is the device's atomic write unit for torn states: a write
// the device had not finished may have reached the medium in any subset
// of its 4 KiB units (the file systems use 4 KiB blocks).
const tornUnit = 4096 / sectorSize

// crashState is one disk the machine could have been left with.
type crashState struct {
	epoch int    // flushes completed before the cut
	mode  string // flushed, prefix, subset, torn
	keep  func(entry int, sector uint64) bool
	n     int // entries of the open epoch considered
}

// recording is one boot's write log and the disk it started from.
type recording struct {
	name string
	base string
	log  *logwrites.Log
	eps  [][]logwrites.Entry
}

// record boots a copy of from with the write log on, to completion, and
// returns the log; after is left as the disk at the end.
func (s *session) record(name, from, after string) *recording {
	t := s.t
	base := filepath.Join(s.dir, name+"-base.img")
	if err := copyFile(base, from); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(after, from); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(s.dir, name+".log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := s.boot(after, s.ctlUpdate, logPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.fx.verdict(b); err != nil || !b.done {
		t.Fatalf("recorded boot %s: %v", name, err)
	}
	l, c, err := logwrites.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &recording{name: name, base: base, log: l, eps: logwrites.Epochs(l.All())}
	writes, flushes := 0, 0
	for _, e := range l.All() {
		if e.Flush() {
			flushes++
		} else if e.Write() {
			writes++
		}
	}
	t.Logf("recorded %s: %d writes, %d flushes (%d counted by the superblock, %d after the last flush), boot took %.1fs",
		name, writes, flushes, len(l.Entries), len(l.Tail), b.took.Seconds())
	return r
}

// states plans n crash states spread over the recording's epochs.
func (r *recording) states(n int, rng *rand.Rand) []crashState {
	var out []crashState
	modes := []string{"flushed", "prefix", "subset", "torn"}
	for range n {
		ep := rng.IntN(len(r.eps))
		open := r.eps[ep]
		mode := modes[rng.IntN(len(modes))]
		cs := crashState{epoch: ep, mode: mode, n: len(open)}
		switch mode {
		case "flushed":
			cs.keep = func(int, uint64) bool { return false }
		case "prefix":
			j := rng.IntN(len(open) + 1)
			cs.keep = func(e int, _ uint64) bool { return e < j }
		case "subset":
			picked := map[int]bool{}
			for e := range open {
				picked[e] = rng.IntN(2) == 0
			}
			cs.keep = func(e int, _ uint64) bool { return picked[e] }
		case "torn":
			s := rng.Uint64()
			cs.keep = func(e int, sector uint64) bool {
				x := (sector/tornUnit)*0x9e3779b97f4a7c15 ^ uint64(e)*0xbf58476d1ce4e5b9 ^ s
				x ^= x >> 31
				return x*0x94d049bb133111eb>>63 == 1
			}
		}
		out = append(out, cs)
	}
	return out
}

// build writes the crash state's disk to path.
func (r *recording) build(cs crashState, path string) error {
	if err := copyFile(path, r.base); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, ep := range r.eps[:cs.epoch] {
		for _, e := range ep {
			if err := r.log.Apply(f, e, nil); err != nil {
				return err
			}
		}
	}
	for i, e := range r.eps[cs.epoch] {
		if err := r.log.Apply(f, e, func(k uint64) bool { return cs.keep(i, e.Sector+k) }); err != nil {
			return err
		}
	}
	return nil
}

// walker holds one disk that moves forward through a recording's epochs;
// a crash state is applied on top of it and undone after it is classified.
type walker struct {
	r     *recording
	f     *os.File
	path  string
	epoch int // epochs fully applied
}

func (r *recording) walker(path string) (*walker, error) {
	if err := copyFile(path, r.base); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &walker{r: r, f: f, path: path}, nil
}

func (w *walker) close() { w.f.Close(); os.Remove(w.path) }

// undoWriter records the old contents of every sector before writing it.
type undoWriter struct {
	f    *os.File
	undo []undoSector
}

type undoSector struct {
	off  int64
	data []byte
}

func (u *undoWriter) WriteAt(p []byte, off int64) (int, error) {
	old := make([]byte, len(p))
	if _, err := u.f.ReadAt(old, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	u.undo = append(u.undo, undoSector{off, old})
	return u.f.WriteAt(p, off)
}

// classify returns cs's class, leaving the disk at cs.epoch.
func (w *walker) classify(cs crashState, class func(string) (string, error)) (string, error) {
	for ; w.epoch < cs.epoch; w.epoch++ {
		for _, e := range w.r.eps[w.epoch] {
			if err := w.r.log.Apply(w.f, e, nil); err != nil {
				return "", err
			}
		}
	}
	u := &undoWriter{f: w.f}
	for i, e := range w.r.eps[cs.epoch] {
		if err := w.r.log.Apply(u, e, func(k uint64) bool { return cs.keep(i, e.Sector+k) }); err != nil {
			return "", err
		}
	}
	key, err := class(w.path)
	for j := len(u.undo) - 1; j >= 0; j-- {
		if _, err := w.f.WriteAt(u.undo[j].data, u.undo[j].off); err != nil {
			return "", err
		}
	}
	return key, err
}

// class is what the real bootloader's decision and the verdict depend on:
// the boot partition's bytes (grub.cfg, grubenv, kernel, initramfs: GRUB
// reads nothing else) and which complete image each slot holds.
func (s *session) class(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, bootStart*sectorSize, bootSectors*sectorSize)); err != nil {
		return "", err
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	for _, slot := range []struct {
		name  string
		start int64
	}{{"A", slotAStart}, {"B", slotBStart}} {
		kind := "partial"
		for _, img := range []struct {
			name string
			data []byte
		}{{"factory", s.fx.factory}, {"v2", s.fx.v2}} {
			b := make([]byte, len(img.data))
			if _, err := f.ReadAt(b, slot.start*sectorSize); err != nil {
				return "", err
			}
			if bytes.Equal(b, img.data) {
				kind = img.name
			}
		}
		key += " " + slot.name + "=" + kind
	}
	return key, nil
}

func testCrashStates(t *testing.T, s *session) {
	n := count(*flagStates, 24, 1000)
	boots := count(*flagBoots, 1, 40)
	rng := rand.New(rand.NewPCG(seed(t), 1919))
	// the update, and the reboot into the new slot (GRUB's save_env, the
	// agent's confirm)
	mid := filepath.Join(s.dir, "rec-updated.img")
	recs := []*recording{s.record("update", s.golden, mid)}
	recs = append(recs, s.record("reboot", mid, filepath.Join(s.dir, "rec-rebooted.img")))
	type member struct {
		rec *recording
		cs  crashState
	}
	classes := map[string][]member{}
	modes := map[string]int{}
	planned := map[*recording][]crashState{}
	for i := range n {
		r := recs[i%len(recs)]
		planned[r] = append(planned[r], r.states(1, rng)[0])
	}
	for _, r := range recs {
		sts := planned[r]
		slices.SortStableFunc(sts, func(a, b crashState) int { return a.epoch - b.epoch })
		w, err := r.walker(filepath.Join(s.dir, r.name+"-walk.img"))
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range sts {
			key, err := w.classify(cs, s.class)
			if err != nil {
				t.Fatal(err)
			}
			classes[key] = append(classes[key], member{r, cs})
			modes[r.name+"/"+cs.mode]++
		}
		w.close()
	}
	keys := make([]string, 0, len(classes))
	for k := range classes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// boot representatives: every class once (as the budget allows, classes
	// in random order), then more members round-robin
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	booted, failed := 0, 0
	bootedClasses := map[string]bool{}
	for round := 0; booted < boots && round < 8; round++ {
		for _, k := range keys {
			if booted >= boots || round >= len(classes[k]) {
				continue
			}
			m := classes[k][round]
			disk := filepath.Join(s.dir, fmt.Sprintf("crash-%d.img", booted))
			if err := m.rec.build(m.cs, disk); err != nil {
				t.Fatal(err)
			}
			booted++
			bootedClasses[k] = true
			if err := s.recover(disk, &boot{}); err != nil {
				failed++
				t.Errorf("crash state (%s, epoch %d of %d, %s, class %s), disk kept at %s: %v", m.rec.name, m.cs.epoch, len(m.rec.eps), m.cs.mode, k, disk, err)
				continue
			}
			if !*flagKeep {
				os.Remove(disk)
			}
		}
	}
	var cls []string
	for _, k := range keys {
		mark := ""
		if !bootedClasses[k] {
			mark = " (not booted)"
		}
		cls = append(cls, fmt.Sprintf("%s: %d states%s", k, len(classes[k]), mark))
	}
	slices.Sort(cls)
	summary := fmt.Sprintf("crash states: %d (%s) in %d classes; %d booted with GRUB (%d of %d classes), %d failed", n, formatPhases(modes), len(classes), booted, len(bootedClasses), len(classes), failed)
	t.Logf("%s\n  %s", summary, strings.Join(cls, "\n  "))
	fmt.Println(summary)
	if len(bootedClasses) < len(classes) && *flagTorture {
		t.Errorf("%d classes of crash states were never booted: raise the boot budget", len(classes)-len(bootedClasses))
	}
}
