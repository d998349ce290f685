package agent

import (
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/agent/tufclient"
)

// offered returns every target the device may consider: the top-level
// targets, plus targets of delegated roles (named roles whose path patterns
// may cover this hardware's directory, and every hashed bin), each resolved
// through the delegation search, so role order, terminating roles and path
// restrictions decide which role's entry counts, exactly as for an explicit
// --target. If a delegated role does not verify, only the top-level targets
// are offered (nothing unverified is), and the failure is logged.
func (a *Agent) offered(up *tufclient.Trusted) map[string]*tuf.TargetFile {
	out, err := up.Offered(a.cfg.Hardware + "/")
	if err == nil {
		return out
	}
	a.log.Warn("delegated targets not offered: a delegated role did not verify", "err", err)
	out = map[string]*tuf.TargetFile{}
	for p, tf := range up.Set().Targets.Targets {
		c := *tf
		c.Path = p
		out[p] = &c
	}
	return out
}
