package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/fwctl/fwctl/repo/layout"
)

// RoleError says which delegated targets role failed verification, which
// role delegates it, what was wrong and what to do. Err is the cause: one
// of go-tuf's typed errors (metadata.ErrUnsignedMetadata,
// metadata.ErrExpiredMetadata, metadata.ErrBadVersionNumber,
// metadata.ErrLengthOrHashMismatch…), ErrOutsideDelegation, or an I/O
// error; errors.Is and errors.As see through RoleError to it.
type RoleError struct {
	Role      string // the delegated role, e.g. "acme" or "bins-3f"
	Delegator string // the role whose delegation names it, e.g. "targets"
	Err       error  // what was wrong
	Fix       string // what to do about it
}

func (e *RoleError) Error() string {
	return fmt.Sprintf("delegated role %s (delegated by %s): %v; %s", e.Role, e.Delegator, e.Err, e.Fix)
}

// Unwrap returns the cause.
func (e *RoleError) Unwrap() error { return e.Err }

// VerifiedRole is one delegated targets role that verified.
type VerifiedRole struct {
	Role      string    `json:"role"`
	Delegator string    `json:"delegator"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Targets   int       `json:"targets"`
}

// pathRule is one delegation a target path must satisfy: the role that
// delegates, the role delegated to and the paths it was given.
type pathRule struct {
	delegator, role string
	allows          func(path string) bool
	paths           string // for messages
}

// pendingRole is a delegated role still to verify, with every delegation on
// its way from the top-level targets.
type pendingRole struct {
	role, delegator string
	rules           []pathRule
}

// delegatedRoles lists the roles delegations delegates to, each with the
// rule its targets must satisfy.
func delegatedRoles(delegator string, d *metadata.Delegations) []pendingRole {
	if d == nil {
		return nil
	}
	var out []pendingRole
	for i := range d.Roles {
		r := &d.Roles[i]
		paths := "paths " + strings.Join(r.Paths, ", ")
		if len(r.Paths) == 0 {
			paths = "path hash prefixes " + strings.Join(r.PathHashPrefixes, ", ")
		}
		out = append(out, pendingRole{role: r.Name, delegator: delegator, rules: []pathRule{{delegator: delegator, role: r.Name,
			allows: func(p string) bool { ok, err := r.IsDelegatedPath(p); return ok && err == nil }, paths: paths}}})
	}
	if sr := d.SuccinctRoles; sr != nil {
		for _, name := range sr.GetRoles() {
			out = append(out, pendingRole{role: name, delegator: delegator, rules: []pathRule{{delegator: delegator, role: name,
				allows: func(p string) bool { return sr.GetRolesForTarget(p)[0].Name == name },
				paths:  "the paths whose SHA-256 falls in this hashed bin"}}})
		}
	}
	return out
}

// verifyDelegated verifies every delegated targets role reachable from the
// top-level targets in tm, breadth first: each against its delegator's keys
// and threshold, the version and hashes snapshot records for it, and expiry;
// then that each of its targets' paths is one every delegation on the way
// allows. It returns the verified roles and their targets.
func verifyDelegated(ctx context.Context, tm *trustedmetadata.TrustedMetadata, src Source) ([]VerifiedRole, []map[string]*metadata.TargetFiles, error) {
	queue := delegatedRoles(metadata.TARGETS, tm.Targets[metadata.TARGETS].Signed.Delegations)
	seen := map[string]bool{metadata.TARGETS: true}
	var roles []VerifiedRole
	var targets []map[string]*metadata.TargetFiles
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p.role] {
			continue // delegated twice (or a cycle): verified the first time
		}
		seen[p.role] = true
		t, err := verifyRole(ctx, tm, src, p)
		if err != nil {
			return nil, nil, err
		}
		roles = append(roles, VerifiedRole{Role: p.role, Delegator: p.delegator, Version: t.Signed.Version,
			Expires: t.Signed.Expires, Targets: len(t.Signed.Targets)})
		targets = append(targets, t.Signed.Targets)
		for _, next := range delegatedRoles(p.role, t.Signed.Delegations) {
			next.rules = append(append([]pathRule(nil), p.rules...), next.rules...)
			queue = append(queue, next)
		}
	}
	return roles, targets, nil
}

// verifyRole loads and verifies one delegated role and checks its targets'
// paths.
func verifyRole(ctx context.Context, tm *trustedmetadata.TrustedMetadata, src Source, p pendingRole) (*metadata.Metadata[metadata.TargetsType], error) {
	fail := func(err error, fix string) error {
		return &RoleError{Role: p.role, Delegator: p.delegator, Err: err, Fix: fix}
	}
	const republish = "publish again from the workspace ('fwctl publish') and copy the whole repository"
	meta, ok := tm.Snapshot.Signed.Meta[p.role+".json"]
	if !ok {
		return nil, fail(fmt.Errorf("snapshot v%d does not list %s.json", tm.Snapshot.Signed.Version, p.role), republish)
	}
	name := fmt.Sprintf("%d.%s.json", meta.Version, p.role)
	limit, signed := MetaLimit(meta, layout.MaxTargetsLength)
	b, err := ReadLimited(ctx, src, "metadata/"+name, limit, signed)
	if isLengthMismatch(err) {
		return nil, roleFailure(p, name, nil, err)
	}
	if err != nil {
		return nil, fail(fmt.Errorf("snapshot v%d names %s: %w", tm.Snapshot.Signed.Version, name, err), republish)
	}
	t, err := tm.UpdateDelegatedTargets(b, p.role, p.delegator)
	if err != nil {
		return nil, roleFailure(p, name, b, err)
	}
	for _, tf := range SortedTargetFiles(t.Signed.Targets) {
		for _, r := range p.rules {
			if !r.allows(tf.Path) {
				return nil, fail(fmt.Errorf("%w: it lists target %s, but %s delegates to %s only %s",
					ErrOutsideDelegation, tf.Path, r.delegator, r.role, r.paths),
					"devices ignore that target: stage it in the role whose paths cover it ('fwctl delegate target --role') or widen the delegation, then publish again")
			}
		}
	}
	return t, nil
}

// roleFailure explains a go-tuf refusal of the delegated role in file name
// (bytes b).
func roleFailure(p pendingRole, name string, b []byte, err error) error {
	e := &RoleError{Role: p.role, Delegator: p.delegator, Err: fmt.Errorf("%s: %w", name, err)}
	var (
		unsigned *metadata.ErrUnsignedMetadata
		expired  *metadata.ErrExpiredMetadata
		version  *metadata.ErrBadVersionNumber
		hashes   *metadata.ErrLengthOrHashMismatch
	)
	switch {
	case errors.As(err, &unsigned):
		e.Err = fmt.Errorf("%s: %w: it lacks valid signatures from the keys and threshold %s's delegation names (modified after signing, or signed by the wrong keys)", name, err, p.delegator)
		e.Fix = fmt.Sprintf("sign %s with its keys ('fwctl ceremony export', 'fwctl ceremony sign' where they live, 'fwctl ceremony import') and publish again", p.role)
	case errors.As(err, &expired):
		if t, perr := metadata.Targets().FromBytes(b); perr == nil {
			e.Err = fmt.Errorf("%s: %w (expired at %s)", name, err, t.Signed.Expires.UTC().Format(time.RFC3339))
		}
		e.Fix = fmt.Sprintf("re-sign %s with a fresh expiry: 'fwctl publish' (through the ceremony if its keys are offline)", p.role)
	case errors.As(err, &version):
		e.Fix = "the repository mixes metadata of different publishes: publish again from the workspace and copy the whole repository"
	case errors.As(err, &hashes):
		e.Err = fmt.Errorf("%s does not match the length and hashes snapshot records for it (%w): it was modified or replaced after publishing", name, err)
		e.Fix = "restore it from the workspace's publish ('fwctl publish' again) and find out who changed it"
	default:
		e.Fix = "publish again from the workspace ('fwctl publish')"
	}
	return e
}
