package agent

import (
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// offered returns every target the device may consider: the top-level
// targets, plus targets of delegated roles whose path patterns cover this
// hardware's directory. Delegated targets are resolved again through the
// updater, so role order, terminating roles and path restrictions decide
// which role's entry counts, exactly as for an explicit --target.
func (a *Agent) offered(up *updater.Updater) map[string]*metadata.TargetFiles {
	out := map[string]*metadata.TargetFiles{}
	for p, tf := range up.GetTopLevelTargets() {
		out[p] = tf
	}
	top := up.GetTrustedMetadataSet().Targets[metadata.TARGETS]
	if top == nil || top.Signed.Delegations == nil || len(top.Signed.Delegations.Roles) == 0 {
		return out
	}
	// Looking up a path that does not exist makes the updater load and
	// verify every delegated role that could hold this hardware's images.
	_, _ = up.GetTargetInfo(a.cfg.Hardware + "/~/~")
	for role, md := range up.GetTrustedMetadataSet().Targets {
		if role == metadata.TARGETS || md == nil {
			continue
		}
		for p := range md.Signed.Targets {
			if _, seen := out[p]; seen {
				continue
			}
			if tf, err := up.GetTargetInfo(p); err == nil {
				out[p] = tf
			}
		}
	}
	return out
}
