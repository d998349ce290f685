package vm

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	flagKills   = flag.Int("kills", 0, "whole-machine kills (default 2, 200 with -torture)")
	flagStates  = flag.Int("states", 0, "crash states rebuilt from the write log (default 24, 1000 with -torture)")
	flagTorture = flag.Bool("torture", false, "the issue 19 torture counts (make torture-vm)")
	flagBoots   = flag.Int("crashboots", 0, "crash states booted with GRUB (default 1, 40 with -torture)")
	flagSeed    = flag.Uint64("seed", 0, "random seed (default: time)")
	flagKeep    = flag.Bool("keep", false, "keep every disk image")
)

func count(n, short, torture int) int {
	switch {
	case n > 0:
		return n
	case *flagTorture:
		return torture
	}
	return short
}

func seed(t *testing.T) uint64 {
	if *flagSeed != 0 {
		return *flagSeed
	}
	s := uint64(time.Now().UnixNano())
	t.Logf("seed %d (replay with -seed %d)", s, s)
	return s
}

// bootTimeout bounds one boot; TCG on a busy machine is slow.
const bootTimeout = 4 * time.Minute

// session is a prepared machine: the disk after provisioning ("golden")
// and after a complete update that has not rebooted yet ("updated"), with
// the timeline measured on the way.
type session struct {
	t                  *testing.T
	im                 *image
	fx                 *fixture
	dir                string
	golden             string
	updated            string
	ctlProv, ctlUpdate string
	// measured on the calibration update (durations since QEMU started)
	atStep, atSent, atRC, bootTook time.Duration
	// measured on the first boot after it
	atGrub, atConfirm, atConfirmed time.Duration
	// crash states: e2fsck, its verdict per distinct partition image, the
	// images that fail a host-side check, and the boot decision per group
	e2fsck, debugfs string
	fscked          map[string]fsckResult
	unrepairable    map[string]string
	decided         map[string]string // group -> the image the boot decision reaches, or why none
}

func (s *session) boot(disk, ctl, log string, watch func(string, time.Duration) bool, kill <-chan struct{}) (*boot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	return s.im.run(ctx, disk, ctl, log, watch, kill)
}

func lineAt(b *boot, prefix string) (time.Duration, bool) {
	for i, l := range b.lines {
		if strings.HasPrefix(l, prefix) {
			return b.times[i], true
		}
	}
	return 0, false
}

// newSession provisions a machine and measures one complete update.
func newSession(t *testing.T, im *image) *session {
	s := &session{t: t, im: im, fx: newFixture(t, im), dir: t.TempDir()}
	t.Logf("machine: %s, accelerator %s", im.dir, im.accel)
	s.ctlProv, s.ctlUpdate = filepath.Join(s.dir, "ctl-provision.tar"), filepath.Join(s.dir, "ctl-update.tar")
	if err := s.fx.control(stepsProvision).write(s.ctlProv); err != nil {
		t.Fatal(err)
	}
	if err := s.fx.control(stepsUpdate).write(s.ctlUpdate); err != nil {
		t.Fatal(err)
	}
	s.golden = filepath.Join(s.dir, "golden.img")
	if err := copyFile(s.golden, filepath.Join(im.dir, "disk.img")); err != nil {
		t.Fatal(err)
	}
	b, err := s.boot(s.golden, s.ctlProv, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := s.fx.verdict(b); err != nil || name != "factory" || b.rc["provision"] != 0 || b.rc["confirm"] != 0 || !b.done {
		t.Fatalf("provisioning boot: image %q (%v), exit codes %v:\n%s", name, err, b.rc, b.transcript())
	}
	t.Logf("provisioning boot: %.1fs (%s at %.1fs)", b.took.Seconds(), im.loaderName, first(b, im.loader).Seconds())
	s.updated = filepath.Join(s.dir, "updated.img")
	if err := copyFile(s.updated, s.golden); err != nil {
		t.Fatal(err)
	}
	s.fx.resetEvents()
	start := time.Now()
	b, err = s.boot(s.updated, s.ctlUpdate, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := s.fx.verdict(b); err != nil || name != "factory" || b.rc["update"] != 10 {
		t.Fatalf("calibration update: image %q (%v), exit codes %v (want update 10):\n%s", name, err, b.rc, b.transcript())
	}
	s.atStep, _ = lineAt(b, "FWVM step update")
	s.atRC, _ = lineAt(b, "FWVM rc update")
	sent, _ := s.fx.event("sent")
	s.atSent = sent.Sub(start)
	s.bootTook = b.took
	t.Logf("calibration update boot: update from %.1fs, download done %.1fs, exit %.1fs, off %.1fs", s.atStep.Seconds(), s.atSent.Seconds(), s.atRC.Seconds(), b.took.Seconds())
	// the next boot, on a copy: v2 on B, confirmed, nothing more to do
	after := filepath.Join(s.dir, "after.img")
	if err := copyFile(after, s.updated); err != nil {
		t.Fatal(err)
	}
	b, err = s.boot(after, s.ctlUpdate, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := s.fx.verdict(b); err != nil || name != "v2" || b.rc["confirm"] != 0 || b.rc["update"] != 0 {
		t.Fatalf("boot after the update: image %q (%v), exit codes %v (want confirm 0, update 0):\n%s", name, err, b.rc, b.transcript())
	}
	s.atGrub, _ = lineAt(b, im.loader)
	s.atConfirm, _ = lineAt(b, "FWVM step confirm")
	s.atConfirmed, _ = lineAt(b, "FWVM rc confirm")
	os.Remove(after)
	return s
}

// shortKills is make test's number of kills: a boot under TCG takes
// about 15-20 s on a busy 2-core machine, under KVM about 2.
func shortKills(s *session) int {
	if s.im.accel == "kvm" {
		return 4
	}
	return 2
}

func first(b *boot, prefix string) time.Duration { d, _ := lineAt(b, prefix); return d }

// kill is one planned whole-machine power cut.
type kill struct {
	trigger string        // "update": after the update starts; "commit": after the download; "reboot", "confirm": in the boot after the update
	delay   time.Duration // after the trigger (QEMU's start for "reboot", the confirm step's start for "confirm")
}

// phaseOf names where a kill landed, from what the host saw last.
func (s *session) phaseOf(k kill, b *boot, sawGet, sawSent bool) string {
	has := func(p string) bool { _, ok := lineAt(b, p); return ok }
	if k.trigger == "reboot" || k.trigger == "confirm" {
		switch {
		case !has(s.im.loader):
			return "firmware+" + s.im.loaderName
		case !has("FWVM boot"):
			return "kernel"
		case !has("FWVM step confirm"):
			return "init"
		case !has("FWVM rc confirm"):
			return "confirm"
		}
		return "after-confirm"
	}
	switch {
	case !has("FWVM step update"):
		return "boot"
	case !sawGet:
		return "metadata"
	case !sawSent:
		return "download+write"
	case !has("FWVM rc update"):
		return "verify+switch"
	}
	return "finished"
}

// TestPowerCuts provisions one machine, measures an update, then cuts
// its power: whole-machine kills, and crash states from write logs.
func TestPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("whole machines take minutes under TCG; run without -short")
	}
	if os.Getenv("FW_VM") != "1" {
		// Not a missing component: a time budget. This host's /dev/kvm
		// (kvm_pvm) cannot run a BIOS guest, so every boot is TCG, 15-90 s
		// each; make test's 20 minutes cannot hold even the short version.
		// make torture-vm sets FW_VM=1.
		t.Skip("whole-machine power cuts run with FW_VM=1 (make torture-vm): under TCG they take longer than make test's budget")
	}
	s := newSession(t, needImage(t))
	t.Run("kills", func(t *testing.T) { s.t = t; testKills(t, s) })
	t.Run("crashstates", func(t *testing.T) { s.t = t; testCrashStates(t, s) })
}

func testKills(t *testing.T, s *session) {
	n := count(*flagKills, shortKills(s), s.im.tortureKills)
	rng := rand.New(rand.NewPCG(seed(t), 19))
	phases := map[string]int{}
	failed := 0
	for i := range n {
		var k kill
		switch r := rng.IntN(10); {
		case r < 4:
			k = kill{"update", time.Duration(rng.Int64N(int64(s.atRC - s.atStep + 1)))}
		case r < 7:
			k = kill{"commit", time.Duration(rng.Int64N(int64(s.atRC-s.atSent) + 1))}
		case r < 8:
			// GRUB's save_env and the kernel's start
			k = kill{"reboot", time.Duration(rng.Int64N(int64(s.atGrub+time.Second) + 1))}
		default:
			// during fwagent confirm, timed from its start: a delay from
			// QEMU's start misses it when the load changes the boot's
			// length (under TCG it varies twofold)
			k = kill{"confirm", time.Duration(rng.Int64N(int64(s.atConfirmed-s.atConfirm+300*time.Millisecond) + 1))}
		}
		began := time.Now()
		phase, err := s.killAndRecover(i, k)
		phases[phase]++
		t.Logf("kill %d: %s +%v landed in %s (%.0fs with the boots after it)", i, k.trigger, k.delay.Round(time.Millisecond), phase, time.Since(began).Seconds())
		if err != nil {
			failed++
			t.Errorf("kill %d (%s +%v, phase %s): %v", i, k.trigger, k.delay.Round(time.Millisecond), phase, err)
		}
	}
	t.Logf("%d whole-machine kills (%s, %s), %d failed\nkills by phase: %s", n, s.im.name, s.im.accel, failed, formatPhases(phases))
	fmt.Printf("machine kills: %d, failed %d; by phase: %s\n", n, failed, formatPhases(phases))
}

// killAndRecover runs one kill and the boots after it.
func (s *session) killAndRecover(i int, k kill) (string, error) {
	disk := filepath.Join(s.dir, fmt.Sprintf("kill-%d.img", i))
	src := s.golden
	if k.trigger == "reboot" || k.trigger == "confirm" {
		src = s.updated
	}
	if err := copyFile(disk, src); err != nil {
		return "setup", err
	}
	if !*flagKeep {
		defer os.Remove(disk)
	}
	s.fx.resetEvents()
	killc := make(chan struct{})
	armed := false
	start := time.Now()
	arm := func(d time.Duration) {
		armed = true
		time.AfterFunc(d, func() { close(killc) })
	}
	if k.trigger == "reboot" {
		arm(k.delay)
	}
	watch := func(line string, at time.Duration) bool {
		if !armed && (k.trigger == "update" && strings.HasPrefix(line, "FWVM step update") ||
			k.trigger == "confirm" && strings.HasPrefix(line, "FWVM step confirm")) {
			arm(k.delay)
		}
		return false
	}
	if k.trigger == "commit" {
		go func() {
			// poll for the whole boot: under TCG the download starts
			// a minute in on a busy machine
			for time.Since(start) < bootTimeout {
				if _, ok := s.fx.event("sent"); ok {
					time.AfterFunc(k.delay, func() { close(killc) })
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	b, err := s.boot(disk, s.ctlUpdate, "", watch, killc)
	_, sawGet := s.fx.event("get")
	_, sawSent := s.fx.event("sent")
	if err != nil {
		return "?", err
	}
	phase := s.phaseOf(k, b, sawGet, sawSent)
	if !b.killed {
		phase = "not killed"
		s.t.Logf("kill %d was not delivered: the machine powered off first (exit codes %v); its console ended:\n%s", i, b.rc, tail(b.transcript(), 8))
	}
	return phase, s.recover(disk, b)
}

// recover boots the disk until it runs v2, confirmed, with nothing left to
// update; every boot must come up on a complete image.
func (s *session) recover(disk string, killed *boot) error {
	var log []string
	for n := range 5 {
		b, err := s.boot(disk, s.ctlUpdate, "", nil, nil)
		if err != nil {
			return fmt.Errorf("boot %d after the kill: %w", n+1, err)
		}
		name, err := s.fx.verdict(b)
		if err != nil {
			return fmt.Errorf("boot %d after the kill: %w\nkilled boot:\n%s", n+1, err, killed.transcript())
		}
		log = append(log, fmt.Sprintf("%s on %s, confirm %d, update %d", name, b.slot, b.rc["confirm"], b.rc["update"]))
		if name == "v2" && b.rc["confirm"] == 0 && b.rc["update"] == 0 && b.done {
			return nil
		}
		if b.rc["update"] == 5 {
			// The agent recorded v2 as failed. Before the agent told an
			// interrupted switch from a fallback, a cut after the install
			// was recorded as pending and before the switch was durable
			// ended here and needed the operator's --retry; no cut in this
			// harness makes v2 really fall back (a kill costs a trial at
			// most one of its three attempts).
			return fmt.Errorf("could not update again without the operator: boot %d after the kill: the agent recorded v2 as failed: %s:\n%s", n+1, strings.Join(log, "; "), b.transcript())
		}
		if !slices.Contains([]int{0, 10}, b.rc["update"]) {
			return fmt.Errorf("could not update again: boot %d after the kill: %s:\n%s", n+1, strings.Join(log, "; "), b.transcript())
		}
	}
	return fmt.Errorf("could not update again: five boots after the kill did not reach a confirmed v2: %s", strings.Join(log, "; "))
}

func formatPhases(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(out, " ")
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
