package agent

import (
	"context"
	"fmt"

	"github.com/fwctl/fwctl/agent/policy"
)

// StatusReport describes the device.
type StatusReport struct {
	Hardware   string                `json:"hardware"`
	Repository string                `json:"repository"`
	BootedSlot string                `json:"booted_slot"`
	NextBoot   string                `json:"next_boot"`
	Slots      map[string]*SlotState `json:"slots"`
	Counter    uint64                `json:"counter"`
	TrustStore string                `json:"trust_store"`
	// Identity is the identity key's kind: "tpm", "file" (weaker) or
	// empty (none: the device cannot sign reports).
	Identity string   `json:"identity"`
	RootVer  int64    `json:"root_version"`
	Pending  *Install `json:"pending,omitempty"`
	// BootsLeft is how often the bootloader still tries the pending slot.
	BootsLeft int `json:"boots_left,omitempty"`
	// State says in one line what the device is doing and what to do next.
	State string  `json:"state"`
	Last  *Result `json:"last,omitempty"`
	// History is the bounded list of install attempts, oldest first.
	History []Result `json:"history,omitempty"`
	// Failed lists releases that are not installed again without
	// 'fwagent update --retry'.
	Failed []policy.Failure `json:"failed,omitempty"`
}

// Status reports the device's state without contacting the repository.
func (a *Agent) Status(ctx context.Context) (*StatusReport, error) {
	booted, err := a.bootedSlot()
	if err != nil {
		return nil, err
	}
	// An unprovisioned device has nothing to report: say so first (its
	// state file may not even exist).
	counter, err := a.trust.Counter(ctx)
	if err != nil {
		return nil, err
	}
	_, rootV, err := a.trustedRoot(ctx)
	if err != nil {
		return nil, err
	}
	st, err := a.reconcile(booted)
	if err != nil {
		return nil, err
	}
	r := &StatusReport{Hardware: a.cfg.Hardware, Repository: a.cfg.Repository, BootedSlot: booted,
		Slots: st.Slots, TrustStore: a.trust.Kind(), Identity: a.IdentityKind(), Pending: st.Pending, Last: st.Last, History: st.History,
		Failed: st.Failed, Counter: counter, RootVer: rootV}
	var left int
	r.NextBoot, left, _ = a.sw.Primary()
	p := st.Pending
	switch {
	case p != nil && p.Slot == booted:
		r.BootsLeft = left
		r.State = fmt.Sprintf("trying %s in slot %s, %d boots left, confirm with 'fwagent confirm' (without it the device returns to slot %s)",
			p.Version, p.Slot, left, a.inactive(booted))
	case p != nil:
		r.BootsLeft = left
		r.State = fmt.Sprintf("%s installed in slot %s, waits for a reboot (then 'fwagent confirm'; %d tries)", p.Version, p.Slot, left)
	default:
		s := st.Slots[booted]
		v := s.Version
		if v == "" {
			v = "an image not installed by fwagent"
		}
		r.State = fmt.Sprintf("running %s in slot %s (%s)", v, booted, s.Status)
	}
	if len(st.Failed) > 0 {
		f := st.Failed[len(st.Failed)-1]
		r.State += fmt.Sprintf("; %s %s and is not retried without 'fwagent update --retry'", f.Version, f.Outcome)
	}
	return r, nil
}
