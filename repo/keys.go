package repo

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/signer"
)

// keyRef is keys/ROLE-KEYID.ref: a key that lives outside the workspace's
// key files (a PKCS#11 token, or a key file elsewhere), named by URI.
type keyRef struct {
	Format int    `json:"fwctl_keyref"`
	Role   string `json:"role"`
	KeyID  string `json:"keyid"`
	URI    string `json:"uri"`
}

// localKey is a private key this workspace can reach, not yet unlocked.
type localKey struct {
	id   string
	desc string // for messages
	open func() (crypto.Signer, error)
}

// keyring loads the workspace's keys on demand and closes them after use.
type keyring struct {
	ws     *Workspace
	pin    func() ([]byte, error) // asked once per keyring
	byID   map[string]localKey
	opened map[string]crypto.Signer
}

func (ws *Workspace) keyring() (*keyring, error) {
	kr := &keyring{ws: ws, byID: map[string]localKey{}, opened: map[string]crypto.Signer{},
		pin: signer.PassphraseSource(signer.PINEnv, "PKCS#11 user PIN: ", false)}
	files, err := filepath.Glob(filepath.Join(ws.Dir, "keys", "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		kf, err := signer.ReadKeyFile(f)
		if err != nil {
			return nil, err
		}
		kr.byID[kf.KeyID] = localKey{id: kf.KeyID, desc: f, open: func() (crypto.Signer, error) {
			s, _, err := signer.Load(f, ws.Passphrase)
			return s, err
		}}
	}
	refs, err := filepath.Glob(filepath.Join(ws.Dir, "keys", "*.ref"))
	if err != nil {
		return nil, err
	}
	sort.Strings(refs)
	for _, f := range refs {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r keyRef
		if err := json.Unmarshal(b, &r); err != nil || r.KeyID == "" {
			return nil, fmt.Errorf("key reference %s is damaged (%v): remove it and add the key again with 'fwctl key add'", f, err)
		}
		if _, dup := kr.byID[r.KeyID]; dup {
			continue
		}
		uri := r.URI
		kr.byID[r.KeyID] = localKey{id: r.KeyID, desc: uri, open: func() (crypto.Signer, error) {
			return signer.Open(uri, signer.Options{Passphrase: ws.Passphrase, PIN: kr.pin})
		}}
	}
	return kr, nil
}

// signer returns the unlocked key id, or nil when this workspace cannot
// reach it (it lives on another machine or in a token not plugged in).
func (kr *keyring) signer(id string) (crypto.Signer, error) {
	if s, ok := kr.opened[id]; ok {
		return s, nil
	}
	lk, ok := kr.byID[id]
	if !ok {
		return nil, nil
	}
	s, err := lk.open()
	if errors.Is(err, signer.ErrKeyNotFound) {
		kr.opened[id] = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("key %s (%s): %w", id[:16], lk.desc, err)
	}
	if _, got, _ := signer.TUFKey(s.Public()); got != id {
		signer.Close(s)
		return nil, fmt.Errorf("key %s (%s) now holds a different key (%s): the reference is stale; remove it", id[:16], lk.desc, got[:16])
	}
	kr.opened[id] = s
	return s, nil
}

func (kr *keyring) close() {
	for _, s := range kr.opened {
		if s != nil {
			signer.Close(s)
		}
	}
}

// authority is who may sign a role: keys, the IDs that count, a threshold.
type authority struct {
	by        string // "root v3", "targets" — for messages
	keys      map[string]*metadata.Key
	keyIDs    []string
	threshold int
}

func rootAuthority(root *metadata.Metadata[metadata.RootType], role string) authority {
	r := root.Signed.Roles[role]
	a := authority{by: fmt.Sprintf("root v%d", root.Signed.Version), keys: root.Signed.Keys}
	if r != nil {
		a.keyIDs, a.threshold = r.KeyIDs, r.Threshold
	}
	return a
}

// delegatedAuthority returns who may sign the delegated role name according
// to the delegating targets metadata.
func delegatedAuthority(parent *metadata.Metadata[metadata.TargetsType], name string) (authority, bool) {
	d := parent.Signed.Delegations
	if d == nil {
		return authority{}, false
	}
	a := authority{by: "targets delegation", keys: d.Keys}
	for _, r := range d.Roles {
		if r.Name == name {
			a.keyIDs, a.threshold = r.KeyIDs, r.Threshold
			return a, true
		}
	}
	if d.SuccinctRoles != nil && d.SuccinctRoles.IsDelegatedRole(name) {
		a.keyIDs, a.threshold = d.SuccinctRoles.KeyIDs, d.SuccinctRoles.Threshold
		return a, true
	}
	return authority{}, false
}

// valid counts the distinct keys of a whose signatures over payload verify.
func (a authority) valid(payload []byte, sigs []metadata.Signature) int {
	n := 0
	for _, id := range a.keyIDs {
		k, ok := a.keys[id]
		if !ok {
			continue
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			continue
		}
		for _, s := range sigs {
			if s.KeyID == id && signer.Verify(pub, payload, s.Signature) == nil {
				n++
				break
			}
		}
	}
	return n
}

// verifySig checks one signature by key id against a.
func (a authority) verifySig(payload []byte, s metadata.Signature) error {
	if !slices.Contains(a.keyIDs, s.KeyID) {
		return fmt.Errorf("key %s is not one of the keys %s lists for this role", short16(s.KeyID), a.by)
	}
	pub, err := a.keys[s.KeyID].ToPublicKey()
	if err != nil {
		return err
	}
	return signer.Verify(pub, payload, s.Signature)
}

// signLocal adds signatures by every key of a that this workspace holds
// and that has not signed yet. It returns how many it added.
func (kr *keyring) signLocal(a authority, payload []byte, sigs *[]metadata.Signature) (int, error) {
	added := 0
	if kr == nil { // planning only: sign nothing
		return 0, nil
	}
	for _, id := range a.keyIDs {
		if slices.ContainsFunc(*sigs, func(s metadata.Signature) bool { return s.KeyID == id }) {
			continue
		}
		s, err := kr.signer(id)
		if err != nil {
			return added, err
		}
		if s == nil {
			continue
		}
		sig, err := signer.TUF(s).SignMessage(bytes.NewReader(payload))
		if err != nil {
			return added, fmt.Errorf("sign with key %s: %w", short16(id), err)
		}
		*sigs = append(*sigs, metadata.Signature{KeyID: id, Signature: sig})
		added++
	}
	return added, nil
}

func short16(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// canonical returns the canonical JSON bytes that signatures cover.
func canonical(signed any) ([]byte, error) {
	b, err := cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return b, nil
}

// KeyInfo describes a key added to the workspace.
type KeyInfo struct {
	Role      string `json:"role"`
	KeyID     string `json:"keyid"`
	Algorithm string `json:"algorithm"`
	URI       string `json:"uri,omitempty"`
	// Reused is set by GenerateKey when the key already existed (a TPM
	// handle that holds a key): it was opened, not created or replaced.
	Reused bool `json:"reused,omitempty"`
}

// ResolvePublic returns the TUF key for a key URI, or for a PEM public key
// file when uri is "pub:PATH" (a key that lives only on another machine).
func ResolvePublic(uri string, o signer.Options) (*metadata.Key, string, error) {
	var pub crypto.PublicKey
	if p, ok := strings.CutPrefix(uri, "pub:"); ok {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("public key: %w", err)
		}
		if pub, err = signer.ParsePublicPEM(b); err != nil {
			return nil, "", fmt.Errorf("%s: %w", p, err)
		}
	} else {
		r, err := signer.ParseRef(uri)
		if err != nil {
			return nil, "", err
		}
		if pub, err = r.Abs().Public(o); err != nil {
			return nil, "", err
		}
	}
	return signer.TUFKey(pub)
}

// addKeyRef records uri as where the workspace finds key id of role. A
// "pub:" URI records nothing: that key signs through the ceremony.
func (ws *Workspace) addKeyRef(role, id, uri string) error {
	if strings.HasPrefix(uri, "pub:") {
		return nil
	}
	r, err := signer.ParseRef(uri)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(keyRef{Format: 1, Role: role, KeyID: id, URI: r.Abs().String()}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(ws.Dir, "keys", role+"-"+id[:16]+".ref"), append(b, '\n'), 0o600)
}
