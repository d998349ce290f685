package tuf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxDelegations bounds how many delegated roles one target lookup
// visits after the top-level targets (as python-tuf's max_delegations).
const MaxDelegations = 32

// Source gives the bytes of delegated metadata: cached ones first, then
// fetched (the client's I/O; this package only verifies).
type Source interface {
	// Cached returns the locally stored bytes of role's metadata, or nil.
	Cached(role string) []byte
	// Fetch downloads the given version of role's metadata, at most
	// maxLength bytes.
	Fetch(role string, version, maxLength int64) ([]byte, error)
	// Store keeps verified bytes for the next update cycle.
	Store(role string, b []byte) error
}

// child is one role a delegator delegates a path to.
type child struct {
	name        string
	terminating bool
	keyIDs      []string
	threshold   int
}

// delegatesTo lists, in order, d's roles whose paths cover target.
func (d *Delegations) delegatesTo(target string) []child {
	if s := d.SuccinctRoles; s != nil {
		return []child{{name: s.roleFor(target), terminating: true, keyIDs: s.KeyIDs, threshold: s.Threshold}}
	}
	var out []child
	for _, r := range d.Roles {
		if r.covers(target) {
			out = append(out, child{name: r.Name, terminating: r.Terminating, keyIDs: r.KeyIDs, threshold: r.Threshold})
		}
	}
	return out
}

// roleFor is the hashed bin holding target: the first BitLength bits of
// the SHA-256 of its path, in hex as wide as the largest bin number.
func (s *SuccinctRoles) roleFor(target string) string {
	h := sha256.Sum256([]byte(target))
	bin := binary.BigEndian.Uint32(h[:4]) >> (32 - s.BitLength)
	return s.binName(bin)
}

func (s *SuccinctRoles) binName(bin uint32) string {
	width := len(fmt.Sprintf("%x", uint64(1)<<s.BitLength-1))
	return fmt.Sprintf("%s-%0*x", s.NamePrefix, width, bin)
}

// covers reports whether r is delegated target: a path pattern matching
// it segment by segment ('*' never crosses '/'), or a prefix of the hex
// SHA-256 of the path.
func (r *DelegatedRole) covers(target string) bool {
	if r.PathHashPrefixes != nil {
		h := sha256.Sum256([]byte(target))
		hx := hex.EncodeToString(h[:])
		for _, p := range r.PathHashPrefixes {
			if strings.HasPrefix(hx, p) {
				return true
			}
		}
		return false
	}
	for _, p := range r.Paths {
		if PathMatch(p, target) {
			return true
		}
	}
	return false
}

// PathMatch matches target against a TUF path pattern: both split at '/'
// into the same number of segments, each matching as a shell glob
// (fnmatch: '*', '?', '[seq]', '[!seq]').
func PathMatch(pattern, target string) bool {
	ps, ts := strings.Split(pattern, "/"), strings.Split(target, "/")
	if len(ps) != len(ts) {
		return false
	}
	for i := range ps {
		if !fnmatch([]rune(ps[i]), []rune(ts[i])) {
			return false
		}
	}
	return true
}

// fnmatch is Python's fnmatch.fnmatchcase for one path segment.
func fnmatch(p, s []rune) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if len(p) == 0 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if fnmatch(p, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			p, s = p[1:], s[1:]
		case '[':
			ok, rest, isClass := matchClass(p, s)
			if !isClass {
				if len(s) == 0 || s[0] != '[' {
					return false
				}
				p, s = p[1:], s[1:]
				continue
			}
			if !ok {
				return false
			}
			p, s = rest, s[1:]
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

// matchClass matches s[0] against the bracket expression p starts with.
// isClass is false when the '[' has no closing ']' (it is then a literal).
func matchClass(p, s []rune) (ok bool, rest []rune, isClass bool) {
	j := 1
	if j < len(p) && p[j] == '!' {
		j++
	}
	if j < len(p) && p[j] == ']' {
		j++
	}
	for j < len(p) && p[j] != ']' {
		j++
	}
	if j >= len(p) {
		return false, nil, false
	}
	class, rest := p[1:j], p[j+1:]
	if len(s) == 0 {
		return false, rest, true
	}
	neg := len(class) > 0 && class[0] == '!'
	if neg {
		class = class[1:]
	}
	c, hit := s[0], false
	for i := 0; i < len(class); i++ {
		if i+2 < len(class) && class[i+1] == '-' {
			if class[i] <= c && c <= class[i+2] {
				hit = true
			}
			i += 2
			continue
		}
		if class[i] == c {
			hit = true
		}
	}
	return hit != neg, rest, true
}

// FindTarget looks target up (5.6.7): a preorder depth-first search of the
// delegation graph from the top-level targets, in each delegator's role
// order, stopping at a terminating role, visiting each role at most once
// and at most MaxDelegations roles. Every delegated role is verified
// against the delegation through which the search reached it.
func (t *Trusted) FindTarget(target string, src Source) (*TargetFile, error) {
	if t.Targets == nil {
		return nil, fmt.Errorf("tuf: no trusted targets")
	}
	type visit struct {
		role, delegator string
		parent          *Targets // the delegator, as verified on this path
		c               child
	}
	stack := []visit{{role: RoleTargets}}
	visited := map[string]bool{}
	for len(stack) > 0 {
		if len(visited) > MaxDelegations {
			return nil, fail("targets/"+target, ErrDelegation, "searched %d roles without finding it (at most %d)", len(visited), MaxDelegations)
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[v.role] {
			continue
		}
		tg := t.Targets
		if v.role != RoleTargets {
			var err error
			if tg, err = t.delegatedRole(v.role, v.delegator, v.parent, v.c, src); err != nil {
				return nil, err
			}
		}
		if tf := tg.Targets[target]; tf != nil {
			out := *tf
			out.Path = target
			return &out, nil
		}
		visited[v.role] = true
		if tg.Delegations == nil {
			continue
		}
		var next []visit
		for _, c := range tg.Delegations.delegatesTo(target) {
			next = append(next, visit{role: c.name, delegator: v.role, parent: tg, c: c})
			if c.terminating {
				stack = stack[:0]
				break
			}
		}
		for i := len(next) - 1; i >= 0; i-- {
			stack = append(stack, next[i])
		}
	}
	return nil, fail("targets/"+target, ErrNotFound, "no trusted role lists it")
}

// delegatedRole returns role as delegated by delegator through c, verified
// against c's keys and threshold.
func (t *Trusted) delegatedRole(role, delegator string, parent *Targets, c child, src Source) (*Targets, error) {
	edge := delegator + "\x00" + role
	if tg := t.delegated[edge]; tg != nil {
		return tg, nil
	}
	keys := parent.Delegations.Keys
	verify := func(b []byte) (*Targets, error) {
		tg, err := t.verifyTargets(role, b, c.keyIDs, c.threshold, keys)
		if err != nil {
			return nil, err
		}
		if t.delegated == nil {
			t.delegated, t.roleBytes = map[string]*Targets{}, map[string][]byte{}
		}
		t.delegated[edge] = tg
		return tg, nil
	}
	if b := t.roleBytes[role]; b != nil {
		tg, err := verify(b)
		if err != nil {
			return nil, fmt.Errorf("as delegated by %s: %w", delegator, err)
		}
		return tg, nil
	}
	if b := src.Cached(role); b != nil {
		if tg, err := verify(b); err == nil {
			t.roleBytes[role] = b
			return tg, nil
		}
	}
	meta, err := t.RoleMeta(role)
	if err != nil {
		return nil, err
	}
	b, err := src.Fetch(role, meta.Version, meta.Length)
	if err != nil {
		return nil, err
	}
	tg, err := verify(b)
	if err != nil {
		return nil, fmt.Errorf("as delegated by %s: %w", delegator, err)
	}
	t.roleBytes[role] = b
	if err := src.Store(role, b); err != nil {
		return nil, err
	}
	return tg, nil
}

// MaxListRoles bounds how many roles Offered loads (16384 hashed bins and
// some named roles).
const MaxListRoles = 1 << 15

// Offered returns every top-level target and every delegated target whose
// path starts with prefix ("" for all) that a lookup resolves, with the entry the lookup picks (role order,
// terminating roles and path patterns decide, as for FindTarget). It loads
// every role that could list such a path: roles with path patterns whose
// first segment cannot match prefix's are skipped.
func (t *Trusted) Offered(prefix string, src Source) (map[string]*TargetFile, error) {
	if t.Targets == nil {
		return nil, fmt.Errorf("tuf: no trusted targets")
	}
	first, _, _ := strings.Cut(prefix, "/")
	paths := map[string]bool{}
	type visit struct {
		role, delegator string
		parent          *Targets
		c               child
	}
	stack := []visit{{role: RoleTargets}}
	visited := map[string]bool{}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[v.role] {
			continue
		}
		if len(visited) >= MaxListRoles {
			return nil, fail("targets.json", ErrDelegation, "more than %d delegated roles", MaxListRoles)
		}
		visited[v.role] = true
		tg := t.Targets
		if v.role != RoleTargets {
			var err error
			if tg, err = t.delegatedRole(v.role, v.delegator, v.parent, v.c, src); err != nil {
				return nil, err
			}
		}
		for p := range tg.Targets {
			if v.role == RoleTargets || strings.HasPrefix(p, prefix) {
				paths[p] = true
			}
		}
		d := tg.Delegations
		if d == nil {
			continue
		}
		if s := d.SuccinctRoles; s != nil {
			for bin := uint64(0); bin < 1<<s.BitLength; bin++ {
				stack = append(stack, visit{role: s.binName(uint32(bin)), delegator: v.role, parent: tg,
					c: child{name: s.binName(uint32(bin)), terminating: true, keyIDs: s.KeyIDs, threshold: s.Threshold}})
				if len(stack) > MaxListRoles {
					return nil, fail(v.role+".json", ErrDelegation, "more than %d delegated roles", MaxListRoles)
				}
			}
			continue
		}
		for i := len(d.Roles) - 1; i >= 0; i-- {
			r := &d.Roles[i]
			if prefix != "" && r.Paths != nil && !r.mayCover(first) {
				continue
			}
			stack = append(stack, visit{role: r.Name, delegator: v.role, parent: tg,
				c: child{name: r.Name, terminating: r.Terminating, keyIDs: r.KeyIDs, threshold: r.Threshold}})
		}
	}
	out := map[string]*TargetFile{}
	for p := range paths {
		tf, err := t.FindTarget(p, src)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && (e.Kind == ErrNotFound || e.Kind == ErrDelegation) {
				continue // listed by a role the lookup does not reach for it
			}
			return nil, err
		}
		out[p] = tf
	}
	return out, nil
}

// mayCover reports whether one of r's path patterns can match a path whose
// first segment is first.
func (r *DelegatedRole) mayCover(first string) bool {
	for _, p := range r.Paths {
		head, _, _ := strings.Cut(p, "/")
		if fnmatch([]rune(head), []rune(first)) {
			return true
		}
	}
	return false
}
