package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/fwctl/fwctl/agent/maintenance"
	"github.com/fwctl/fwctl/agent/policy"
	"github.com/fwctl/fwctl/manifests"
)

// MaintenanceConfig is the "maintenance" object of the config: when the
// device may download, install and reboot (package maintenance), and who
// decides about the reboot.
type MaintenanceConfig struct {
	manifests.Maintenance
	// MayReboot is a command asked before the daemon reboots: a non-zero
	// exit means "not now" (a PLC running a batch), and the reboot waits
	// for the next poll.
	MayReboot []string `json:"may_reboot,omitempty"`
	// OperatorReboot leaves the reboot to the operator: the daemon never
	// runs reboot_command; 'fwagent status' says a reboot is pending.
	OperatorReboot bool `json:"operator_reboot,omitempty"`
}

func (c *Config) validateMaintenance() []error {
	if c.Maintenance == nil {
		return nil
	}
	if _, err := maintenance.Load(&c.Maintenance.Maintenance); err != nil {
		return []error{fmt.Errorf("maintenance: %w", err)}
	}
	return nil
}

// deferral says why an install waits for its window.
type deferral struct {
	next time.Time
	msg  string
}

// deferred checks the download and install windows (the device's own and
// the director assignment's) for an install p decided on, and returns a
// deferral when either is closed now. It records one "deferred" attempt
// per release, never a failure.
func (a *Agent) deferred(p *plan) (*deferral, error) {
	if p.d.Action != policy.Install {
		return nil, nil
	}
	var ss []*maintenance.Schedule
	if m := a.cfg.Maintenance; m != nil {
		s, err := maintenance.Load(&m.Maintenance)
		if err != nil {
			return nil, fmt.Errorf("maintenance: %w", err)
		}
		ss = append(ss, s)
	}
	if as := p.assigned; as != nil && as.Maintenance != nil {
		s, err := maintenance.Load(as.Maintenance)
		if err != nil {
			return nil, fmt.Errorf("the director assignment's maintenance window: %w", err)
		}
		ss = append(ss, s)
	}
	now := a.Now()
	if maintenance.All(maintenance.Download, now, ss...) && maintenance.All(maintenance.Install, now, ss...) {
		return nil, nil
	}
	next := now
	for range 16 { // the first minute both phases allow
		next = maintenance.NextAll(maintenance.Download, next, ss...)
		if next.IsZero() || maintenance.All(maintenance.Install, next, ss...) {
			break
		}
		next = maintenance.NextAll(maintenance.Install, next, ss...)
	}
	d := &deferral{next: next, msg: fmt.Sprintf("deferred: %s (version %s) waits for its maintenance window", p.rel.Target, p.rel.Version)}
	if !next.IsZero() {
		d.msg += " (next opens " + next.UTC().Format(time.RFC3339) + ")"
	}
	st := p.st
	if n := len(st.History); n == 0 || st.History[n-1].Outcome != manifests.OutcomeDeferred || st.History[n-1].SHA256 != p.rel.SHA256 {
		st.record(Result{At: now.UTC(), Target: p.rel.Target, Version: p.rel.Version, SHA256: p.rel.SHA256,
			Outcome: manifests.OutcomeDeferred, Error: "outside the maintenance window"})
		if err := a.saveState(st); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// MayReboot says whether the daemon may reboot now: inside the reboot
// window, not left to the operator, and the may_reboot hook agrees.
func (a *Agent) MayReboot(ctx context.Context) (bool, string) {
	m := a.cfg.Maintenance
	if m == nil {
		return true, ""
	}
	if m.OperatorReboot {
		return false, "the reboot is left to the operator (maintenance.operator_reboot)"
	}
	s, err := maintenance.Load(&m.Maintenance)
	if err != nil {
		return false, err.Error()
	}
	if !s.Open(maintenance.Reboot, a.Now()) {
		return false, "outside the reboot window"
	}
	if len(m.MayReboot) > 0 {
		if err := run(ctx, m.MayReboot, 5*time.Minute, nil); err != nil {
			return false, "may_reboot said not now: " + err.Error()
		}
	}
	return true, ""
}
