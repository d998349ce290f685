package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/fwctl/fwctl/agent/slot"
	"github.com/fwctl/fwctl/manifests"
)

// Release is a firmware target offered to this device.
type Release struct {
	Target  string `json:"target"`
	Version string `json:"version"`
	Counter uint64 `json:"counter"`
	SHA256  string `json:"sha256"`
	Length  int64  `json:"length"`

	tf *metadata.TargetFiles
}

// CheckResult reports what an update would do.
type CheckResult struct {
	BootedSlot string   `json:"booted_slot"`
	Counter    uint64   `json:"counter"`
	Current    *Release `json:"current,omitempty"`
	Available  *Release `json:"available,omitempty"`
	UpToDate   bool     `json:"up_to_date"`
	Message    string   `json:"message"`

	// offered is every target the device may consider (see Agent.offered),
	// computed once per refresh for choosing a release and finding its delta.
	offered map[string]*metadata.TargetFiles
}

// refresh verifies the root chain and updates metadata from the repository.
func (a *Agent) refresh(ctx context.Context) (*updater.Updater, error) {
	root, _, err := a.trustedRoot(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	fetched := map[int64][]byte{}
	a.client.OnRoot = func(v int64, b []byte) { fetched[v] = b }
	a.client.RefTime = a.Now()
	up, err := a.client.Refresh(root)
	if aerr := a.archiveRoots(root, fetched); aerr != nil && err == nil {
		err = aerr
	}
	if err != nil {
		return nil, classify(err)
	}
	return up, nil
}

func releaseOf(path string, tf *metadata.TargetFiles) (*Release, *manifests.Firmware, error) {
	if tf.Custom == nil {
		return nil, nil, manifests.ErrNotFirmware
	}
	fw, err := manifests.ParseCustom(*tf.Custom)
	if err != nil {
		return nil, nil, err
	}
	tf.Path = path
	return &Release{Target: path, Version: fw.Version, Counter: fw.Counter,
		SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Length: tf.Length, tf: tf}, fw, nil
}

// choose picks the release to install: the named target, or the full image
// for this hardware with the highest counter (then version).
func (a *Agent) choose(up *updater.Updater, offered map[string]*metadata.TargetFiles, name string, counter uint64) (*Release, error) {
	if name != "" {
		tf, err := up.GetTargetInfo(name)
		if err != nil {
			return nil, fmt.Errorf("%w: target %s: %w", ErrRefused, name, err)
		}
		r, fw, err := releaseOf(name, tf)
		if err != nil {
			return nil, fmt.Errorf("%w: target %s: %w", ErrRefused, name, err)
		}
		if !fw.ForHardware(a.cfg.Hardware) {
			return nil, fmt.Errorf("%w: %w: %s is built for %s, this device is %s", ErrRefused, ErrWrongHardware, name, strings.Join(fw.Hardware, ", "), a.cfg.Hardware)
		}
		if fw.Kind != manifests.KindFull {
			return nil, fmt.Errorf("%w: target %s is a %s, not a full image", ErrRefused, name, fw.Kind)
		}
		if fw.Counter < counter {
			return nil, fmt.Errorf("%w: %w: %s has security counter %d, this device requires at least %d", ErrRefused, ErrRollback, name, fw.Counter, counter)
		}
		return r, nil
	}
	var cands []*Release
	var others []string
	for path, tf := range offered {
		r, fw, err := releaseOf(path, tf)
		if errors.Is(err, manifests.ErrNotFirmware) {
			continue // proofs, SBOMs and other files that travel with releases
		}
		if err != nil {
			a.log.Warn("ignoring target with invalid firmware metadata", "target", path, "err", err)
			continue
		}
		if !fw.ForHardware(a.cfg.Hardware) {
			others = append(others, fw.Hardware...)
			continue
		}
		if fw.Kind == manifests.KindFull {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		if len(others) > 0 {
			a.log.Info("no release for this hardware", "hardware", a.cfg.Hardware, "repository_has", strings.Join(others, ","))
		}
		return nil, nil
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].Counter != cands[j].Counter {
			return cands[i].Counter > cands[j].Counter
		}
		return versionLess(cands[j].Version, cands[i].Version)
	})
	best := cands[0]
	if best.Counter < counter {
		return nil, fmt.Errorf("%w: %w: the newest release for %s, %s, has security counter %d but this device requires at least %d",
			ErrRefused, ErrRollback, a.cfg.Hardware, best.Target, best.Counter, counter)
	}
	return best, nil
}

// Check refreshes metadata and reports whether an update is available.
func (a *Agent) Check(ctx context.Context) (*CheckResult, error) {
	res, _, _, err := a.check(ctx, "")
	return res, err
}

func (a *Agent) check(ctx context.Context, name string) (*CheckResult, *updater.Updater, *State, error) {
	booted, err := a.bootedSlot()
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := a.reconcile(booted)
	if err != nil {
		return nil, nil, nil, err
	}
	counter, err := a.trust.Counter(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	res := &CheckResult{BootedSlot: booted, Counter: counter}
	if cur := st.Slots[booted]; cur.SHA256 != "" {
		res.Current = &Release{Target: cur.Target, Version: cur.Version, Counter: cur.Counter, SHA256: cur.SHA256, Length: cur.Length}
	}
	up, err := a.refresh(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	res.offered = a.offered(up)
	rel, err := a.choose(up, res.offered, name, counter)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case rel == nil:
		res.UpToDate = true
		res.Message = fmt.Sprintf("no release for hardware %s in the repository", a.cfg.Hardware)
	case res.Current != nil && res.Current.SHA256 == rel.SHA256:
		res.UpToDate = true
		res.Message = fmt.Sprintf("up to date: slot %s runs %s (counter %d)", booted, rel.Version, rel.Counter)
	default:
		res.Available = rel
		res.Message = fmt.Sprintf("update available: %s (version %s, counter %d)", rel.Target, rel.Version, rel.Counter)
	}
	return res, up, st, nil
}

// UpdateOptions control Update.
type UpdateOptions struct {
	// Target installs this target path instead of the newest release.
	Target string
}

// UpdateResult reports an update.
type UpdateResult struct {
	CheckResult
	Installed    bool   `json:"installed"`
	Slot         string `json:"slot,omitempty"`
	RebootNeeded bool   `json:"reboot_needed"`
	// Delta names the delta target used, if the image was rebuilt from one.
	Delta string `json:"delta,omitempty"`
	// DeltaError says why an offered delta was not used (the full image was).
	DeltaError string `json:"delta_error,omitempty"`
	// RebootPending means the chosen release was already installed and the
	// bootloader set to try it; nothing was written.
	RebootPending bool `json:"reboot_pending"`
}

// installedPending reports whether rel is the pending install in slot sl
// that the bootloader will try next, and sl still holds it. Then an update
// has nothing to do but wait for the reboot; rewriting the slot would
// disable it and download it all again.
func (a *Agent) installedPending(st *State, rel *Release, sl slot.Slot) bool {
	p, s := st.Pending, st.Slots[sl.Name]
	if p == nil || p.Slot != sl.Name || p.SHA256 != rel.SHA256 || s == nil || s.Status != SlotInstalled || s.SHA256 != rel.SHA256 {
		return false
	}
	if next, _, err := a.sw.Primary(); err != nil || next != sl.Name {
		return false
	}
	if err := sl.Verify(rel.Length, rel.SHA256); err != nil {
		a.log.Warn("the pending slot no longer holds its image; installing it again", "slot", sl.Name, "err", err)
		return false
	}
	return true
}

// Update installs the newest release (or opt.Target) into the inactive
// slot and asks the bootloader to try it on the next boot.
func (a *Agent) Update(ctx context.Context, opt UpdateOptions) (*UpdateResult, error) {
	a.sweepTemp()
	chk, up, st, err := a.check(ctx, opt.Target)
	if err != nil {
		return nil, err
	}
	res := &UpdateResult{CheckResult: *chk}
	if chk.Available == nil {
		return res, nil
	}
	// While the running slot is on an unconfirmed trial, the inactive slot
	// is its only fallback: writing it (and, with bootcount, Disable ending
	// the trial) would leave no complete image to return to if the trial
	// fails or power is lost mid-write. Found by test/powerloss.
	if p := st.Pending; p != nil && p.Slot == chk.BootedSlot {
		return nil, fmt.Errorf("%w: slot %s runs %s on trial; run 'fwagent confirm' once it is healthy, then update",
			ErrConfirmPending, p.Slot, p.Version)
	}
	rel := chk.Available
	target := a.inactive(chk.BootedSlot)
	sl := slot.Slot{Name: target, Path: a.cfg.Slots[target]}
	if a.installedPending(st, rel, sl) {
		res.Slot, res.RebootNeeded, res.RebootPending = target, true, true
		res.Message = fmt.Sprintf("%s (version %s) is already installed in slot %s and waits for a reboot; nothing to do", rel.Target, rel.Version, target)
		return res, nil
	}
	a.log.Info("installing", "target", rel.Target, "version", rel.Version, "counter", rel.Counter, "slot", target)

	if err := a.checkTransparency(ctx, up, rel, st); err != nil {
		return nil, err
	}
	if err := a.hook(ctx, "pre_install", a.cfg.Hooks.PreInstall, rel, target); err != nil {
		return nil, err
	}
	// The inactive slot stops being a fallback the moment we write to it.
	if err := a.sw.Disable(target); err != nil {
		return nil, fmt.Errorf("disable slot %s before writing: %w", target, err)
	}
	prev := st.Slots[target]
	resumeAt := int64(0)
	if prev != nil && prev.Status == SlotWriting && prev.SHA256 == rel.SHA256 && prev.Written > 0 && prev.Written < rel.Length {
		resumeAt = prev.Written
	}
	st.Slots[target] = &SlotState{Status: SlotWriting, Target: rel.Target, Version: rel.Version,
		Counter: rel.Counter, SHA256: rel.SHA256, Length: rel.Length, Written: resumeAt}
	if err := a.saveState(st); err != nil {
		return nil, err
	}
	fail := func(err error) (*UpdateResult, error) {
		st.Last = &Result{At: a.Now().UTC(), Target: rel.Target, Version: rel.Version, Outcome: "failed", Error: err.Error()}
		if serr := a.saveState(st); serr != nil {
			a.log.Error("save state", "err", serr)
		}
		return nil, err
	}
	written := false
	if d := a.findDelta(chk.offered, rel, st.Slots[chk.BootedSlot]); d != nil && resumeAt == 0 {
		a.log.Info("installing by delta", "delta", d.Target, "bytes", d.Length, "full_bytes", rel.Length)
		running := slot.Slot{Name: chk.BootedSlot, Path: a.cfg.Slots[chk.BootedSlot]}
		err := a.writeDelta(ctx, up, d, rel, running, st.Slots[chk.BootedSlot].Length, sl)
		switch {
		case err == nil:
			written, res.Delta = true, d.Target
		case ctx.Err() != nil:
			return fail(err)
		default:
			a.log.Warn("delta failed; falling back to the full image", "delta", d.Target, "err", err)
			res.DeltaError = err.Error()
		}
	}
	if !written {
		if err := a.write(ctx, up, rel, sl, st, resumeAt); err != nil {
			return fail(err)
		}
	}
	if err := sl.Verify(rel.Length, rel.SHA256); err != nil {
		return fail(err)
	}
	if err := a.hook(ctx, "post_install", a.cfg.Hooks.PostInstall, rel, target); err != nil {
		return fail(err)
	}
	st.Slots[target] = &SlotState{Status: SlotInstalled, Target: rel.Target, Version: rel.Version,
		Counter: rel.Counter, SHA256: rel.SHA256, Length: rel.Length}
	st.Pending = &Install{Slot: target, Target: rel.Target, Version: rel.Version, Counter: rel.Counter,
		SHA256: rel.SHA256, Length: rel.Length, At: a.Now().UTC()}
	st.Last = &Result{At: a.Now().UTC(), Target: rel.Target, Version: rel.Version, Outcome: "installed"}
	// Record the pending install before switching: a crash between the two
	// leaves a pending install the bootloader will not try, which reconcile
	// treats as a fallback; the reverse order could boot an unrecorded slot.
	if err := a.saveState(st); err != nil {
		return nil, err
	}
	if err := a.sw.Try(target); err != nil {
		return fail(fmt.Errorf("switch bootloader to slot %s: %w", target, err))
	}
	res.Installed, res.Slot, res.RebootNeeded = true, target, true
	res.Message = fmt.Sprintf("installed %s (version %s) into slot %s; reboot to try it, then run 'fwagent confirm'", rel.Target, rel.Version, target)
	if res.Delta != "" {
		res.Message += fmt.Sprintf(" (rebuilt from delta %s)", res.Delta)
	}
	return res, nil
}

// checkpointEvery is how often (in bytes) an install makes its progress
// durable, so that after a power loss it resumes instead of restarting.
const checkpointEvery = 16 << 20

// write streams rel into slot sl, resuming at offset when the slot already
// holds that many verified-by-hash bytes of it.
func (a *Agent) write(ctx context.Context, up *updater.Updater, rel *Release, sl slot.Slot, st *State, offset int64) error {
	h := sha256.New()
	var w *slot.Writer
	var err error
	if offset > 0 {
		a.log.Info("resuming interrupted install", "slot", sl.Name, "offset", offset)
		if err := sl.HashInto(h, offset); err != nil {
			a.log.Warn("cannot resume; starting over", "err", err)
			offset, h = 0, sha256.New()
		}
	}
	if offset > 0 {
		w, err = sl.Resume(offset)
	} else {
		w, err = sl.Create()
	}
	if err != nil {
		return err
	}
	cw := &checkpointWriter{w: w, next: offset + checkpointEvery, save: func(n int64) error {
		if err := w.Sync(); err != nil {
			return err
		}
		st.Slots[sl.Name].Written = n
		return a.saveState(st)
	}}
	err = a.client.Resume(ctx, up, rel.tf, cw, h, offset, a.Progress)
	if werr := cw.wait(); err == nil {
		err = werr
	}
	if err != nil {
		w.Abort()
		return classify(fmt.Errorf("download %s into slot %s: %w", rel.Target, sl.Name, err))
	}
	return w.Commit()
}

// checkpointWriter makes install progress durable every checkpointEvery
// bytes. The fsync and state save run beside the stream (the data up to the
// checkpoint was written before they start, so the recorded offset is
// covered by the fsync); the next checkpoint and the end of the stream wait
// for the one in flight. The stream keeps going instead of stalling on
// every fsync.
type checkpointWriter struct {
	w    *slot.Writer
	next int64
	save func(n int64) error
	done chan error // the checkpoint in flight, if any
}

func (c *checkpointWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err == nil && c.w.Offset() >= c.next {
		if err = c.wait(); err != nil {
			return n, err
		}
		off := c.w.Offset()
		c.next = off + checkpointEvery
		c.done = make(chan error, 1)
		go func() { c.done <- c.save(off) }()
	}
	return n, err
}

// wait waits for the checkpoint in flight and returns its error.
func (c *checkpointWriter) wait() error {
	if c.done == nil {
		return nil
	}
	err := <-c.done
	c.done = nil
	return err
}

// reconcile brings the state file in line with what booted: a pending
// install whose slot is neither running nor about to be tried fell back.
func (a *Agent) reconcile(booted string) (*State, error) {
	st, err := a.loadState()
	if err != nil {
		return nil, err
	}
	p := st.Pending
	if p == nil || p.Slot == booted {
		return st, nil
	}
	primary, _, perr := a.sw.Primary()
	if perr == nil && primary == p.Slot {
		return st, nil // installed, waiting for the reboot
	}
	a.log.Warn("update was not confirmed; the device fell back", "slot", p.Slot, "target", p.Target, "running", booted)
	st.Slots[p.Slot].Status = SlotBad
	st.Last = &Result{At: a.Now().UTC(), Target: p.Target, Version: p.Version, Outcome: "fell-back",
		Error: fmt.Sprintf("slot %s did not confirm; running slot %s", p.Slot, booted)}
	st.Pending = nil
	if err := a.sw.MarkBad(p.Slot); err != nil {
		return nil, err
	}
	return st, a.saveState(st)
}

// ConfirmResult reports a confirmation.
type ConfirmResult struct {
	Slot      string `json:"slot"`
	Confirmed bool   `json:"confirmed"`
	Counter   uint64 `json:"counter"`
	Message   string `json:"message"`
}

// Confirm marks the running slot good. After an update it raises the
// anti-rollback counter to the new release's. Run it on every boot once the
// system is healthy.
func (a *Agent) Confirm(ctx context.Context) (*ConfirmResult, error) {
	a.sweepTemp()
	booted, err := a.bootedSlot()
	if err != nil {
		return nil, err
	}
	st, err := a.reconcile(booted)
	if err != nil {
		return nil, err
	}
	res := &ConfirmResult{Slot: booted}
	if p := st.Pending; p != nil && p.Slot != booted {
		return nil, fmt.Errorf("%w: %s is installed in slot %s but slot %s is running; reboot first", ErrRebootPending, p.Target, p.Slot, booted)
	}
	if p := st.Pending; p != nil {
		if err := a.healthy(ctx); err != nil {
			a.log.Error("new slot is unhealthy; falling back", "slot", booted, "err", err)
			if merr := a.sw.MarkBad(booted); merr != nil {
				return nil, merr
			}
			st.Slots[booted].Status = SlotBad
			st.Last = &Result{At: a.Now().UTC(), Target: p.Target, Version: p.Version, Outcome: "unhealthy", Error: err.Error()}
			st.Pending = nil
			if serr := a.saveState(st); serr != nil {
				return nil, serr
			}
			return nil, fmt.Errorf("%w; slot %s marked bad: reboot to return to the previous slot", err, booted)
		}
	}
	if err := a.sw.MarkGood(booted); err != nil {
		return nil, err
	}
	if p := st.Pending; p != nil {
		if err := a.trust.RaiseCounter(ctx, p.Counter); err != nil {
			return nil, fmt.Errorf("raise anti-rollback counter to %d: %w", p.Counter, err)
		}
		st.Slots[booted].Status = SlotGood
		st.Last = &Result{At: a.Now().UTC(), Target: p.Target, Version: p.Version, Outcome: "confirmed"}
		st.Pending = nil
		if err := a.saveState(st); err != nil {
			return nil, err
		}
		res.Confirmed = true
		res.Message = fmt.Sprintf("confirmed %s (version %s) in slot %s", p.Target, p.Version, booted)
	} else {
		res.Message = fmt.Sprintf("slot %s marked good (nothing pending)", booted)
	}
	if res.Counter, err = a.trust.Counter(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// StatusReport describes the device.
type StatusReport struct {
	Hardware   string                `json:"hardware"`
	Repository string                `json:"repository"`
	BootedSlot string                `json:"booted_slot"`
	NextBoot   string                `json:"next_boot"`
	Slots      map[string]*SlotState `json:"slots"`
	Counter    uint64                `json:"counter"`
	TrustStore string                `json:"trust_store"`
	RootVer    int64                 `json:"root_version"`
	Pending    *Install              `json:"pending,omitempty"`
	Last       *Result               `json:"last,omitempty"`
}

// Status reports the device's state without contacting the repository.
func (a *Agent) Status(ctx context.Context) (*StatusReport, error) {
	booted, err := a.bootedSlot()
	if err != nil {
		return nil, err
	}
	st, err := a.reconcile(booted)
	if err != nil {
		return nil, err
	}
	r := &StatusReport{Hardware: a.cfg.Hardware, Repository: a.cfg.Repository, BootedSlot: booted,
		Slots: st.Slots, TrustStore: a.trust.Kind(), Pending: st.Pending, Last: st.Last}
	r.NextBoot, _, _ = a.sw.Primary()
	if r.Counter, err = a.trust.Counter(ctx); err != nil {
		return nil, err
	}
	if _, v, err := a.trustedRoot(ctx); err == nil {
		r.RootVer = v
	} else {
		return nil, err
	}
	return r, nil
}

// versionLess compares versions numerically where both parts are numbers
// ("1.10" > "1.9"), lexically otherwise.
func versionLess(a, b string) bool {
	as, bs := strings.FieldsFunc(a, isSep), strings.FieldsFunc(b, isSep)
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		x, _, ok1 := leadingInt(as[i], strconv.IntSize)
		y, _, ok2 := leadingInt(bs[i], strconv.IntSize)
		if ok1 && ok2 && x != y {
			return x < y
		}
		return as[i] < bs[i]
	}
	return len(as) < len(bs)
}

func isSep(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '_' || r == '~' }

// leadingInt parses the decimal integer (optional sign, then digits) that s
// starts with, as fmt.Sscanf(s, "%d", …) does into a bits-wide integer, and
// returns it with the rest of s. The agent avoids fmt's scanner for size:
// it is about 25 kB of the binary.
func leadingInt(s string, bits int) (int64, string, bool) {
	n := 0
	if n < len(s) && (s[n] == '+' || s[n] == '-') {
		n++
	}
	digits := n
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	if n == digits {
		return 0, s, false
	}
	v, err := strconv.ParseInt(s[:n], 10, bits)
	if err != nil {
		return 0, s, false
	}
	return v, s[n:], true
}
