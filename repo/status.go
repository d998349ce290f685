package repo

import (
	"path/filepath"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/repo/verify"
)

// RoleStatus describes one top-level role.
type RoleStatus struct {
	Role      string    `json:"role"`
	KeyIDs    []string  `json:"keyids"`
	Threshold int       `json:"threshold"`
	Version   int64     `json:"version"` // 0: never published
	Expires   time.Time `json:"expires,omitzero"`
	// Warning is set when the metadata has expired or expires soon.
	Warning string `json:"warning,omitempty"`
	// Elsewhere are the key IDs this workspace holds no key file or
	// reference for: they sign through the ceremony.
	Elsewhere []string `json:"keys_elsewhere,omitempty"`
}

// Status describes a workspace.
type Status struct {
	Dir      string       `json:"dir"`
	Roles    []RoleStatus `json:"roles"`
	Targets  []Target     `json:"targets"`
	Unstaged int          `json:"unpublished_changes"`
	// Delegations say which role may sign which target paths.
	Delegations []Delegation `json:"delegations,omitempty"`
	// Pending lists what the next publish still lacks in signatures.
	Pending []Missing `json:"pending_signatures,omitempty"`
	// PendingRoot is the staged root version awaiting publish (0: none).
	PendingRoot int64 `json:"pending_root_version,omitempty"`
}

// Status reports roles, keys, thresholds, versions, expiry, delegations
// (who may sign which paths), signatures the next publish still lacks, and
// targets.
// A role's metadata is flagged when it expires within a quarter of its
// configured lifetime.
func (ws *Workspace) Status() (*Status, error) {
	root, err := ws.Root()
	if err != nil {
		return nil, err
	}
	now := ws.Now()
	st := &Status{Dir: ws.Dir}
	kr, _ := ws.keyring() // nil when a key file is damaged; Status still reports
	versions := map[string]int64{metadata.ROOT: root.Signed.Version}
	expires := map[string]time.Time{metadata.ROOT: root.Signed.Expires}
	md := filepath.Join(ws.Dir, "metadata")
	if t, err := metadata.Targets().FromFile(filepath.Join(md, "targets.json")); err == nil {
		versions[metadata.TARGETS], expires[metadata.TARGETS] = t.Signed.Version, t.Signed.Expires
	}
	if s, err := metadata.Snapshot().FromFile(filepath.Join(md, "snapshot.json")); err == nil {
		versions[metadata.SNAPSHOT], expires[metadata.SNAPSHOT] = s.Signed.Version, s.Signed.Expires
	}
	if t, err := metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json")); err == nil {
		versions[metadata.TIMESTAMP], expires[metadata.TIMESTAMP] = t.Signed.Version, t.Signed.Expires
	}
	for _, r := range Roles {
		role := root.Signed.Roles[r]
		ids := append([]string(nil), role.KeyIDs...)
		sort.Strings(ids)
		rs := RoleStatus{Role: r, KeyIDs: ids, Threshold: role.Threshold, Version: versions[r], Expires: expires[r]}
		if kr != nil {
			for _, id := range ids {
				if _, ok := kr.byID[id]; !ok {
					rs.Elsewhere = append(rs.Elsewhere, id)
				}
			}
		}
		if !rs.Expires.IsZero() {
			notice := ws.expiry(r) / 4
			switch left := rs.Expires.Sub(now); {
			case left <= 0:
				rs.Warning = "EXPIRED: devices refuse this metadata; publish again (root: rotate)"
			case left < notice:
				rs.Warning = "expires in " + duration.Format(left.Round(time.Minute)) + "; publish again soon"
			}
		}
		st.Roles = append(st.Roles, rs)
	}
	targets, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	st.Targets = verify.ListTargets(targets.Signed.Targets)
	if st.Delegations, err = ws.Delegations(); err != nil {
		return nil, err
	}
	for _, d := range verify.DelegatedNames(targets) {
		if dt, err := metadata.Targets().FromFile(ws.stagedRolePath(d)); err == nil {
			st.Targets = append(st.Targets, verify.ListTargets(dt.Signed.Targets)...)
		}
	}
	if pl, err := ws.plan(nil, ws.expiry, false); err == nil {
		if kr != nil {
			st.Pending = pl.missingAfterLocal(kr)
		}
		if pl.rootPlan != nil {
			st.PendingRoot = pl.rootPlan.version()
		}
	}
	if pub, err := metadata.Targets().FromFile(filepath.Join(md, "targets.json")); err == nil {
		for p := range targets.Signed.Targets {
			if _, ok := pub.Signed.Targets[p]; !ok {
				st.Unstaged++
			}
		}
	} else {
		st.Unstaged = len(targets.Signed.Targets)
	}
	return st, nil
}
