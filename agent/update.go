package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fwctl/fwctl/agent/director"
	"github.com/fwctl/fwctl/agent/policy"
	"github.com/fwctl/fwctl/agent/slot"
	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/agent/tufclient"
	"github.com/fwctl/fwctl/manifests"
)

// Release is a firmware target offered to this device.
type Release struct {
	manifests.Image

	tf *tuf.TargetFile
}

// CheckResult reports what an update would do.
type CheckResult struct {
	BootedSlot string   `json:"booted_slot"`
	Counter    uint64   `json:"counter"`
	Current    *Release `json:"current,omitempty"`
	Available  *Release `json:"available,omitempty"`
	UpToDate   bool     `json:"up_to_date"`
	// FailedBefore is the earlier failure of Available on this device: it
	// is installed only with --retry.
	FailedBefore *policy.Failure `json:"failed_before,omitempty"`
	Message      string          `json:"message"`
}

// plan is an update's inputs and the policy's decision.
type plan struct {
	res    CheckResult
	up     *tufclient.Trusted
	st     *State
	dev    policy.Device
	req    policy.Request
	offers []policy.Offer
	tfs    map[string]*tuf.TargetFile
	d      policy.Decision
	rel    *Release
	// assigned is the director's verified assignment (director.go);
	// notAssigned says why there is none when a director is configured.
	assigned    *director.Assigned
	notAssigned string
}

// refresh verifies the root chain and updates metadata from the repository.
func (a *Agent) refresh(ctx context.Context) (*tufclient.Trusted, error) {
	root, _, err := a.trustedRoot(ctx)
	if errors.Is(err, trust.ErrNotProvisioned) {
		return nil, err // device state, not a refusal: provision it
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	fetched := map[int64][]byte{}
	a.client.OnRoot = func(v int64, b []byte) { fetched[v] = b }
	a.client.RefTime = a.Now().Add(-a.metadataGrace) // zero unless a bundle's offline policy (bundle.go)
	up, err := a.client.Update(ctx, root)
	if aerr := a.archiveRoots(root, fetched); aerr != nil && err == nil {
		err = aerr
	}
	if err != nil {
		return nil, classify(err)
	}
	return up, nil
}

func releaseOf(path string, tf *tuf.TargetFile) (*Release, *manifests.Firmware, error) {
	if tf.Custom == nil {
		return nil, nil, manifests.ErrNotFirmware
	}
	fw, err := manifests.ParseCustom(*tf.Custom)
	if err != nil {
		return nil, nil, err
	}
	tf.Path = path
	return &Release{Image: manifests.Image{Target: path, Version: fw.Version, Counter: fw.Counter,
		SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Length: tf.Length}, tf: tf}, fw, nil
}

// offers turns verified targets into the policy's input.
func offers(tfs map[string]*tuf.TargetFile) []policy.Offer {
	out := make([]policy.Offer, 0, len(tfs))
	for path, tf := range tfs {
		o := policy.Offer{Path: path, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Length: tf.Length, Hashes: hexHashes(tf)}
		_, fw, err := releaseOf(path, tf)
		switch {
		case errors.Is(err, manifests.ErrNotFirmware): // proofs, SBOMs
		case err != nil:
			o.Invalid = err
		default:
			o.FW = fw
		}
		out = append(out, o)
	}
	return out
}

// lookup adds an explicitly named target to tfs, resolved through the
// delegations as the updater does. A name no role lists stays absent (the
// policy calls it unknown); a role that does not verify is a refusal.
func (a *Agent) lookup(up *tufclient.Trusted, tfs map[string]*tuf.TargetFile, name string) error {
	if _, ok := tfs[name]; ok || name == "" {
		return nil
	}
	tf, err := up.GetTargetInfo(name)
	if errors.Is(err, tuf.ErrNotFound) {
		return nil
	}
	if err != nil {
		if c := classify(err); c != err {
			return fmt.Errorf("target %s: %w", name, c)
		}
		return nil
	}
	tfs[name] = tf
	return nil
}

func policySlot(name string, s *SlotState) policy.Slot {
	return policy.Slot{Name: name, Status: s.Status, SHA256: s.SHA256, Length: s.Length}
}

// plan gathers the device state and the verified offers, and asks the
// policy what to do.
func (a *Agent) plan(ctx context.Context, req policy.Request) (*plan, error) {
	booted, err := a.bootedSlot()
	if err != nil {
		return nil, err
	}
	st, err := a.reconcile(booted)
	if err != nil {
		return nil, err
	}
	counter, err := a.trust.Counter(ctx)
	if err != nil {
		return nil, err
	}
	p := &plan{st: st, req: req, res: CheckResult{BootedSlot: booted, Counter: counter}}
	if cur := st.Slots[booted]; cur.SHA256 != "" {
		p.res.Current = &Release{Image: cur.Image}
	}
	if p.up, err = a.refresh(ctx); err != nil {
		return nil, err
	}
	if p.tfs, err = a.offered(p.up); err != nil {
		return nil, err
	}
	if err := a.lookup(p.up, p.tfs, req.Target); err != nil {
		return nil, err
	}
	p.offers = offers(p.tfs)
	if err := a.directorPlan(ctx, p); err != nil { // director.go
		return nil, err
	}
	inactive := a.inactive(booted)
	p.dev = policy.Device{Hardware: a.cfg.Hardware, Counter: counter, Failed: st.Failed,
		Running: policySlot(booted, st.Slots[booted]), Inactive: policySlot(inactive, st.Slots[inactive]), Capacity: -1}
	if pd := st.Pending; pd != nil {
		p.dev.Pending = &policy.Pending{Slot: pd.Slot, SHA256: pd.SHA256, Version: pd.Version}
	}
	p.dev.NextBoot, _, _ = a.sw.Primary()
	sl := slot.Slot{Name: inactive, Path: a.cfg.Slots[inactive]}
	if p.dev.Capacity, err = sl.Capacity(); err != nil {
		a.log.Warn("cannot tell the inactive slot's size; the write will find out", "slot", inactive, "err", err)
		p.dev.Capacity = -1
	}
	return p, a.decide(p)
}

// decide runs the policy over p's inputs and fills in p's result.
func (a *Agent) decide(p *plan) error {
	if p.notAssigned != "" {
		p.d, p.rel = policy.Decision{Action: policy.NoRelease}, nil
		p.res.Available, p.res.UpToDate, p.res.FailedBefore, p.res.Message = nil, true, nil, p.notAssigned
		return nil
	}
	d, err := policy.Decide(p.offers, p.dev, p.req)
	if err != nil {
		return policyError(err)
	}
	p.d, p.rel = d, nil
	for _, path := range d.Ignored {
		a.log.Warn("ignoring target with invalid firmware metadata", "target", path)
	}
	if d.Release != nil {
		p.rel, _, _ = releaseOf(d.Release.Path, p.tfs[d.Release.Path])
	}
	res, rel := &p.res, p.rel
	res.Available, res.UpToDate, res.FailedBefore = nil, false, d.Failure
	switch d.Action {
	case policy.NoRelease:
		res.UpToDate = true
		res.Message = fmt.Sprintf("no release for hardware %s in the repository", a.cfg.Hardware)
		if len(d.OtherHardware) > 0 {
			a.log.Info("no release for this hardware", "hardware", a.cfg.Hardware, "repository_has", strings.Join(d.OtherHardware, ","))
		}
	case policy.UpToDate:
		res.UpToDate = true
		res.Message = fmt.Sprintf("up to date: slot %s runs %s (counter %d)", res.BootedSlot, rel.Version, rel.Counter)
	case policy.FailedBefore:
		res.Available = rel
		res.Message = fmt.Sprintf("%s is available but %s; 'fwagent update --retry' installs it again", rel.Version, describeFailure(d.Failure))
	default:
		res.Available = rel
		res.Message = fmt.Sprintf("update available: %s (version %s, counter %d)", rel.Target, rel.Version, rel.Counter)
	}
	return nil
}

func describeFailure(f *policy.Failure) string {
	what := "its install failed"
	switch f.Outcome {
	case manifests.OutcomeFellBack:
		what = "its slot fell back"
	case manifests.OutcomeUnhealthy:
		what = "its slot was unhealthy"
	}
	s := fmt.Sprintf("%s on this device at %s", what, f.At.UTC().Format(time.RFC3339))
	if f.Reason != "" {
		s += " (" + f.Reason + ")"
	}
	return s
}

// policyError maps the policy's refusals to the agent's error kinds.
func policyError(err error) error {
	switch {
	case errors.Is(err, policy.ErrRollback), errors.Is(err, policy.ErrWrongHardware), errors.Is(err, policy.ErrNotFirmware):
		return fmt.Errorf("%w: %w", ErrRefused, err)
	case errors.Is(err, policy.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Check refreshes metadata and reports whether an update is available. A
// trial awaiting confirmation does not make it fail: it says so.
func (a *Agent) Check(ctx context.Context) (*CheckResult, error) {
	p, err := a.plan(ctx, policy.Request{})
	if errors.Is(err, ErrConfirmPending) {
		p.dev.Pending = nil
		if err := a.decide(p); err != nil {
			return nil, err
		}
		p.res.Message += fmt.Sprintf(" (slot %s runs %s on trial: run 'fwagent confirm' first)", p.st.Pending.Slot, p.st.Pending.Version)
		return &p.res, nil
	}
	if err != nil {
		return nil, err
	}
	return &p.res, nil
}

// UpdateOptions control Update.
type UpdateOptions struct {
	// Target installs this target path instead of the newest release.
	Target string
	// Retry installs a release that failed on this device before.
	Retry bool
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
	// Deferred means an install is due but its maintenance window is
	// closed: nothing was written; NextWindow is when it opens.
	Deferred   bool      `json:"deferred,omitempty"`
	NextWindow time.Time `json:"next_window,omitzero"`
}

// Update installs the newest release (or opt.Target) into the inactive
// slot and asks the bootloader to try it on the next boot. Until the first
// image byte arrives it changes neither the boot environment nor the
// inactive slot: an update that fails before that leaves the device as it
// was (only the attempt is recorded).
func (a *Agent) Update(ctx context.Context, opt UpdateOptions) (*UpdateResult, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	a.sweepTemp()
	p, err := a.plan(ctx, policy.Request{Target: opt.Target, Retry: opt.Retry})
	if err != nil {
		return nil, err
	}
	res := &UpdateResult{CheckResult: p.res}
	if d, err := a.deferred(p); err != nil || d != nil { // window.go
		if err != nil {
			return nil, err
		}
		res.Deferred, res.NextWindow, res.Message = true, d.next, d.msg
		return res, nil
	}
	rel := p.rel
	target := p.dev.Inactive.Name
	sl := slot.Slot{Name: target, Path: a.cfg.Slots[target]}
	switch p.d.Action {
	case policy.NoRelease, policy.UpToDate:
		return res, nil
	case policy.FailedBefore:
		return nil, fmt.Errorf("%w: %s (version %s): %s. It is not installed again automatically: run 'fwagent update --retry' to try it again, or publish a newer release",
			ErrFailedBefore, rel.Target, rel.Version, describeFailure(p.d.Failure))
	case policy.RebootPending:
		if err := sl.Verify(rel.Length, rel.SHA256); err == nil {
			res.Slot, res.RebootNeeded, res.RebootPending = target, true, true
			res.Message = fmt.Sprintf("%s (version %s) is already installed in slot %s and waits for a reboot; nothing to do", rel.Target, rel.Version, target)
			return res, nil
		} else {
			// Rewriting it would disable it and download it all again, so
			// only when the slot no longer holds the image.
			a.log.Warn("the pending slot no longer holds its image; installing it again", "slot", target, "err", err)
		}
		p.dev.Pending = nil
		if err := a.decide(p); err != nil {
			return nil, err
		}
		res.CheckResult, rel = p.res, p.rel
	}
	if p.d.Failure != nil {
		a.log.Warn("retrying a release that failed on this device", "target", rel.Target, "earlier", p.d.Failure.Outcome, "reason", p.d.Failure.Reason)
	}
	return a.install(ctx, p, res)
}

// install writes p's release into the inactive slot, verifies it and
// switches the bootloader to try it.
func (a *Agent) install(ctx context.Context, p *plan, res *UpdateResult) (*UpdateResult, error) {
	st, rel, target := p.st, p.rel, p.dev.Inactive.Name
	sl := slot.Slot{Name: target, Path: a.cfg.Slots[target]}
	a.log.Info("installing", "target", rel.Target, "version", rel.Version, "counter", rel.Counter, "slot", target)
	if err := a.checkTransparency(ctx, p.up, rel, st); err != nil {
		return nil, err
	}
	if err := a.hook(ctx, "pre_install", a.cfg.Hooks.PreInstall, rel, target); err != nil {
		return nil, err
	}
	prev := st.Slots[target]
	resumeAt := int64(0)
	if prev.Status == manifests.SlotWriting && prev.SHA256 == rel.SHA256 && prev.Written > 0 && prev.Written < rel.Length {
		resumeAt = prev.Written
	}
	// begin runs when the first image byte is about to be written: the
	// inactive slot stops being a fallback from then on.
	begun := false
	begin := func() error {
		if begun {
			return nil
		}
		if err := a.sw.Disable(target); err != nil {
			return fmt.Errorf("disable slot %s before writing: %w", target, err)
		}
		begun = true
		st.Slots[target] = &SlotState{Status: manifests.SlotWriting, Image: rel.Image, Written: resumeAt}
		return a.saveState(st)
	}
	attempt := Result{Target: rel.Target, Version: rel.Version, SHA256: rel.SHA256}
	fail := func(err error) (*UpdateResult, error) {
		attempt.At, attempt.Outcome, attempt.Error = a.Now().UTC(), manifests.OutcomeFailed, err.Error()
		st.record(attempt)
		if errors.Is(err, slot.ErrVerify) {
			st.failed(attempt) // written but not read back: the same again would fail the same
		}
		if serr := a.saveState(st); serr != nil {
			a.log.Error("save state", "err", serr)
		}
		return nil, err
	}
	written := false
	base := a.deltaBase(p)
	d, why := policy.Delta(p.offers, p.d.Release, base, a.cfg.Hardware)
	res.DeltaError = why
	if d != nil && resumeAt == 0 {
		dr, _, _ := releaseOf(d.Path, p.tfs[d.Path])
		a.log.Info("installing by delta", "delta", dr.Target, "bytes", dr.Length, "full_bytes", rel.Length)
		running := slot.Slot{Name: base.Name, Path: a.cfg.Slots[base.Name]}
		err := a.writeDelta(ctx, p.up, dr, rel, running, base.Length, sl, begin)
		switch {
		case err == nil:
			written, res.Delta = true, dr.Target
		case ctx.Err() != nil:
			return fail(err)
		default:
			a.log.Warn("delta failed; falling back to the full image", "delta", dr.Target, "err", err)
			res.DeltaError = err.Error()
		}
	}
	if !written {
		if err := a.write(ctx, p.up, rel, sl, st, resumeAt, begin); err != nil {
			return fail(err)
		}
	}
	if err := sl.Verify(rel.Length, rel.SHA256); err != nil {
		return fail(err)
	}
	if err := a.hook(ctx, "post_install", a.cfg.Hooks.PostInstall, rel, target); err != nil {
		return fail(err)
	}
	st.Slots[target] = &SlotState{Status: manifests.SlotInstalled, Image: rel.Image}
	st.Pending = &Install{Slot: target, Image: rel.Image, At: a.Now().UTC()}
	attempt.At, attempt.Outcome = a.Now().UTC(), manifests.OutcomeInstalled
	st.record(attempt)
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

// deltaBase is the running slot as a delta's base. A slot the agent did
// not install (the factory image: its state has no hash) is read and
// compared with the bases of the deltas offered for the release
// (policy.DeltaBases); if it holds one of them, the first update of a
// device fresh from the factory is a delta too, when the factory image is
// a published release. The read image is not recorded: what the slot held
// is checked again by the delta's decoder, and the result by its hash.
func (a *Agent) deltaBase(p *plan) policy.Slot {
	running := p.dev.Running
	if running.SHA256 != "" || running.Status != manifests.SlotUnknown {
		return running
	}
	sl := slot.Slot{Name: running.Name, Path: a.cfg.Slots[running.Name]}
	for _, b := range policy.DeltaBases(p.offers, p.d.Release, a.cfg.Hardware) {
		if err := sl.Verify(b.Length, b.SHA256); err == nil {
			a.log.Info("running slot holds a delta's base", "slot", running.Name, "sha256", b.SHA256, "length", b.Length)
			running.Status, running.SHA256, running.Length = manifests.SlotGood, b.SHA256, b.Length
			return running
		}
	}
	return running
}

// checkpointEvery is how often (in bytes) an install makes its progress
// durable, so that after a power loss it resumes instead of restarting.
const checkpointEvery = 16 << 20

// write streams rel into slot sl, resuming at offset when the slot already
// holds that many bytes of it. begin runs before the first byte is written.
func (a *Agent) write(ctx context.Context, up *tufclient.Trusted, rel *Release, sl slot.Slot, st *State, offset int64, begin func() error) error {
	// Every hash algorithm the target lists is fed the bytes already in
	// the slot, so a resumed download is checked as a whole one is.
	h, err := tufclient.NewHash(rel.tf)
	if err != nil {
		return classify(fmt.Errorf("download %s into slot %s: %w", rel.Target, sl.Name, err))
	}
	if offset > 0 {
		a.log.Info("resuming interrupted install", "slot", sl.Name, "offset", offset)
		if err := sl.HashInto(h, offset); err != nil {
			a.log.Warn("cannot resume; starting over", "err", err)
			offset = 0
			h.Reset()
		}
	}
	cw := &checkpointWriter{next: offset + checkpointEvery,
		open: func() (*slot.Writer, error) {
			if err := begin(); err != nil {
				return nil, err
			}
			if offset > 0 {
				return sl.Resume(offset)
			}
			return sl.Create()
		},
		save: func(w *slot.Writer, n int64) error {
			if err := w.Sync(); err != nil {
				return err
			}
			st.Slots[sl.Name].Written = n
			return a.saveState(st)
		}}
	err = a.client.ResumeTarget(ctx, up, rel.tf, cw, h, offset, a.Progress)
	if werr := cw.wait(); err == nil {
		err = werr
	}
	if err == nil && cw.w == nil { // an empty image: nothing was written yet
		_, err = cw.Write(nil)
	}
	if err != nil {
		if cw.w != nil {
			cw.w.Abort()
		}
		return a.downloadError(err, rel, sl, st, offset)
	}
	return cw.w.Commit()
}

// downloadError says what went wrong with a download into sl. A hash
// failure discards the resume checkpoint: resuming over the same bytes
// would fail the same way forever.
func (a *Agent) downloadError(err error, rel *Release, sl slot.Slot, st *State, offset int64) error {
	if errors.Is(err, tufclient.ErrTargetMismatch) {
		if s := st.Slots[sl.Name]; s.Status == manifests.SlotWriting && s.Written > 0 {
			a.log.Warn("discarding the resume checkpoint after a hash failure", "slot", sl.Name, "written", s.Written)
			s.Written = 0
		}
		if offset > 0 {
			return fmt.Errorf("%w: %w: %s: the image resumed at byte %d of an interrupted download does not match its signed length and hash: "+
				"the bytes kept from the earlier attempt, or the rest sent now, were wrong. The resume checkpoint is discarded: "+
				"the next attempt downloads the whole image (if that fails too, the server or a mirror alters it)",
				ErrRefused, tufclient.ErrTargetMismatch, rel.Target, offset)
		}
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) {
		return fmt.Errorf("%w: writing %s (%d bytes) into slot %s (%s): %w", ErrNoSpace, rel.Target, rel.Length, sl.Name, sl.Path, err)
	}
	return classify(fmt.Errorf("download %s into slot %s: %w", rel.Target, sl.Name, err))
}

// checkpointWriter opens the slot on the first byte and makes install
// progress durable every checkpointEvery bytes. The fsync and state save
// run beside the stream (the data up to the checkpoint was written before
// they start, so the recorded offset is covered by the fsync); the next
// checkpoint and the end of the stream wait for the one in flight. The
// stream keeps going instead of stalling on every fsync.
type checkpointWriter struct {
	open func() (*slot.Writer, error)
	w    *slot.Writer
	next int64
	save func(w *slot.Writer, n int64) error
	done chan error // the checkpoint in flight, if any
}

func (c *checkpointWriter) Write(p []byte) (int, error) {
	if c.w == nil {
		w, err := c.open()
		if err != nil {
			return 0, err
		}
		c.w = w
	}
	n, err := c.w.Write(p)
	if err == nil && c.w.Offset() >= c.next {
		if err = c.wait(); err != nil {
			return n, err
		}
		off := c.w.Offset()
		c.next = off + checkpointEvery
		c.done = make(chan error, 1)
		go func() { c.done <- c.save(c.w, off) }()
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

// classify wraps TUF and download errors in the agent's error kinds.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	case errors.Is(err, tuf.ErrRefused), errors.Is(err, tufclient.ErrTargetMismatch):
		return fmt.Errorf("%w: %w", ErrRefused, err)
	case errors.Is(err, tufclient.ErrHTTP), errors.Is(err, tufclient.ErrStalled), errors.Is(err, tufclient.ErrTransport):
		return fmt.Errorf("%w: %w", ErrNetwork, err)
	}
	// Only a network error counts as one: an *os.PathError also has a
	// Timeout method, and a full slot is not an unreachable repository.
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: %w", ErrNetwork, err)
	}
	return err
}

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
