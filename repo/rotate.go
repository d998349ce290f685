package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/signer"
)

// ErrUnknownRole means a role name is neither a top-level role nor a
// delegated role of this workspace.
var ErrUnknownRole = errors.New("unknown role")

// RootChange reports a staged change to the root or to a delegation.
type RootChange struct {
	Role        string   `json:"role"`
	RootVersion int64    `json:"root_version,omitempty"` // the staged root version (top-level roles)
	Added       []string `json:"added,omitempty"`
	Revoked     []string `json:"revoked,omitempty"`
	Threshold   int      `json:"threshold"`
	KeyIDs      []string `json:"keyids"`
}

func isTopLevel(role string) bool { return slices.Contains(Roles, role) }

// editRoot applies fn to the next root version, pending/root.json, creating
// it from the current root (version + 1, fresh expiry) on first use. Any
// signature already collected on it is dropped: the bytes changed.
func (ws *Workspace) editRoot(fn func(*metadata.RootType) error) (*metadata.Metadata[metadata.RootType], error) {
	cur, err := ws.Root()
	if err != nil {
		return nil, err
	}
	next, err := metadata.Root().FromFile(ws.pendingPath(metadata.ROOT))
	if errors.Is(err, os.ErrNotExist) || (err == nil && next.Signed.Version <= cur.Signed.Version) {
		// None, or one a publish recorded before it stopped: start
		// from the current root.
		next = cur
		next.Signed.Version++
	} else if err != nil {
		return nil, fmt.Errorf("read pending root: %w", err)
	}
	next.Signed.Expires = expires(ws.Now(), ws.expiry(metadata.ROOT))
	if err := fn(&next.Signed); err != nil {
		return nil, err
	}
	for r, role := range next.Signed.Roles {
		if len(role.KeyIDs) < role.Threshold {
			return nil, fmt.Errorf("role %s would have %d keys but needs %d signatures: add keys first or lower the threshold", r, len(role.KeyIDs), role.Threshold)
		}
	}
	next.ClearSignatures()
	if err := os.MkdirAll(filepath.Join(ws.Dir, "pending"), 0o700); err != nil {
		return nil, err
	}
	// Targets and delegations signed before this change are re-planned.
	return next, writeMetadata(ws.pendingPath(metadata.ROOT), next)
}

// editDelegation applies fn to the delegated role name in the staged
// top-level targets.
func (ws *Workspace) editDelegation(name string, fn func(d *metadata.Delegations, r *metadata.DelegatedRole) error) error {
	staged, err := ws.stagedTargets()
	if err != nil {
		return err
	}
	d := staged.Signed.Delegations
	if d == nil {
		return fmt.Errorf("%w %q: not a top-level role (root, targets, snapshot, timestamp) and no delegations exist; create one with 'fwctl delegate add'", ErrUnknownRole, name)
	}
	var role *metadata.DelegatedRole
	for i := range d.Roles {
		if d.Roles[i].Name == name {
			role = &d.Roles[i]
		}
	}
	if role == nil {
		return fmt.Errorf("%w %q: not a top-level or delegated role", ErrUnknownRole, name)
	}
	if err := fn(d, role); err != nil {
		return err
	}
	if len(role.KeyIDs) < role.Threshold {
		return fmt.Errorf("delegated role %s would have %d keys but needs %d signatures", name, len(role.KeyIDs), role.Threshold)
	}
	pruneDelegationKeys(d)
	return writeMetadata(ws.stagedTargetsPath(), staged)
}

func pruneDelegationKeys(d *metadata.Delegations) {
	used := map[string]bool{}
	for _, r := range d.Roles {
		for _, id := range r.KeyIDs {
			used[id] = true
		}
	}
	if d.SuccinctRoles != nil {
		for _, id := range d.SuccinctRoles.KeyIDs {
			used[id] = true
		}
	}
	for id := range d.Keys {
		if !used[id] {
			delete(d.Keys, id)
		}
	}
}

// RotateOptions describe a key change of one role, made in one new root
// version (or one targets version for a delegated role).
type RotateOptions struct {
	// Add are key URIs (file:, pkcs11:, or pub:PEMFILE for a key that lives
	// on another machine) to authorise.
	Add []string
	// Revoke are key IDs (or unique prefixes of at least 8 characters), or
	// key URIs (file:, pkcs11:, pub:PEMFILE), of keys to remove.
	Revoke []string
	// Threshold, when > 0, sets the role's threshold.
	Threshold int
}

// Rotate changes a role's keys and threshold. For a top-level role it
// stages root version N+1 (pending/root.json); the next publish signs it with
// the keys of N and of N+1 that this workspace holds, and refuses until both
// thresholds are met (the rest comes through the ceremony). Targets are then
// re-signed under the new root. For a delegated role the staged top-level
// targets changes instead.
func (ws *Workspace) Rotate(role string, opt RotateOptions) (*RootChange, error) {
	if len(opt.Add) == 0 && len(opt.Revoke) == 0 && opt.Threshold <= 0 {
		return nil, errors.New("nothing to change: give keys to add, keys to revoke, or a threshold")
	}
	type newKey struct {
		key *metadata.Key
		id  string
		uri string
	}
	var adds []newKey
	for _, uri := range opt.Add {
		k, id, err := ResolvePublic(uri, signer.Options{Passphrase: ws.Passphrase})
		if err != nil {
			return nil, fmt.Errorf("add key %s: %w", uri, err)
		}
		adds = append(adds, newKey{k, id, uri})
	}
	ch := &RootChange{Role: role}
	resolve := func(ids []string, prefix string) (string, error) {
		var match []string
		for _, id := range ids {
			if len(prefix) >= 8 && strings.HasPrefix(id, prefix) {
				match = append(match, id)
			}
		}
		if len(match) != 1 {
			return "", fmt.Errorf("revoke %q: matches %d keys of %s (use at least 8 characters of a key ID listed by 'fwctl status')", prefix, len(match), role)
		}
		return match[0], nil
	}
	apply := func(keyIDs *[]string, threshold *int, addKey func(*metadata.Key, string) error) error {
		for _, p := range opt.Revoke {
			if strings.Contains(p, ":") {
				_, full, err := ResolvePublic(p, signer.Options{Passphrase: ws.Passphrase})
				if err != nil {
					return fmt.Errorf("revoke %s: %w", p, err)
				}
				p = full
			}
			id, err := resolve(*keyIDs, p)
			if err != nil {
				return err
			}
			*keyIDs = slices.DeleteFunc(*keyIDs, func(s string) bool { return s == id })
			ch.Revoked = append(ch.Revoked, id)
		}
		for _, a := range adds {
			if slices.Contains(*keyIDs, a.id) {
				return fmt.Errorf("key %s is already a %s key", short16(a.id), role)
			}
			if err := addKey(a.key, a.id); err != nil {
				return err
			}
			ch.Added = append(ch.Added, a.id)
		}
		if opt.Threshold > 0 {
			*threshold = opt.Threshold
		}
		ch.Threshold, ch.KeyIDs = *threshold, append([]string(nil), *keyIDs...)
		return nil
	}
	if isTopLevel(role) {
		next, err := ws.editRoot(func(r *metadata.RootType) error {
			rr := r.Roles[role]
			return apply(&rr.KeyIDs, &rr.Threshold, func(k *metadata.Key, id string) error {
				return r.AddKey(k, role)
			})
		})
		if err != nil {
			return nil, err
		}
		// RevokeKey semantics: drop keys no role uses any more.
		ch.RootVersion = next.Signed.Version
		pruneRootKeys(next)
		if err := writeMetadata(ws.pendingPath(metadata.ROOT), next); err != nil {
			return nil, err
		}
	} else {
		err := ws.editDelegation(role, func(d *metadata.Delegations, r *metadata.DelegatedRole) error {
			return apply(&r.KeyIDs, &r.Threshold, func(k *metadata.Key, id string) error {
				d.Keys[id] = k
				r.KeyIDs = append(r.KeyIDs, id)
				return nil
			})
		})
		if err != nil {
			return nil, err
		}
	}
	for _, a := range adds {
		if err := ws.addKeyRef(role, a.id, a.uri); err != nil {
			return nil, err
		}
	}
	return ch, nil
}

func pruneRootKeys(root *metadata.Metadata[metadata.RootType]) {
	used := map[string]bool{}
	for _, r := range root.Signed.Roles {
		for _, id := range r.KeyIDs {
			used[id] = true
		}
	}
	for id := range root.Signed.Keys {
		if !used[id] {
			delete(root.Signed.Keys, id)
		}
	}
}

// GenerateKey creates a new private key where uri says: an encrypted key
// file (file:PATH, encrypted with passphrase, or plaintext when passphrase
// is nil) or a PKCS#11 token (pkcs11:token=…;object=…). It returns the key
// ID and public key; the key can then be added to a role by URI.
//
// It never replaces a key: an existing key file is refused, and a tpm: URI
// whose handle already holds a key returns that key with Reused set.
func GenerateKey(uri, role, alg string, passphrase func() ([]byte, error), o signer.Options) (*KeyInfo, []byte, error) {
	r, err := signer.ParseRef(uri)
	if err != nil {
		return nil, nil, err
	}
	r = r.Abs()
	var pub any
	reused := false
	switch r.Scheme {
	case "file":
		if _, err := os.Stat(r.Path); err == nil {
			return nil, nil, fmt.Errorf("%s exists: refusing to overwrite a key; choose a new path", r.Path)
		}
		k, err := signer.Generate(alg)
		if err != nil {
			return nil, nil, err
		}
		var pw []byte
		if passphrase != nil {
			if pw, err = passphrase(); err != nil {
				return nil, nil, err
			}
		}
		if err := os.MkdirAll(filepath.Dir(r.Path), 0o700); err != nil {
			return nil, nil, err
		}
		if _, err := signer.Save(r.Path, role, k, pw); err != nil {
			return nil, nil, err
		}
		pub = k.Public()
	case "tpm":
		s, created, err := signer.GenerateTPM(r, alg)
		if err != nil {
			return nil, nil, err
		}
		pub, reused = s.Public(), !created
		signer.Close(s)
	case "pkcs11":
		s, err := signer.GeneratePKCS11(r, alg, o)
		if err != nil {
			return nil, nil, err
		}
		pub = s.Public()
		signer.Close(s)
	}
	_, id, err := signer.TUFKey(pub)
	if err != nil {
		return nil, nil, err
	}
	pemb, err := signer.PublicPEM(pub)
	if err != nil {
		return nil, nil, err
	}
	return &KeyInfo{Role: role, KeyID: id, Algorithm: signer.Algorithm(pub), URI: r.String(), Reused: reused}, pemb, nil
}

// RenewRoot stages the next root version with a fresh expiry and no other
// change (publish, or the ceremony, then signs it).
func (ws *Workspace) RenewRoot() (int64, error) {
	next, err := ws.editRoot(func(*metadata.RootType) error { return nil })
	if err != nil {
		return 0, err
	}
	return next.Signed.Version, nil
}
