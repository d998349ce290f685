package repo

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/signer"
)

// The offline ceremony: a workspace exports a signing request holding the
// exact canonical bytes each incomplete role needs signed; an air-gapped
// fwctl reviews it (a summary computed from those bytes, never taken from
// the request) and signs it with its key; the signature files are imported
// into the workspace and publish goes through once every threshold is met.

// RequestFormat and SignaturesFormat are the file format versions.
const (
	RequestFormat    = 1
	SignaturesFormat = 1
)

// Request is a signing request file.
type Request struct {
	Format  int           `json:"fwctl_signing_request"`
	Created time.Time     `json:"created"`
	Roles   []RequestRole `json:"roles"`
}

// RequestRole is one role's metadata awaiting signatures.
type RequestRole struct {
	Role    string `json:"role"`
	Version int64  `json:"version"`
	// Signed is the exact canonical JSON the signatures cover.
	Signed []byte `json:"signed"`
	SHA256 string `json:"sha256"`
	// Previous is the canonical JSON of the version it replaces, so that
	// the reviewer sees what changes (empty for a first version).
	Previous []byte `json:"previous,omitempty"`
	// Keys are the public keys whose signatures count.
	Keys map[string]*metadata.Key `json:"keys"`
	// Missing says how many signatures each authority still needs.
	Missing []Missing `json:"missing"`
}

// SignatureFile holds signatures made by one key over a request.
type SignatureFile struct {
	Format     int             `json:"fwctl_signatures"`
	KeyID      string          `json:"keyid"`
	Signatures []RoleSignature `json:"signatures"`
}

// RoleSignature is one signature over one role's request bytes.
type RoleSignature struct {
	Role    string            `json:"role"`
	Version int64             `json:"version"`
	SHA256  string            `json:"sha256"`
	KeyID   string            `json:"keyid"`
	Sig     metadata.HexBytes `json:"sig"`
}

// ErrNothingToSign means every role already meets its threshold.
var ErrNothingToSign = errors.New("nothing to sign: every role meets its threshold; run 'fwctl publish'")

// ExportRequest signs what this workspace's keys can sign, freezes the
// incomplete roles under pending/ and returns a request for the rest.
func (ws *Workspace) ExportRequest() (*Request, error) {
	kr, err := ws.keyring()
	if err != nil {
		return nil, err
	}
	defer kr.close()
	pl, err := ws.plan(kr, ws.expiry, false)
	if err != nil {
		return nil, err
	}
	if err := ws.savePending(pl); err != nil {
		return nil, err
	}
	req := &Request{Format: RequestFormat, Created: ws.Now().UTC()}
	for _, p := range pl.all() {
		miss := p.missing()
		if len(miss) == 0 {
			continue
		}
		u := unionAuthority(p.auth)
		var prev []byte
		if p.prev != nil {
			prev = p.prev()
		}
		sum := sha256.Sum256(p.payload)
		req.Roles = append(req.Roles, RequestRole{Role: p.role, Version: p.version(), Signed: p.payload,
			SHA256: hex.EncodeToString(sum[:]), Previous: prev, Keys: u.keys, Missing: miss})
	}
	if len(req.Roles) == 0 {
		return nil, ErrNothingToSign
	}
	return req, nil
}

// ParseRequest reads a signing request and checks that every role's bytes
// are canonical metadata of the role's type with the stated version and
// digest.
func ParseRequest(b []byte) (*Request, error) {
	var req Request
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("not a fwctl signing request: %w", err)
	}
	if req.Format != RequestFormat {
		return nil, fmt.Errorf("signing request format %d, this fwctl reads %d: use the same fwctl version on both machines", req.Format, RequestFormat)
	}
	for _, rr := range req.Roles {
		sum := sha256.Sum256(rr.Signed)
		if hex.EncodeToString(sum[:]) != rr.SHA256 {
			return nil, fmt.Errorf("request for %s: sha256 of the bytes does not match: the file was modified", rr.Role)
		}
		if _, err := decodeSigned(rr.Role, rr.Signed, rr.Version); err != nil {
			return nil, fmt.Errorf("request for %s: %w", rr.Role, err)
		}
	}
	return &req, nil
}

// decodeSigned parses canonical signed bytes as root or targets metadata and
// checks they are canonical and of the given version.
func decodeSigned(role string, canon []byte, version int64) (any, error) {
	b := canonicalToJSON(canon)
	var v any
	var ver int64
	var typ string
	if role == metadata.ROOT {
		var r metadata.RootType
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		v, ver, typ = &r, r.Version, r.Type
	} else {
		var t metadata.TargetsType
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, err
		}
		v, ver, typ = &t, t.Version, t.Type
	}
	want := metadata.TARGETS
	if role == metadata.ROOT {
		want = metadata.ROOT
	}
	if typ != want {
		return nil, fmt.Errorf("bytes are %q metadata, want %q", typ, want)
	}
	if ver != version {
		return nil, fmt.Errorf("bytes are version %d, request says %d", ver, version)
	}
	again, err := canonical(v)
	if err != nil || string(again) != string(canon) {
		return nil, errors.New("bytes are not canonical JSON: refusing to sign what cannot be reviewed exactly")
	}
	return v, nil
}

// Summary describes, for a human reviewer, what signing a role changes. It
// is computed from the bytes to be signed and the previous version the
// request carries. The previous version is the requesting workspace's
// claim, so with all set every target is listed, not only the new ones.
func (rr RequestRole) Summary(all bool) []string {
	cur, err := decodeSigned(rr.Role, rr.Signed, rr.Version)
	if err != nil {
		return []string{"UNREADABLE: " + err.Error()}
	}
	var prev any
	if len(rr.Previous) > 0 {
		prev, _ = decodeSigned(rr.Role, rr.Previous, rr.Version-1)
	}
	var out []string
	switch c := cur.(type) {
	case *metadata.RootType:
		out = append(out, fmt.Sprintf("root version %d, expires %s", c.Version, c.Expires.UTC().Format(time.RFC3339)))
		p, _ := prev.(*metadata.RootType)
		for _, role := range Roles {
			r := c.Roles[role]
			if r == nil {
				continue
			}
			var was *metadata.Role
			if p != nil {
				was = p.Roles[role]
			}
			out = append(out, diffKeys(role, r.KeyIDs, r.Threshold, was)...)
		}
	case *metadata.TargetsType:
		out = append(out, fmt.Sprintf("%s version %d, expires %s, %d targets", rr.Role, c.Version, c.Expires.UTC().Format(time.RFC3339), len(c.Targets)))
		p, _ := prev.(*metadata.TargetsType)
		var paths []string
		for path := range c.Targets {
			paths = append(paths, path)
		}
		sort.Strings(paths)
		for _, path := range paths {
			tf := c.Targets[path]
			mark := "+"
			if p != nil {
				if old, ok := p.Targets[path]; ok && old.Equal(*tf) {
					if !all {
						continue
					}
					mark = "="
				}
			}
			desc := fmt.Sprintf("  "+mark+" target %s (%d bytes, sha256 %s)", path, tf.Length, hex.EncodeToString(tf.Hashes["sha256"]))
			if tf.Custom != nil {
				if fw, err := manifests.ParseCustom(*tf.Custom); err == nil {
					desc += fmt.Sprintf(" version %s counter %d hardware %s", fw.Version, fw.Counter, strings.Join(fw.Hardware, ","))
				}
			}
			out = append(out, desc)
		}
		if p != nil {
			for path := range p.Targets {
				if _, ok := c.Targets[path]; !ok {
					out = append(out, "  - target "+path+" REMOVED")
				}
			}
		}
		if c.Delegations != nil {
			for _, d := range c.Delegations.Roles {
				out = append(out, fmt.Sprintf("  delegation %s: paths %s, %d of %s", d.Name, strings.Join(d.Paths, ","), d.Threshold, strings.Join(shortIDs(d.KeyIDs), ",")))
			}
			if s := c.Delegations.SuccinctRoles; s != nil {
				out = append(out, fmt.Sprintf("  hashed bins %s-*: %d bins, %d of %s", s.NamePrefix, 1<<s.BitLength, s.Threshold, strings.Join(shortIDs(s.KeyIDs), ",")))
			}
		}
	}
	return out
}

func diffKeys(role string, ids []string, threshold int, was *metadata.Role) []string {
	line := fmt.Sprintf("  %s: %d of %d keys", role, threshold, len(ids))
	if was == nil {
		return []string{line + " (new)"}
	}
	var out []string
	if was.Threshold != threshold {
		line += fmt.Sprintf(" (threshold was %d)", was.Threshold)
	}
	out = append(out, line)
	for _, id := range ids {
		if !slices.Contains(was.KeyIDs, id) {
			out = append(out, "    + key "+id+" ADDED")
		}
	}
	for _, id := range was.KeyIDs {
		if !slices.Contains(ids, id) {
			out = append(out, "    - key "+id+" REVOKED")
		}
	}
	return out
}

func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short16(id)
	}
	return out
}

// SignRequest signs every role of req that key may sign. It needs no
// workspace and no network: this is what runs on the air-gapped machine.
func SignRequest(req *Request, key crypto.Signer) (*SignatureFile, error) {
	_, id, err := signer.TUFKey(key.Public())
	if err != nil {
		return nil, err
	}
	sf := &SignatureFile{Format: SignaturesFormat, KeyID: id}
	for _, rr := range req.Roles {
		if _, ok := rr.Keys[id]; !ok {
			continue
		}
		sig, err := signer.TUF(key).SignMessage(bytes.NewReader(rr.Signed))
		if err != nil {
			return nil, fmt.Errorf("sign %s: %w", rr.Role, err)
		}
		sf.Signatures = append(sf.Signatures, RoleSignature{Role: rr.Role, Version: rr.Version, SHA256: rr.SHA256, KeyID: id, Sig: sig})
	}
	if len(sf.Signatures) == 0 {
		var roles []string
		for _, rr := range req.Roles {
			roles = append(roles, rr.Role)
		}
		return nil, fmt.Errorf("key %s may sign none of the roles in this request (%s): use a key listed by 'fwctl status' for them", short16(id), strings.Join(roles, ", "))
	}
	return sf, nil
}

// ImportResult reports imported signatures and what is still missing.
type ImportResult struct {
	Imported []RoleSignature `json:"imported"`
	Missing  []Missing       `json:"missing"`
}

// ImportSignatures verifies signature files against the pending metadata
// and adds them to it.
func (ws *Workspace) ImportSignatures(files ...*SignatureFile) (*ImportResult, error) {
	pl, err := ws.plan(nil, ws.expiry, false)
	if err != nil {
		return nil, err
	}
	res := &ImportResult{}
	for _, sf := range files {
		if sf.Format != SignaturesFormat {
			return nil, fmt.Errorf("signature file format %d, this fwctl reads %d", sf.Format, SignaturesFormat)
		}
		for _, rs := range sf.Signatures {
			var p *rolePlan
			for _, c := range pl.all() {
				if c.role == rs.Role && c.changed {
					p = c
				}
			}
			if p == nil {
				return nil, fmt.Errorf("signature for %s v%d: nothing of that role awaits signatures here (already published, or a different workspace)", rs.Role, rs.Version)
			}
			sum := sha256.Sum256(p.payload)
			if p.version() != rs.Version || hex.EncodeToString(sum[:]) != rs.SHA256 {
				return nil, fmt.Errorf("signature for %s v%d covers other bytes than the pending %s v%d (it changed since the request was exported): export a new request and sign it again", rs.Role, rs.Version, p.role, p.version())
			}
			sig := metadata.Signature{KeyID: rs.KeyID, Signature: rs.Sig}
			if err := unionAuthority(p.auth).verifySig(p.payload, sig); err != nil {
				return nil, fmt.Errorf("signature for %s v%d by key %s: %w", rs.Role, rs.Version, short16(rs.KeyID), err)
			}
			sigs := p.sigs()
			if slices.ContainsFunc(*sigs, func(s metadata.Signature) bool { return s.KeyID == rs.KeyID }) {
				continue
			}
			*sigs = append(*sigs, sig)
			res.Imported = append(res.Imported, rs)
		}
	}
	if err := ws.savePending(pl); err != nil {
		return nil, err
	}
	for _, p := range pl.all() {
		res.Missing = append(res.Missing, p.missing()...)
	}
	return res, nil
}

// canonicalToJSON makes canonical JSON (OLPC: strings escape only '"' and
// '\\', so a PEM key holds raw newlines) parseable by encoding/json by
// escaping control characters inside strings.
func canonicalToJSON(b []byte) []byte {
	out := make([]byte, 0, len(b)+64)
	in, esc := false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case in && c < 0x20:
			out = append(out, fmt.Sprintf("\\u%04x", c)...)
			continue
		}
		out = append(out, c)
	}
	return out
}
