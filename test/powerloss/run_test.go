package powerloss

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fwctl/fwctl/agent/bootenv"
	"github.com/fwctl/fwctl/agent/policy"
	"github.com/fwctl/fwctl/manifests"
)

// Phases of an update, as read back from the device after the kill.
const (
	phaseMetadata  = "metadata"  // refreshing metadata: nothing written yet
	phaseDisable   = "disable"   // inactive slot disabled in the environment, not yet being written
	phaseDownload  = "download"  // streaming download → hash → slot write
	phaseVerify    = "verify"    // every byte written: commit, fsync, read-back verification
	phasePending   = "pending"   // verified install recorded, bootloader not yet switched
	phaseSwitched  = "switched"  // bootloader switched to the new slot, agent not yet exited
	phaseCompleted = "completed" // the update finished before the kill
)

// Kill triggers: a plain random time, or a random delay after an event
// seen on the device's files (so that short phases are hit too).
const (
	trigTime     = "time"       // uniform over the measured length of an update
	trigDisabled = "env-save-1" // after the first environment write (Disable)
	trigSlotFull = "slot-full"  // after the slot holds all the bytes
	trigPending  = "pending"    // after the state file records the pending install
	trigSwitched = "env-save-2" // after the second environment write (Try)
	// trigCheckpoint (after the first durable 16 MiB checkpoint) is used by
	// TestPowerLossResume only: the images of TestPowerLoss are smaller.
	trigCheckpoint = "checkpoint"
)

// triggers and the longest random delay after each: about the length of
// the phase that follows the event, so kills spread over it.
var triggers = []struct {
	name     string
	maxDelay time.Duration
}{
	{trigDisabled, 3 * time.Millisecond},
	{trigSlotFull, 6 * time.Millisecond},
	{trigPending, time.Millisecond},
	{trigSwitched, 300 * time.Microsecond},
}

// plan is one random kill point and what the power cut adds to it.
type plan struct {
	layout layout
	// start is "factory" (update from the factory image), "v1" (from a
	// confirmed v1) or "v1-delta" (from v1, with v2 offered as a delta).
	start   string
	trigger string
	delay   time.Duration
	torn    bool // emulate power-cut damage on top of the kill (see powerCut)
	boots   int  // boots before the device is confirmed again
	// confirmKill, when not zero, also kills the first 'fwagent confirm'
	// after the boots that long after it starts (then the device reboots).
	confirmKill time.Duration
}

// result is the outcome of one run.
type result struct {
	index      int
	dir        string
	plan       plan
	phase      string
	checkpoint int64 // the target slot's durable checkpoint after the kill
	// confirmKilled: the plan's kill of 'fwagent confirm' ended it early.
	confirmKilled bool
	tornWhat      string
	bootsSeen     []string
	unbootable    bool // the bootloader found no slot to boot
	corrupted     bool // a boot chose a slot without a complete allowed image
	stuck         bool // the next confirm/update/boot/confirm did not reach v2
	problems      []string
}

func (r *result) failed() bool { return len(r.problems) > 0 }

func (r *result) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func (r *result) describe() string {
	p := r.plan
	s := fmt.Sprintf("%s, update from %s, kill at %s+%v → phase %s", p.layout.name, p.start, p.trigger, p.delay.Round(10*time.Microsecond), r.phase)
	if r.tornWhat != "" {
		s += ", power cut: " + r.tornWhat
	}
	if p.confirmKill > 0 {
		s += fmt.Sprintf(", then confirm killed at +%v", p.confirmKill.Round(10*time.Microsecond))
	}
	return s + fmt.Sprintf(", boots %v", r.bootsSeen)
}

func (fx *fixture) newPlan(rng *rand.Rand) plan {
	p := plan{layout: layouts[rng.IntN(len(layouts))], boots: 1 + rng.IntN(4)}
	p.start = []string{"factory", "v1", "v1-delta"}[rng.IntN(3)]
	updateTime := fx.updateTime
	if p.start == "v1-delta" {
		updateTime = fx.delta.updateTime
	}
	if rng.IntN(2) == 0 {
		p.trigger = trigTime
		p.delay = time.Duration(rng.Int64N(int64(updateTime)))
	} else {
		tr := triggers[rng.IntN(len(triggers))]
		p.trigger = tr.name
		p.delay = time.Duration(rng.Int64N(int64(tr.maxDelay)))
	}
	p.torn = rng.IntN(2) == 0
	if rng.IntN(3) == 0 {
		p.confirmKill = time.Duration(1 + rng.Int64N(int64(40*time.Millisecond)))
	}
	return p
}

// run performs one kill point: set up, kill an update, emulate the power
// cut, boot, check, and recover with the next update.
func (fx *fixture) run(base string, i int, rng *rand.Rand) *result {
	p := fx.newPlan(rng)
	if p.start == "v1-delta" {
		return fx.delta.runPlan(base, i, p, rng)
	}
	return fx.runPlan(base, i, p, rng)
}

// runPlan performs one kill point with a given plan.
func (fx *fixture) runPlan(base string, i int, p plan, rng *rand.Rand) *result {
	r := &result{index: i, plan: p}
	d, err := fx.newDevice(base, fmt.Sprintf("run-%04d", i), r.plan.layout)
	if err != nil {
		r.problem("set up device: %v", err)
		return r
	}
	r.dir = d.dir
	defer func() {
		if !r.failed() && !*flagKeep {
			os.RemoveAll(d.dir)
		}
	}()
	if err := d.provisionAndBoot(fx); err != nil {
		r.problem("provision: %v", err)
		return r
	}
	allowed := map[string]string{fx.factory.sha256: "factory", fx.v2.sha256: "v2 " + fx.v2.name}
	if r.plan.start != "factory" {
		if err := d.installV1(fx); err != nil {
			r.problem("install v1: %v", err)
			return r
		}
		allowed[fx.v1.sha256] = "v1 " + fx.v1.name
	}
	target := "B"
	if d.running() == "B" {
		target = "A"
	}

	// The update under test, against the throttled server.
	if err := d.setRepository(fx.slow); err != nil {
		r.problem("config: %v", err)
		return r
	}
	envBefore := d.envSnapshot()
	metaBefore := d.metadataInodes()
	killed, err := fx.killUpdate(d, target, r.plan, rng)
	if err != nil {
		r.problem("killed update: %v", err)
		return r
	}
	r.phase = classify(d, target, fx.v2, killed, envBefore)
	if st := d.state(); st != nil && st.Slots[target] != nil {
		r.checkpoint = st.Slots[target].Written
	}
	if r.plan.torn {
		r.tornWhat = powerCut(d, target, r.phase, metaBefore, rng)
	}

	// The bootloader's turn: every boot must run a complete, allowed image.
	for range r.plan.boots {
		if !r.bootAndCheck(d, allowed) {
			return r
		}
	}
	// Power lost again, this time during the confirmation on that boot.
	if p.confirmKill > 0 {
		killed, err := d.killAfter(p.confirmKill, "confirm")
		if err != nil {
			r.problem("killed confirm: %v", err)
			return r
		}
		r.confirmKilled = killed
		if !r.bootAndCheck(d, allowed) {
			return r
		}
	}

	// Recovery: confirm (every healthy boot does), then the next update,
	// boot, confirm; the device must end on v2, confirmed.
	if err := fx.recover(d); err != nil {
		r.stuck = true
		r.problem("recovery: %v", err)
	}
	return r
}

// bootAndCheck boots once and checks the chosen slot holds an allowed,
// complete image; it records a problem and returns false otherwise.
func (r *result) bootAndCheck(d *device, allowed map[string]string) bool {
	slot, err := d.boot()
	r.bootsSeen = append(r.bootsSeen, slot)
	if err != nil {
		r.unbootable = true
		r.problem("boot %d: %v", len(r.bootsSeen), err)
		return false
	}
	b, err := os.ReadFile(d.slotPath(slot))
	if _, ok := allowed[sha256hex(b)]; err != nil || !ok {
		r.corrupted = true
		r.problem("boot %d chose slot %s, which holds %d bytes that are no complete released image (sha256 %.16s…; %v); allowed: %v",
			len(r.bootsSeen), slot, len(b), sha256hex(b), err, allowed)
		return false
	}
	return true
}

// killAfter runs fwagent with args and SIGKILLs it after delay; it reports
// whether the kill ended it. Any exit before the kill is accepted.
func (d *device) killAfter(delay time.Duration, args ...string) (bool, error) {
	cmd := exec.Command(fwagentBin, append([]string{"-c", filepath.Join(d.dir, "config.json")}, args...)...)
	cmd.Env = append(os.Environ(), "CI=1")
	if err := cmd.Start(); err != nil {
		return false, err
	}
	time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
	cmd.Wait()
	st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && st.Signaled(), nil
}

// recover runs confirm, update, boot, confirm against the fast server and
// checks the device ends on v2 with its counter raised.
func (fx *fixture) recover(d *device) error {
	if err := d.setRepository(fx.fast); err != nil {
		return err
	}
	if _, err := d.must([]int{exitOK}, "confirm"); err != nil {
		return err
	}
	code, err := d.must([]int{exitOK, exitInstalled, exitState}, "update")
	if err != nil {
		return err
	}
	if code == exitState {
		// The agent never reinstalls a release that failed on this device
		// (here: its trial slot fell back because the boots ran out). That
		// must be the reason, recorded in the state; the operator's retry
		// then goes through.
		st := d.state()
		if st == nil || !slices.ContainsFunc(st.Failed, func(f policy.Failure) bool { return f.SHA256 == fx.v2.sha256 }) {
			return fmt.Errorf("the next update was refused (exit %d) but the state file records no failure of v2: %+v", exitState, st)
		}
		if code, err = d.must([]int{exitOK, exitInstalled}, "update", "--retry"); err != nil {
			return err
		}
	}
	if code == exitInstalled {
		if _, err := d.boot(); err != nil {
			return err
		}
		if _, err := d.must([]int{exitOK}, "confirm"); err != nil {
			return err
		}
	}
	running := d.running()
	b, err := os.ReadFile(d.slotPath(running))
	if err != nil || sha256hex(b) != fx.v2.sha256 {
		return fmt.Errorf("after the next update slot %s runs %d bytes (sha256 %.16s…), want v2 (%.16s…)", running, len(b), sha256hex(b), fx.v2.sha256)
	}
	st := d.state()
	if st == nil || st.Pending != nil || st.Slots[running] == nil || st.Slots[running].Status != manifests.SlotGood {
		return fmt.Errorf("after the next update the state file is %+v, want slot %s good and nothing pending", st, running)
	}
	if _, err := d.must([]int{exitOK}, "status"); err != nil {
		return err
	}
	return nil
}

// killUpdate runs fwagent update and SIGKILLs it at the plan's point. It
// reports whether the kill ended the process (false: it finished first).
func (fx *fixture) killUpdate(d *device, target string, p plan, rng *rand.Rand) (bool, error) {
	w, err := newWatcher(d.dir, d.cfg.StateDir)
	if err != nil {
		return false, err
	}
	defer w.close()
	cmd := exec.Command(fwagentBin, "-c", filepath.Join(d.dir, "config.json"), "update")
	cmd.Env = append(os.Environ(), "CI=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return false, err
	}
	// Signalling after Wait is harmless: os.Process knows it is done.
	kill := func() { cmd.Process.Signal(syscall.SIGKILL) }
	if p.trigger == trigTime {
		time.AfterFunc(p.delay, kill)
	} else {
		go w.until(func(ev event) bool {
			if !fires(d, target, int64(len(fx.v2.data)), p.trigger, ev, w) {
				return false
			}
			time.AfterFunc(p.delay, kill)
			return true
		})
	}
	werr := cmd.Wait()
	w.close()
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() && st.Signal() == syscall.SIGKILL {
		return true, nil
	}
	if cmd.ProcessState.ExitCode() != exitInstalled {
		return false, fmt.Errorf("fwagent update ended with %v before the kill:\n%s", werr, out.String())
	}
	return false, nil
}

// fires reports whether ev is the plan's trigger event; size is the length
// of the image being installed.
func fires(d *device, target string, size int64, trigger string, ev event, w *watcher) bool {
	switch {
	// A U-Boot save is one write of the copy, then fsync: the write's
	// IN_MODIFY comes before the fsync. File and GRUB rename last.
	case ev.path == d.envPath() && ev.mask&(unix.IN_MODIFY|unix.IN_MOVED_TO) != 0:
		w.envSaves++
		return trigger == trigDisabled && w.envSaves == 1 || trigger == trigSwitched && w.envSaves == 2
	case trigger == trigSlotFull && ev.path == d.slotPath(target) && ev.mask&unix.IN_MODIFY != 0:
		fi, err := os.Stat(ev.path)
		return err == nil && fi.Size() >= size
	case trigger == trigPending && ev.path == filepath.Join(d.cfg.StateDir, "state.json"):
		st := d.state()
		return st != nil && st.Pending != nil
	case trigger == trigCheckpoint && ev.path == filepath.Join(d.cfg.StateDir, "state.json"):
		st := d.state()
		return st != nil && st.Slots[target] != nil && st.Slots[target].Written > 0
	}
	return false
}

// classify reads back which phase the kill hit.
func classify(d *device, target string, v2 image, killed bool, envBefore envSnapshot) string {
	if !killed {
		return phaseCompleted
	}
	st := d.state()
	if st != nil && st.Pending != nil && st.Pending.SHA256 == v2.sha256 {
		if primary, _, err := d.ag.Switch().Primary(); err == nil && primary == target {
			return phaseSwitched
		}
		return phasePending
	}
	if st != nil && st.Slots[target] != nil && st.Slots[target].Status == manifests.SlotWriting && st.Slots[target].SHA256 == v2.sha256 {
		if fi, err := os.Stat(d.slotPath(target)); err == nil && fi.Size() >= int64(len(v2.data)) {
			return phaseVerify
		}
		return phaseDownload
	}
	if !d.envSnapshot().same(envBefore) {
		return phaseDisable
	}
	return phaseMetadata
}

// powerCut adds to a process kill what losing power could also do, and
// describes it:
//
//   - a redundant U-Boot environment copy being written is torn (its CRC no
//     longer matches). The copy that is not current per libubootenv's flags
//     is the one a save in flight was writing; when the kill came right
//     after a save (phases disable and switched) that save may not have been
//     durable yet, so the current copy may be torn instead and the previous
//     one takes over.
//   - slot blocks written after the last fsync'ed checkpoint are lost: they
//     are overwritten with garbage.
//   - metadata files renamed into place without an fsync are emptied.
func powerCut(d *device, target, phase string, metaBefore map[string]uint64, rng *rand.Rand) string {
	var what []string
	// Files replaced by rename without an fsync (go-tuf persists metadata
	// that way) may come back empty after a power cut on filesystems that
	// do not flush data before a rename (ext4 with noauto_da_alloc, XFS,
	// F2FS, UBIFS...). Only files rewritten during this update are at risk.
	for name, ino := range d.metadataInodes() {
		if ino != metaBefore[name] && rng.IntN(2) == 0 {
			if os.Truncate(filepath.Join(d.cfg.StateDir, "metadata", name), 0) == nil {
				what = append(what, "emptied unsynced metadata/"+name)
			}
		}
	}
	if d.lay.env == "uboot" {
		b, err := os.ReadFile(d.envPath())
		if err == nil && len(b) == 2*envCopySize {
			cur := d.currentCopy()
			tear, which := 1-cur, "the non-current environment copy"
			if (phase == phaseDisable || phase == phaseSwitched) && rng.IntN(2) == 0 {
				tear, which = cur, "the just-written (current) environment copy"
			}
			if cur < 0 {
				tear, which = rng.IntN(2), "an environment copy (none was valid)"
			}
			c := b[tear*envCopySize : (tear+1)*envCopySize]
			// A torn write leaves a prefix of new bytes: garble from a random
			// point on, always past the header so the CRC cannot match.
			from := 5 + rng.IntN(envCopySize/4)
			for j := from; j < len(c); j += 1 + rng.IntN(64) {
				c[j] ^= byte(1 + rng.IntN(255))
			}
			if err := os.WriteFile(d.envPath(), b, 0o644); err == nil {
				what = append(what, fmt.Sprintf("tore %s (copy %d)", which, tear))
			}
		}
	}
	if phase == phaseDownload {
		if st := d.state(); st != nil && st.Slots[target] != nil {
			synced := st.Slots[target].Written
			if fi, err := os.Stat(d.slotPath(target)); err == nil && fi.Size() > synced {
				f, err := os.OpenFile(d.slotPath(target), os.O_WRONLY, 0)
				if err == nil {
					off := synced + rng.Int64N(fi.Size()-synced)
					junk := make([]byte, min(fi.Size()-off, 256<<10))
					for j := range junk {
						junk[j] = byte(rng.Uint32())
					}
					f.WriteAt(junk, off)
					f.Close()
					what = append(what, fmt.Sprintf("lost unsynced slot bytes at %d (checkpoint %d)", off, synced))
				}
			}
		}
	}
	return strings.Join(what, "; ")
}

// currentCopy is the redundant U-Boot copy the agent and fw_printenv read
// (bootenv's rule, libubootenv's), or -1 when neither is valid.
func (d *device) currentCopy() int {
	u, err := bootenv.OpenUBoot(filepath.Join(d.dir, "fw_env.config"), nil)
	if err != nil {
		return -1
	}
	c, err := u.CurrentCopy()
	if err != nil {
		return -1
	}
	return c
}

// metadataInodes maps each file in the TUF metadata directory to its inode,
// to tell which ones an update replaced.
func (d *device) metadataInodes() map[string]uint64 {
	m := map[string]uint64{}
	dir := filepath.Join(d.cfg.StateDir, "metadata")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				m[e.Name()] = st.Ino
			}
		}
	}
	return m
}
