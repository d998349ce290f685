package agent

import (
	"context"
	"fmt"

	"github.com/fwctl/fwctl/manifests"
)

// reconcile brings the state file in line with what booted: a pending
// install whose slot is neither running nor about to be tried fell back,
// and its release is not installed again without --retry; one the
// bootloader was never asked to try was interrupted (no --retry needed).
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
	if tried, err := a.sw.Tried(p.Slot); err == nil && !tried {
		// Power was lost between recording the install and a durable
		// switch: the bootloader never tried the slot. Not a fallback;
		// the release may be installed again without --retry.
		a.log.Warn("the install was interrupted before the bootloader switched to it; update installs it again", "slot", p.Slot, "target", p.Target)
		st.record(Result{At: a.Now().UTC(), Target: p.Target, Version: p.Version, SHA256: p.SHA256, Outcome: manifests.OutcomeFailed,
			Error: fmt.Sprintf("interrupted before the bootloader was switched to slot %s", p.Slot)})
		st.Pending = nil
		return st, a.saveState(st)
	}
	a.log.Warn("update was not confirmed; the device fell back", "slot", p.Slot, "target", p.Target, "running", booted)
	st.Slots[p.Slot].Status = manifests.SlotBad
	r := Result{At: a.Now().UTC(), Target: p.Target, Version: p.Version, SHA256: p.SHA256, Outcome: manifests.OutcomeFellBack,
		Error: fmt.Sprintf("slot %s did not confirm; running slot %s", p.Slot, booted)}
	st.record(r)
	st.failed(r)
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
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
			st.Slots[booted].Status = manifests.SlotBad
			r := Result{At: a.Now().UTC(), Target: p.Target, Version: p.Version, SHA256: p.SHA256, Outcome: manifests.OutcomeUnhealthy, Error: err.Error()}
			st.record(r)
			st.failed(r)
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
		st.Slots[booted].Status = manifests.SlotGood
		st.record(Result{At: a.Now().UTC(), Target: p.Target, Version: p.Version, SHA256: p.SHA256, Outcome: manifests.OutcomeConfirmed})
		st.forget(p.SHA256)
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
