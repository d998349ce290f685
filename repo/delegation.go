package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
)

// ErrOutsideDelegation means a target path is not one a delegated role may
// sign: staging refuses what verify would.
var ErrOutsideDelegation = verify.ErrOutsideDelegation

var roleName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// DelegationOptions describe a delegated targets role.
type DelegationOptions struct {
	// Paths are the target path patterns the role may sign, e.g.
	// "acme-gw-v2/*" (shell-style, '*' does not cross '/').
	Paths []string
	// Keys are key URIs (file:, pkcs11:, pub:PEMFILE).
	Keys      []string
	Threshold int
	// Terminating stops clients from looking further for paths that match.
	Terminating bool
}

// BinsOptions describe hashed-bin delegation: targets are spread over
// 2^Bits roles by the SHA-256 of their path, so a device downloads one small
// bin instead of one huge targets file.
type BinsOptions struct {
	Prefix    string // role names are PREFIX-XX; default "bins"
	Bits      int    // 1..14
	Keys      []string
	Threshold int
}

func (ws *Workspace) resolveKeys(role string, uris []string) (map[string]*metadata.Key, []string, error) {
	keys := map[string]*metadata.Key{}
	var ids []string
	for _, uri := range uris {
		k, id, err := ResolvePublic(uri, signer.Options{Passphrase: ws.Passphrase})
		if err != nil {
			return nil, nil, fmt.Errorf("%s key %s: %w", role, uri, err)
		}
		if err := ws.addKeyRef(role, id, uri); err != nil {
			return nil, nil, err
		}
		keys[id] = k
		ids = append(ids, id)
	}
	return keys, ids, nil
}

// AddDelegation delegates the target paths opt.Paths to a new role name,
// signed by opt.Keys. It changes the staged top-level targets (signed by
// the targets keys at the next publish).
func (ws *Workspace) AddDelegation(name string, opt DelegationOptions) error {
	if !roleName.MatchString(name) || isTopLevel(name) {
		return fmt.Errorf("role name %q: use lower-case letters, digits, '.', '_' and '-', not a top-level role name", name)
	}
	if len(opt.Paths) == 0 || len(opt.Keys) == 0 {
		return errors.New("a delegation needs at least one path pattern and one key")
	}
	if opt.Threshold <= 0 {
		opt.Threshold = 1
	}
	if opt.Threshold > len(opt.Keys) {
		return fmt.Errorf("threshold %d is larger than the %d keys given", opt.Threshold, len(opt.Keys))
	}
	staged, err := ws.stagedTargets()
	if err != nil {
		return err
	}
	d := staged.Signed.Delegations
	if d == nil {
		d = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
		staged.Signed.Delegations = d
	}
	if d.SuccinctRoles != nil {
		return errors.New("top-level targets already delegate to hashed bins; TUF allows either named roles or bins per delegator")
	}
	for _, r := range d.Roles {
		if r.Name == name {
			return fmt.Errorf("role %s exists: change its keys with 'fwctl key rotate %s'", name, name)
		}
	}
	keys, ids, err := ws.resolveKeys(name, opt.Keys)
	if err != nil {
		return err
	}
	for id, k := range keys {
		d.Keys[id] = k
	}
	d.Roles = append(d.Roles, metadata.DelegatedRole{Name: name, KeyIDs: ids, Threshold: opt.Threshold,
		Terminating: opt.Terminating, Paths: opt.Paths})
	if err := ws.newDelegatedRole(name); err != nil {
		return err
	}
	return writeMetadata(ws.stagedTargetsPath(), staged)
}

// AddHashedBins delegates all targets added from now on to 2^Bits hashed
// bins signed by opt.Keys.
func (ws *Workspace) AddHashedBins(opt BinsOptions) error {
	if opt.Prefix == "" {
		opt.Prefix = "bins"
	}
	if opt.Bits < 1 || opt.Bits > 14 {
		return fmt.Errorf("--bits %d: use 1..14 (2 to 16384 bins); 8 suits up to a few hundred thousand targets", opt.Bits)
	}
	if !roleName.MatchString(opt.Prefix) {
		return fmt.Errorf("bin prefix %q: use lower-case letters, digits, '.', '_' and '-'", opt.Prefix)
	}
	if opt.Threshold <= 0 {
		opt.Threshold = 1
	}
	staged, err := ws.stagedTargets()
	if err != nil {
		return err
	}
	if d := staged.Signed.Delegations; d != nil && (len(d.Roles) > 0 || d.SuccinctRoles != nil) {
		return errors.New("top-level targets already delegate: TUF allows either named roles or hashed bins per delegator")
	}
	keys, ids, err := ws.resolveKeys(opt.Prefix, opt.Keys)
	if err != nil {
		return err
	}
	sr := &metadata.SuccinctRoles{KeyIDs: ids, Threshold: opt.Threshold, BitLength: opt.Bits, NamePrefix: opt.Prefix}
	staged.Signed.Delegations = &metadata.Delegations{Keys: keys, SuccinctRoles: sr}
	for _, name := range sr.GetRoles() {
		if err := ws.newDelegatedRole(name); err != nil {
			return err
		}
	}
	return writeMetadata(ws.stagedTargetsPath(), staged)
}

func (ws *Workspace) newDelegatedRole(name string) error {
	p := ws.stagedRolePath(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	t := metadata.Targets(expires(ws.Now(), ws.expiry(metadata.TARGETS)))
	t.Signed.Version = 0
	return writeMetadata(p, t)
}

// AddDelegatedTarget stages an image like AddTarget, in the delegated role
// that signs it: role, or with role empty the hashed bin its path falls in.
// It refuses a path outside the role's delegated patterns.
func (ws *Workspace) AddDelegatedTarget(role, image string, opt AddOptions) (*Target, error) {
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	d := staged.Signed.Delegations
	if d == nil {
		return nil, errors.New("no delegations: add one with 'fwctl delegate add' or 'fwctl delegate bins'")
	}
	t, err := ws.AddTarget(image, opt)
	if err != nil {
		return nil, err
	}
	// AddTarget staged it at top level; move it to its delegated role.
	staged, err = ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	tf := staged.Signed.Targets[t.Path]
	delete(staged.Signed.Targets, t.Path)
	undo := func(e error) (*Target, error) {
		os.Remove(filepath.Join(ws.Dir, "targets", filepath.FromSlash(t.Path)))
		if err := writeMetadata(ws.stagedTargetsPath(), staged); err != nil {
			return nil, errors.Join(e, err)
		}
		return nil, e
	}
	if role == "" {
		if d.SuccinctRoles == nil {
			return undo(errors.New("give the delegated role (--role): the top-level targets delegate to named roles, not hashed bins"))
		}
		role = d.SuccinctRoles.GetRolesForTarget(t.Path)[0].Name
	} else {
		var dr *metadata.DelegatedRole
		for i := range d.Roles {
			if d.Roles[i].Name == role {
				dr = &d.Roles[i]
			}
		}
		if dr == nil {
			return undo(fmt.Errorf("%w %q: not a delegated role of this workspace", ErrUnknownRole, role))
		}
		if ok, _ := dr.IsDelegatedPath(t.Path); !ok {
			return undo(fmt.Errorf("%w: %s may sign %s, not %s; add the image to another role or widen the delegation", ErrOutsideDelegation, role, strings.Join(dr.Paths, ", "), t.Path))
		}
	}
	dt, err := metadata.Targets().FromFile(ws.stagedRolePath(role))
	if err != nil {
		return undo(fmt.Errorf("read staged %s: %w", role, err))
	}
	dt.Signed.Targets[t.Path] = tf
	if err := writeMetadata(ws.stagedRolePath(role), dt); err != nil {
		return undo(err)
	}
	return t, writeMetadata(ws.stagedTargetsPath(), staged)
}

// Delegation describes who may sign what below the top-level targets.
type Delegation struct {
	Role      string    `json:"role"`
	Paths     []string  `json:"paths,omitempty"`
	Bins      int       `json:"bins,omitempty"` // hashed bins: how many
	KeyIDs    []string  `json:"keyids"`
	Threshold int       `json:"threshold"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires,omitzero"`
	Targets   int       `json:"targets"`
}

// Delegations lists the staged delegations with their published versions.
func (ws *Workspace) Delegations() ([]Delegation, error) {
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	d := staged.Signed.Delegations
	if d == nil {
		return nil, nil
	}
	pub := func(name string) (int64, time.Time, int) {
		n := 0
		if s, err := metadata.Targets().FromFile(ws.stagedRolePath(name)); err == nil {
			n = len(s.Signed.Targets)
		}
		if t, err := metadata.Targets().FromFile(filepath.Join(ws.Dir, "metadata", name+".json")); err == nil {
			return t.Signed.Version, t.Signed.Expires, n
		}
		return 0, time.Time{}, n
	}
	var out []Delegation
	for _, r := range d.Roles {
		v, exp, n := pub(r.Name)
		out = append(out, Delegation{Role: r.Name, Paths: r.Paths, KeyIDs: r.KeyIDs, Threshold: r.Threshold, Version: v, Expires: exp, Targets: n})
	}
	if s := d.SuccinctRoles; s != nil {
		dl := Delegation{Role: s.NamePrefix + "-*", Bins: 1 << s.BitLength, Paths: []string{"*"}, KeyIDs: s.KeyIDs, Threshold: s.Threshold}
		for _, name := range s.GetRoles() {
			v, exp, n := pub(name)
			dl.Version = max(dl.Version, v)
			if !exp.IsZero() && (dl.Expires.IsZero() || exp.Before(dl.Expires)) {
				dl.Expires = exp
			}
			dl.Targets += n
		}
		out = append(out, dl)
	}
	return out, nil
}
