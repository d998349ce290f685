package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/repo/verify"
)

// ErrThreshold means a role lacks signatures: publish refuses until the
// offline ceremony (or local keys) supplies them.
var ErrThreshold = errors.New("signature threshold not met")

// Missing says how many signatures one role still lacks.
type Missing struct {
	Role    string `json:"role"`
	Version int64  `json:"version"`
	Have    int    `json:"have"`
	Need    int    `json:"need"`
	By      string `json:"by"` // whose keys count: "root v3", "targets delegation"
}

// ThresholdError lists every role that lacks signatures.
type ThresholdError struct{ Missing []Missing }

func (e *ThresholdError) Error() string {
	var parts []string
	for _, m := range e.Missing {
		parts = append(parts, fmt.Sprintf("%s v%d has %d of %d signatures required by %s (%d more)", m.Role, m.Version, m.Have, m.Need, m.By, m.Need-m.Have))
	}
	return "publish refused: " + strings.Join(parts, "; ") +
		": export a signing request ('fwctl ceremony export'), sign it where those keys live ('fwctl ceremony sign'), import the signatures ('fwctl ceremony import') and publish again"
}

// Is makes errors.Is(err, ErrThreshold) true.
func (e *ThresholdError) Is(target error) bool { return target == ErrThreshold }

// pendingDir holds metadata frozen for the ceremony, collecting signatures:
// root.json (the next root version), targets.json, and delegated roles.
func (ws *Workspace) pendingPath(role string) string {
	return filepath.Join(ws.Dir, "pending", role+".json")
}

// stagedRolePath is where a targets role's unpublished content lives.
func (ws *Workspace) stagedRolePath(role string) string {
	if role == metadata.TARGETS {
		return ws.stagedTargetsPath()
	}
	return filepath.Join(ws.Dir, "staged", "delegated", role+".json")
}

// rolePlan is one role's next metadata and its signature state.
type rolePlan struct {
	role    string
	auth    []authority // every authority must be satisfied (root: old and new)
	payload []byte
	changed bool // a new version will be published
	// exactly one of these is set
	root    *metadata.Metadata[metadata.RootType]
	targets *metadata.Metadata[metadata.TargetsType]
	prev    func() []byte // canonical bytes of the previous version, for summaries
}

func (p *rolePlan) sigs() *[]metadata.Signature {
	if p.root != nil {
		return &p.root.Signatures
	}
	return &p.targets.Signatures
}

func (p *rolePlan) version() int64 {
	if p.root != nil {
		return p.root.Signed.Version
	}
	return p.targets.Signed.Version
}

func (p *rolePlan) missing() []Missing {
	var out []Missing
	for _, a := range p.auth {
		if have := a.valid(p.payload, *p.sigs()); have < a.threshold {
			out = append(out, Missing{Role: p.role, Version: p.version(), Have: have, Need: a.threshold, By: a.by})
		}
	}
	return out
}

// plan is what the next publish would sign.
type plan struct {
	root      *metadata.Metadata[metadata.RootType] // trusted after this publish
	rootPlan  *rolePlan                             // nil: root unchanged
	targets   *rolePlan                             // top-level
	delegated []*rolePlan                           // sorted by name
	missing   []Missing
}

// plan works out the next root, targets and delegated metadata, signs them
// with every key this workspace holds, and lists what is still missing.
//
// refresh forces new targets versions (a new expiry was asked for).
func (ws *Workspace) plan(kr *keyring, expiry func(string) time.Duration, refresh bool) (*plan, error) {
	now := ws.Now().UTC()
	cur, err := ws.Root()
	if err != nil {
		return nil, fmt.Errorf("read root: %w", err)
	}
	pl := &plan{root: cur}
	// A pending root no newer than the current one was recorded by a
	// publish that stopped before clearing pending/: it is published.
	if next, err := metadata.Root().FromFile(ws.pendingPath(metadata.ROOT)); err == nil && next.Signed.Version > cur.Signed.Version {
		rp := &rolePlan{role: metadata.ROOT, root: next, changed: true,
			auth: []authority{rootAuthority(cur, metadata.ROOT), rootAuthority(next, metadata.ROOT)}}
		rp.auth[1].by = fmt.Sprintf("root v%d itself", next.Signed.Version)
		if rp.payload, err = canonical(next.Signed); err != nil {
			return nil, err
		}
		rp.prev = func() []byte { b, _ := canonical(cur.Signed); return b }
		if _, err := kr.signLocal(unionAuthority(rp.auth), rp.payload, &next.Signatures); err != nil {
			return nil, err
		}
		pl.root, pl.rootPlan = next, rp
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read pending root: %w", err)
	}

	top, err := ws.planTargets(kr, metadata.TARGETS, rootAuthority(pl.root, metadata.TARGETS), now, expiry(metadata.TARGETS), refresh)
	if err != nil {
		return nil, err
	}
	pl.targets = top
	for _, name := range verify.DelegatedNames(top.targets) {
		a, _ := delegatedAuthority(top.targets, name)
		dp, err := ws.planTargets(kr, name, a, now, expiry(metadata.TARGETS), refresh)
		if err != nil {
			return nil, err
		}
		pl.delegated = append(pl.delegated, dp)
	}
	for _, p := range pl.all() {
		pl.missing = append(pl.missing, p.missing()...)
	}
	return pl, nil
}

func (pl *plan) all() []*rolePlan {
	var out []*rolePlan
	if pl.rootPlan != nil {
		out = append(out, pl.rootPlan)
	}
	out = append(out, pl.targets)
	return append(out, pl.delegated...)
}

func unionAuthority(as []authority) authority {
	u := authority{keys: map[string]*metadata.Key{}}
	seen := map[string]bool{}
	for _, a := range as {
		for _, id := range a.keyIDs {
			if !seen[id] {
				seen[id] = true
				u.keyIDs = append(u.keyIDs, id)
				u.keys[id] = a.keys[id]
			}
		}
	}
	return u
}

// sameContent reports whether two targets metadata list the same targets
// and delegations (ignoring version, expiry and signatures).
func sameContent(a, b *metadata.Metadata[metadata.TargetsType]) bool {
	x, y := a.Signed, b.Signed // shallow copies: only scalars change
	x.Version, y.Version = 0, 0
	x.Expires, y.Expires = time.Time{}, time.Time{}
	bx, err1 := canonical(x)
	by, err2 := canonical(y)
	return err1 == nil && err2 == nil && string(bx) == string(by)
}

// planTargets decides the next version of a targets role:
//   - a pending (ceremony) copy with the staged content keeps its signatures;
//   - else the published version is kept when its content is unchanged, it
//     does not expire within a quarter of its lifetime, the (possibly new)
//     root or delegation still accepts its signatures and refresh is false;
//   - else a fresh version is signed with the local keys (the ceremony adds
//     the others).
func (ws *Workspace) planTargets(kr *keyring, role string, a authority, now time.Time, life time.Duration, refresh bool) (*rolePlan, error) {
	staged, err := metadata.Targets().FromFile(ws.stagedRolePath(role))
	if err != nil {
		return nil, fmt.Errorf("read staged %s: %w", role, err)
	}
	a.by = role + " keys of " + a.by
	if role == metadata.TARGETS {
		a.by = strings.TrimPrefix(a.by, "targets keys of ")
	}
	pub, err := readRecorded(filepath.Join(ws.Dir, "metadata"), role+".json", metadata.Targets().FromBytes)
	if err != nil {
		return nil, err
	}
	p := &rolePlan{role: role, auth: []authority{a}}
	if pub != nil {
		// Encoded only for a signing request: large target sets make it costly.
		p.prev = func() []byte { b, _ := canonical(pub.Signed); return b }
	}
	if pend, err := metadata.Targets().FromFile(ws.pendingPath(role)); err == nil && sameContent(pend, staged) &&
		(pub == nil || pend.Signed.Version > pub.Signed.Version) {
		p.targets, p.changed = pend, true
		if p.payload, err = canonical(pend.Signed); err != nil {
			return nil, err
		}
		_, err := kr.signLocal(a, p.payload, &pend.Signatures)
		return p, err
	}
	fresh := func() (*rolePlan, error) {
		t := &metadata.Metadata[metadata.TargetsType]{Signed: staged.Signed, Signatures: []metadata.Signature{}}
		t.Signed.Version = 1
		if pub != nil {
			t.Signed.Version = pub.Signed.Version + 1
		}
		t.Signed.Expires = expires(now, life)
		p.targets, p.changed = t, true
		if p.payload, err = canonical(t.Signed); err != nil {
			return nil, err
		}
		_, err := kr.signLocal(a, p.payload, &t.Signatures)
		return p, err
	}
	if pub != nil && !refresh && sameContent(pub, staged) && !pub.Signed.IsExpired(now.Add(life/4)) {
		payload, err := canonical(pub.Signed)
		if err != nil {
			return nil, err
		}
		if a.valid(payload, pub.Signatures) >= a.threshold {
			p.targets, p.payload = pub, payload
			return p, nil
		}
	}
	return fresh()
}

// missingAfterLocal is what would still be missing after this workspace's
// keys sign (without unlocking them to find out).
func (pl *plan) missingAfterLocal(kr *keyring) []Missing {
	var out []Missing
	for _, p := range pl.all() {
		for _, a := range p.auth {
			have := a.valid(p.payload, *p.sigs())
			for _, id := range a.keyIDs {
				_, local := kr.byID[id]
				signed := slices.ContainsFunc(*p.sigs(), func(s metadata.Signature) bool { return s.KeyID == id })
				if local && !signed {
					have++
				}
			}
			if have < a.threshold {
				out = append(out, Missing{Role: p.role, Version: p.version(), Have: have, Need: a.threshold, By: a.by})
			}
		}
	}
	return out
}

// savePending stores every incomplete role of pl under pending/ so that
// imported signatures can join the ones already made.
func (ws *Workspace) savePending(pl *plan) error {
	if err := os.MkdirAll(filepath.Join(ws.Dir, "pending"), 0o700); err != nil {
		return err
	}
	for _, p := range pl.all() {
		if !p.changed {
			continue
		}
		var err error
		if p.root != nil {
			err = writeMetadata(ws.pendingPath(p.role), p.root)
		} else {
			err = writeMetadata(ws.pendingPath(p.role), p.targets)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// clearPending removes pending metadata once published.
func (ws *Workspace) clearPending() error {
	err := os.RemoveAll(filepath.Join(ws.Dir, "pending"))
	if err != nil {
		return err
	}
	return atomicfile.SyncDir(ws.Dir)
}
