package tuf

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Role names of the top-level roles.
const (
	RoleRoot      = "root"
	RoleTimestamp = "timestamp"
	RoleSnapshot  = "snapshot"
	RoleTargets   = "targets"
)

// Signature is one entry of a metadata file's "signatures".
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Common holds the fields every role's "signed" has.
type Common struct {
	Type        string    `json:"_type"`
	SpecVersion string    `json:"spec_version"`
	Version     int64     `json:"version"`
	Expires     time.Time `json:"expires"`
}

// Key is a public key as TUF metadata lists it.
type Key struct {
	KeyType string `json:"keytype"`
	Scheme  string `json:"scheme"`
	KeyVal  struct {
		Public string `json:"public"`
	} `json:"keyval"`
}

// RoleKeys is a role's keys and threshold in root metadata.
type RoleKeys struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
}

// Root is root metadata's "signed".
type Root struct {
	Common
	ConsistentSnapshot bool                 `json:"consistent_snapshot"`
	Keys               map[string]*Key      `json:"keys"`
	Roles              map[string]*RoleKeys `json:"roles"`
}

// HexBytes is a hash written as hexadecimal.
type HexBytes []byte

// UnmarshalJSON decodes a hex string.
func (h *HexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hash %q is not hexadecimal", s)
	}
	*h = d
	return nil
}

// MarshalJSON encodes as a hex string.
func (h HexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// MetaFile describes a metadata file in timestamp or snapshot metadata.
type MetaFile struct {
	Version int64               `json:"version"`
	Length  int64               `json:"length,omitempty"`
	Hashes  map[string]HexBytes `json:"hashes,omitempty"`
}

// Timestamp is timestamp metadata's "signed".
type Timestamp struct {
	Common
	Meta map[string]*MetaFile `json:"meta"`
}

// Snapshot is snapshot metadata's "signed".
type Snapshot struct {
	Common
	Meta map[string]*MetaFile `json:"meta"`
}

// TargetFile is one target of targets metadata.
type TargetFile struct {
	Length int64               `json:"length"`
	Hashes map[string]HexBytes `json:"hashes"`
	Custom *json.RawMessage    `json:"custom,omitempty"`
	// Path is the target's path (the key it is listed under); set by the
	// lookup, not part of the JSON.
	Path string `json:"-"`
}

// DelegatedRole is one entry of a delegations' "roles".
type DelegatedRole struct {
	Name             string   `json:"name"`
	KeyIDs           []string `json:"keyids"`
	Threshold        int      `json:"threshold"`
	Terminating      bool     `json:"terminating"`
	Paths            []string `json:"paths,omitempty"`
	PathHashPrefixes []string `json:"path_hash_prefixes,omitempty"`
}

// SuccinctRoles is TAP 15's compact description of hashed bins.
type SuccinctRoles struct {
	KeyIDs     []string `json:"keyids"`
	Threshold  int      `json:"threshold"`
	BitLength  int      `json:"bit_length"`
	NamePrefix string   `json:"name_prefix"`
}

// Delegations is targets metadata's "delegations".
type Delegations struct {
	Keys          map[string]*Key `json:"keys"`
	Roles         []DelegatedRole `json:"roles,omitempty"`
	SuccinctRoles *SuccinctRoles  `json:"succinct_roles,omitempty"`
}

// Targets is targets metadata's "signed" (top-level or delegated).
type Targets struct {
	Common
	Targets     map[string]*TargetFile `json:"targets"`
	Delegations *Delegations           `json:"delegations,omitempty"`
	// Director is fwctl's director binding (manifests.DirectorBinding), an
	// added field as TUF allows, kept for agent/director to check.
	Director json.RawMessage `json:"director,omitempty"`
}

// envelope is a parsed metadata file: its signatures and the canonical
// bytes of "signed" they cover.
type envelope struct {
	signatures []Signature
	canonical  []byte
}

// parse splits metadata file b, checks that "signed" is of type typ, and
// decodes it into out (a *Root, *Timestamp, *Snapshot or *Targets).
func parse(file string, b []byte, typ string, out any) (*envelope, error) {
	v, err := decodeValue(b)
	if err != nil {
		return nil, fail(file, ErrMalformed, "not JSON: %v", err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fail(file, ErrMalformed, "not a JSON object")
	}
	signed, ok := doc["signed"].(map[string]any)
	if !ok {
		return nil, fail(file, ErrMalformed, `no "signed" object`)
	}
	rawSigs, ok := doc["signatures"].([]any)
	if !ok {
		return nil, fail(file, ErrMalformed, `no "signatures" list`)
	}
	if got, _ := signed["_type"].(string); got != typ {
		return nil, fail(file, ErrMalformed, "type %q, want %q", got, typ)
	}
	env := &envelope{}
	if env.canonical, err = encodeCanonical(signed); err != nil {
		return nil, fail(file, ErrMalformed, "%v", err)
	}
	for _, s := range rawSigs {
		m, ok := s.(map[string]any)
		if !ok {
			return nil, fail(file, ErrMalformed, "a signature is not an object")
		}
		id, ok1 := m["keyid"].(string)
		sig, ok2 := m["sig"].(string)
		if !ok1 || !ok2 {
			return nil, fail(file, ErrMalformed, "a signature lacks keyid or sig")
		}
		env.signatures = append(env.signatures, Signature{KeyID: id, Sig: sig})
	}
	// The struct is decoded from the same bytes (integers exactly; the
	// canonical form is not JSON when strings hold control characters,
	// as PEM keys do).
	var raw struct {
		Signed json.RawMessage `json:"signed"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fail(file, ErrMalformed, "%v", err)
	}
	if err := json.Unmarshal(raw.Signed, out); err != nil {
		return nil, fail(file, ErrMalformed, "%v", err)
	}
	return env, nil
}

func checkCommon(file string, c *Common) error {
	if c.Version < 1 {
		return fail(file, ErrMalformed, "version %d, must be 1 or more", c.Version)
	}
	if c.Expires.IsZero() {
		return fail(file, ErrMalformed, "no expiry date")
	}
	if major, _, _ := strings.Cut(c.SpecVersion, "."); major != "1" {
		return fail(file, ErrMalformed, "spec_version %q: this client implements TUF 1.x", c.SpecVersion)
	}
	return nil
}

// ParseRoot parses root metadata (signatures are not checked).
func ParseRoot(b []byte) (*Root, error) {
	r, _, err := parseRoot("root.json", b)
	return r, err
}

func parseRoot(file string, b []byte) (*Root, *envelope, error) {
	var r Root
	env, err := parse(file, b, RoleRoot, &r)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCommon(file, &r.Common); err != nil {
		return nil, nil, err
	}
	for _, name := range []string{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets} {
		if err := checkRoleKeys(file, name, r.Roles[name], r.Keys); err != nil {
			return nil, nil, err
		}
	}
	return &r, env, nil
}

func checkRoleKeys(file, name string, rk *RoleKeys, keys map[string]*Key) error {
	if rk == nil {
		return fail(file, ErrMalformed, "no role %q", name)
	}
	if rk.Threshold < 1 {
		return fail(file, ErrMalformed, "role %q has threshold %d, must be 1 or more", name, rk.Threshold)
	}
	seen := map[string]bool{}
	for _, id := range rk.KeyIDs {
		if seen[id] {
			return fail(file, ErrMalformed, "role %q lists key %s twice", name, id)
		}
		seen[id] = true
		// A key ID without a key is tolerated, as python-tuf does: it
		// just cannot sign.
	}
	return nil
}

// ParseTimestamp parses timestamp metadata (signatures are not checked).
func ParseTimestamp(b []byte) (*Timestamp, error) {
	t, _, err := parseTimestamp("timestamp.json", b)
	return t, err
}

func parseTimestamp(file string, b []byte) (*Timestamp, *envelope, error) {
	var t Timestamp
	env, err := parse(file, b, RoleTimestamp, &t)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCommon(file, &t.Common); err != nil {
		return nil, nil, err
	}
	if len(t.Meta) != 1 || t.Meta["snapshot.json"] == nil {
		return nil, nil, fail(file, ErrMalformed, `meta must list exactly "snapshot.json"`)
	}
	if err := checkMeta(file, t.Meta); err != nil {
		return nil, nil, err
	}
	return &t, env, nil
}

// ParseSnapshot parses snapshot metadata (signatures are not checked).
func ParseSnapshot(b []byte) (*Snapshot, error) {
	s, _, err := parseSnapshot("snapshot.json", b)
	return s, err
}

func parseSnapshot(file string, b []byte) (*Snapshot, *envelope, error) {
	var s Snapshot
	env, err := parse(file, b, RoleSnapshot, &s)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCommon(file, &s.Common); err != nil {
		return nil, nil, err
	}
	if err := checkMeta(file, s.Meta); err != nil {
		return nil, nil, err
	}
	return &s, env, nil
}

func checkMeta(file string, meta map[string]*MetaFile) error {
	for name, m := range meta {
		if m == nil || m.Version < 1 || m.Length < 0 {
			return fail(file, ErrMalformed, "meta entry %s needs a version of 1 or more and a non-negative length", name)
		}
	}
	return nil
}

// ParseTargets parses targets metadata (signatures are not checked).
func ParseTargets(b []byte) (*Targets, error) {
	t, _, err := parseTargets("targets.json", b)
	return t, err
}

func parseTargets(file string, b []byte) (*Targets, *envelope, error) {
	var t Targets
	env, err := parse(file, b, RoleTargets, &t)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCommon(file, &t.Common); err != nil {
		return nil, nil, err
	}
	for p, tf := range t.Targets {
		if tf == nil || tf.Length < 0 || len(tf.Hashes) == 0 {
			return nil, nil, fail(file, ErrMalformed, "target %s needs a non-negative length and hashes", p)
		}
	}
	if d := t.Delegations; d != nil {
		if err := checkDelegations(file, d); err != nil {
			return nil, nil, err
		}
	}
	return &t, env, nil
}

func checkDelegations(file string, d *Delegations) error {
	if (d.Roles == nil) == (d.SuccinctRoles == nil) {
		return fail(file, ErrMalformed, "delegations need exactly one of roles and succinct_roles")
	}
	seen := map[string]bool{}
	for i := range d.Roles {
		r := &d.Roles[i]
		if seen[r.Name] || r.Name == "" {
			return fail(file, ErrMalformed, "delegated role name %q empty or used twice", r.Name)
		}
		seen[r.Name] = true
		switch r.Name {
		case RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets:
			return fail(file, ErrMalformed, "a delegated role may not be named %q", r.Name)
		}
		if (r.Paths == nil) == (r.PathHashPrefixes == nil) {
			return fail(file, ErrMalformed, "delegated role %s needs exactly one of paths and path_hash_prefixes", r.Name)
		}
		if err := checkRoleKeys(file, r.Name, &RoleKeys{KeyIDs: r.KeyIDs, Threshold: r.Threshold}, d.Keys); err != nil {
			return err
		}
	}
	if s := d.SuccinctRoles; s != nil {
		if s.BitLength < 1 || s.BitLength > 32 {
			return fail(file, ErrMalformed, "succinct_roles bit_length %d, must be 1 to 32", s.BitLength)
		}
		if err := checkRoleKeys(file, s.NamePrefix+"-*", &RoleKeys{KeyIDs: s.KeyIDs, Threshold: s.Threshold}, d.Keys); err != nil {
			return err
		}
	}
	return nil
}
