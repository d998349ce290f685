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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	fwboot "github.com/fwctl/fwctl/agent/boot"
	"github.com/fwctl/fwctl/agent/bootenv"
	"github.com/fwctl/fwctl/internal/testenv"
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
	b, err := s.fullBoot(runOpts{disk: after, ctl: s.ctlUpdate, log: logPath})
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

// classify returns cs's image and group keys, leaving the disk at cs.epoch.
func (w *walker) classify(cs crashState, class func(string) (string, string, error)) (string, string, error) {
	for ; w.epoch < cs.epoch; w.epoch++ {
		for _, e := range w.r.eps[w.epoch] {
			if err := w.r.log.Apply(w.f, e, nil); err != nil {
				return "", "", err
			}
		}
	}
	u := &undoWriter{f: w.f}
	for i, e := range w.r.eps[cs.epoch] {
		if err := w.r.log.Apply(u, e, func(k uint64) bool { return cs.keep(i, e.Sector+k) }); err != nil {
			return "", "", err
		}
	}
	image, group, err := class(w.path)
	for j := len(u.undo) - 1; j >= 0; j-- {
		if _, err := w.f.WriteAt(u.undo[j].data, u.undo[j].off); err != nil {
			return "", "", err
		}
	}
	return image, group, err
}

// partitions of the disk: what GRUB reads (boot), the slots, the agent's
// state (data).
var partitions = []struct {
	name         string
	start, count int64
	fs           bool // holds a file system init checks with e2fsck
}{
	{"boot", bootStart, bootSectors, true},
	{"A", slotAStart, slotSectors, false},
	{"B", slotBStart, slotSectors, false},
	{"data", dataStart, dataSectors, true},
}

// class returns two keys for the disk at path: its image, the SHA-256 of
// every partition (identical images boot identically, so each is booted
// at most once), and its group, what the real bootloader's decision and
// the verdict depend on: the boot partition's bytes (grub.cfg, grubenv,
// kernel, initramfs: GRUB reads nothing else) and which complete image
// each slot holds. Boots go round-robin over groups. Every file system of
// every distinct image is also checked on the host with e2fsck -fp, the
// repair an unattended device runs at boot (s.fsck).
func (s *session) class(path string) (image, group string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var bad string
	kinds := map[string]string{}
	var bootPart []byte
	for _, p := range partitions {
		b := make([]byte, p.count*sectorSize)
		if _, err := f.ReadAt(b, p.start*sectorSize); err != nil {
			return "", "", err
		}
		h := sha256.Sum256(b)
		key := hex.EncodeToString(h[:8])
		image += p.name + "=" + key + " "
		if p.fs {
			r, err := s.fsck(p.name, key, b)
			if err != nil {
				return "", "", err
			}
			if r.rc >= 4 && bad == "" {
				bad = fmt.Sprintf("%s: e2fsck -fp exit %d: %s", p.name, r.rc, lastLines(r.out, 6))
			}
		}
		switch p.name {
		case "boot":
			group, bootPart = key, b
		case "A", "B":
			kind := "partial"
			for _, img := range []struct {
				name string
				data []byte
			}{{"factory", s.fx.factory}, {"v2", s.fx.v2}} {
				if bytes.HasPrefix(b, img.data) {
					kind = img.name
				}
			}
			group += " " + p.name + "=" + kind
			kinds[p.name] = kind
		}
	}
	if _, ok := s.decided[group]; !ok {
		if s.decided[group], err = s.decide(bootPart, kinds); err != nil {
			return "", "", err
		}
	}
	if d := s.decided[group]; bad == "" && d != "factory" && d != "v2" {
		bad = "GRUB's slot selection " + d
	}
	if bad != "" {
		s.unrepairable[image] = bad
	}
	return image, group, nil
}

// decide is the boot decision of the boot partition b, on the host: it
// reads grub/grubenv from the ext2 file system as it is (GRUB runs no
// fsck) with debugfs, and runs examples/boot/grub.cfg's selection on it
// as boot.Switch.Select mirrors it (agent/bootenv's TestExampleGrubCfg
// holds the two equal under the real GRUB). It returns the image the
// chosen slot holds, or why none.
func (s *session) decide(b []byte, kinds map[string]string) (string, error) {
	part := filepath.Join(s.dir, "decide-boot.img")
	if err := os.WriteFile(part, b, 0o644); err != nil {
		return "", err
	}
	defer os.Remove(part)
	env, err := exec.Command(s.debugfs, "-R", "cat grub/grubenv", part).Output()
	if err != nil {
		return fmt.Sprintf("unreadable: debugfs cannot read grub/grubenv: %v", err), nil
	}
	envPath := filepath.Join(s.dir, "decide-grubenv")
	if err := os.WriteFile(envPath, env, 0o644); err != nil {
		return "", err
	}
	defer os.Remove(envPath)
	sw := &fwboot.Switch{Env: bootenv.GRUB{Path: envPath}, Slots: []string{"A", "B"}, Tries: 3}
	slot, err := sw.Select()
	if err != nil {
		return fmt.Sprintf("failed on grubenv %q: %v", env, err), nil
	}
	if k := kinds[slot]; k != "factory" && k != "v2" {
		return fmt.Sprintf("chose slot %s, which holds %s (grubenv %q)", slot, k, env), nil
	}
	return kinds[slot], nil
}

// fsckResult is e2fsck -fp's verdict on one distinct partition image.
type fsckResult struct {
	rc  int
	out string
}

// fsck checks a partition image (once per content) with e2fsck -fp on a
// scratch copy. Exit codes 0-3 mean -p repaired it; 4 and above mean it
// stops an unattended boot ("UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY").
func (s *session) fsck(name, key string, b []byte) (fsckResult, error) {
	if r, ok := s.fscked[name+key]; ok {
		return r, nil
	}
	tmp := filepath.Join(s.dir, "fsck-"+name+".img")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fsckResult{}, err
	}
	defer os.Remove(tmp)
	out, err := exec.Command(s.e2fsck, "-fp", tmp).CombinedOutput()
	r := fsckResult{out: strings.TrimSpace(string(out))}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.rc = ee.ExitCode()
	case err != nil:
		return r, err
	}
	s.fscked[name+key] = r
	return r, nil
}

func testCrashStates(t *testing.T, s *session) {
	n := count(*flagStates, 24, 1000)
	boots := count(*flagBoots, 2, 1<<30) // -torture: every distinct image
	rng := rand.New(rand.NewPCG(seed(t), 1919))
	s.e2fsck = testenv.LookPath(t, "e2fsck", "apt-get install e2fsprogs")
	s.debugfs = testenv.LookPath(t, "debugfs", "apt-get install e2fsprogs")
	s.fscked, s.unrepairable, s.decided = map[string]fsckResult{}, map[string]string{}, map[string]string{}
	// the update, and the reboot into the new slot (GRUB's save_env, the
	// agent's confirm)
	mid := filepath.Join(s.dir, "rec-updated.img")
	recs := []*recording{s.record("update", s.golden, mid)}
	recs = append(recs, s.record("reboot", mid, filepath.Join(s.dir, "rec-rebooted.img")))
	type member struct {
		rec *recording
		cs  crashState
	}
	images := map[string][]member{} // by image key
	groups := map[string][]string{} // group key -> its distinct images, in order of discovery
	modes := map[string]int{}
	planned := map[*recording][]crashState{}
	for i := range n {
		r := recs[i%len(recs)]
		planned[r] = append(planned[r], r.states(1, rng)[0])
	}
	boundaries := 0
	for _, r := range recs {
		// every flush boundary once, on top of the random states: the
		// file-system check below sees each of them
		for ep := range r.eps {
			planned[r] = append(planned[r], crashState{epoch: ep, mode: "boundary", keep: func(int, uint64) bool { return false }})
			boundaries++
		}
		sts := planned[r]
		slices.SortStableFunc(sts, func(a, b crashState) int { return a.epoch - b.epoch })
		w, err := r.walker(filepath.Join(s.dir, r.name+"-walk.img"))
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range sts {
			img, grp, err := w.classify(cs, s.class)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := images[img]; !ok {
				groups[grp] = append(groups[grp], img)
			}
			images[img] = append(images[img], member{r, cs})
			if cs.mode != "boundary" {
				modes[r.name+"/"+cs.mode]++
			}
		}
		w.close()
	}
	// the file systems of every distinct image, checked on the host
	fsckFailed, fsckStates := 0, 0
	for img, why := range s.unrepairable {
		fsckFailed++
		fsckStates += len(images[img])
		m := images[img][0]
		disk := filepath.Join(s.dir, fmt.Sprintf("fsck-failed-%d.img", fsckFailed))
		if err := m.rec.build(m.cs, disk); err != nil {
			t.Fatal(err)
		}
		t.Errorf("crash state (%s, epoch %d of %d, %s; %d states share this image), disk kept at %s: checked on the host: %s",
			m.rec.name, m.cs.epoch, len(m.rec.eps), m.cs.mode, len(images[img]), disk, why)
	}
	total := n + boundaries
	hostSummary := fmt.Sprintf("crash states%s: %d (%d random: %s; %d flush boundaries) in %d distinct disk images, %d groups by GRUB's input and slot images;\n"+
		"  checked on the host, all %d images (e2fsck -fp of both file systems; grub.cfg's selection on the grubenv read with debugfs): %d images (%d states) failed",
		s.fx.mode(), total, n, formatPhases(modes), boundaries, len(images), len(groups), len(images), fsckFailed, fsckStates)
	t.Log(hostSummary)
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// boot distinct images: one of every group first (groups in random
	// order, as the budget allows), then more images of each round-robin
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	booted, failed, covered, samples := 0, 0, 0, 0
	bootedGroups := map[string]int{}
	for round := 0; booted < boots; round++ {
		progress := false
		for _, k := range keys {
			if booted >= boots || round >= len(groups[k]) || outOfTime() {
				continue
			}
			progress = true
			img := groups[k][round]
			m := images[img][0]
			disk := filepath.Join(s.dir, fmt.Sprintf("crash-%d.img", booted))
			if err := m.rec.build(m.cs, disk); err != nil {
				t.Fatal(err)
			}
			// every fullEvery-th image is booted twice, on two copies:
			// from power-on only, and split; the two must agree
			sample := booted%fullEvery() == 0 && s.im.split
			var twin string
			if sample {
				twin = disk + ".full"
				if err := copyFile(twin, disk); err != nil {
					t.Fatal(err)
				}
			}
			booted++
			bootedGroups[k]++
			covered += len(images[img])
			began := time.Now()
			log, err := s.recover(disk, &boot{}, false)
			how := "split"
			if sample && err == nil {
				how = "split and from power-on"
				fullLog, ferr := s.recover(twin, &boot{}, true)
				switch {
				case ferr != nil:
					err = fmt.Errorf("booted from power-on only: %w", ferr)
				case !slices.Equal(log, fullLog):
					err = fmt.Errorf("split boots and boots from power-on disagree: split: %s; from power-on: %s", strings.Join(log, "; "), strings.Join(fullLog, "; "))
				default:
					samples++
				}
				if err == nil || !*flagKeep {
					os.Remove(twin)
				}
			}
			t.Logf("crash boot %d (%s): %s epoch %d of %d, %s, %d states share this image: %s: %s (%.0fs)", booted, how, m.rec.name, m.cs.epoch, len(m.rec.eps), m.cs.mode, len(images[img]), map[bool]string{true: "ok", false: "FAILED"}[err == nil], strings.Join(log, "; "), time.Since(began).Seconds())
			if err != nil {
				failed++
				t.Errorf("crash state (%s, epoch %d of %d, %s; %d states share this image; group %s), disk kept at %s: %v", m.rec.name, m.cs.epoch, len(m.rec.eps), m.cs.mode, len(images[img]), k, disk, err)
				continue
			}
			if !*flagKeep {
				os.Remove(disk)
			}
		}
		if !progress {
			break
		}
	}
	var cls []string
	for _, k := range keys {
		st := 0
		for _, img := range groups[k] {
			st += len(images[img])
		}
		cls = append(cls, fmt.Sprintf("%s: %d states, %d distinct images, %d booted", k, st, len(groups[k]), bootedGroups[k]))
	}
	slices.Sort(cls)
	summary := fmt.Sprintf("%s;\n  %d images booted with GRUB, covering %d of %d states (%d of %d groups), %d failed; %d of them also booted from power-on only, agreeing with the split boots",
		hostSummary, booted, covered, total, len(bootedGroups), len(groups), failed, samples)
	t.Logf("%s\n  %s", summary, strings.Join(cls, "\n  "))
	fmt.Println(summary)
	if outOfTime() {
		t.Logf("-for %v was up: %d distinct images booted", *flagFor, booted)
	} else if len(bootedGroups) < len(groups) && *flagTorture {
		t.Errorf("%d groups of crash states were never booted: raise the boot budget", len(groups)-len(bootedGroups))
	}
}

// lastLines is the end of a tool's output, for a failure message.
func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}
