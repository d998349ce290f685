package agent

import (
	"fmt"

	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/agent/tufclient"
)

// offered returns every target the device may consider: the top-level
// targets, plus targets of delegated roles (named roles whose path patterns
// may cover this hardware's directory, and every hashed bin), each resolved
// through the delegation search, so role order, terminating roles and path
// restrictions decide which role's entry counts, exactly as for an explicit
// --target. If a delegated role that may hold this hardware's targets does
// not verify (a bad signature, a version or hash the snapshot does not
// vouch for, an expiry, an unreachable file), the update stops there, as
// TUF's client workflow does (5.6): offering only the top-level targets
// would let whoever withholds one role's file keep the device on an older
// release without a word.
func (a *Agent) offered(up *tufclient.Trusted) (map[string]*tuf.TargetFile, error) {
	out, err := up.Offered(a.cfg.Hardware + "/")
	if err != nil {
		return nil, classify(fmt.Errorf("delegated targets for %s/ could not be verified, so the newest release cannot be known; the device stays as it is: %w", a.cfg.Hardware, err))
	}
	return out, nil
}
