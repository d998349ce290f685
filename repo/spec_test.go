package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"

	"github.com/fwctl/fwctl/signer"
)

// The formats the TUF specification (v1.0.x, "Document formats") fixes,
// quoted where a check comes from.
var (
	// "expires: Determines when metadata should be considered expired
	// ... ISO 8601 ... YYYY-MM-DDTHH:MM:SSZ"
	specExpires = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)
	// "spec_version: ... follows the Semantic Versioning 2.0.0" (major 1)
	specVersion = regexp.MustCompile(`^1\.(0|[1-9]\d*)\.(0|[1-9]\d*)$`)
	hexRE       = regexp.MustCompile(`^[0-9a-f]+$`)
	// "HASHES is a dictionary that specifies one or more hashes ... for
	// example, 'sha256'" : the algorithm names hashlib spells.
	hashLengths = map[string]int{"sha256": 64, "sha512": 128}
)

// specCheck walks one metadata document and reports every field whose
// format differs from the specification's.
type specCheck struct {
	t    *testing.T
	file string
}

func (c specCheck) errorf(format string, args ...any) {
	c.t.Helper()
	c.t.Errorf("%s: "+format, append([]any{c.file}, args...)...)
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func (c specCheck) int(v any, what string) {
	c.t.Helper()
	n, ok := v.(json.Number)
	if _, err := n.Int64(); !ok || err != nil || strings.ContainsAny(n.String(), ".eE-") {
		c.errorf("%s = %v, want a non-negative integer", what, v)
	}
}

func (c specCheck) hashes(v any, what string) {
	c.t.Helper()
	h := obj(v)
	if len(h) == 0 {
		c.errorf("%s: no hashes", what)
	}
	for alg, d := range h {
		s, _ := d.(string)
		if n, ok := hashLengths[alg]; !ok || len(s) != n || !hexRE.MatchString(s) {
			c.errorf("%s: hash %q = %v, want a hex %s digest", what, alg, d, alg)
		}
	}
}

// keys checks KEYID -> KEY: "KEYID ... is the hexdigest of the SHA-256 hash
// of the canonical form of the key", and each key's type, scheme and value.
func (c specCheck) keys(v any) {
	c.t.Helper()
	for id, k := range obj(v) {
		key := obj(k)
		canon, err := cjson.EncodeCanonical(key)
		if err != nil {
			c.errorf("key %s: %v", id, err)
			continue
		}
		if sum := sha256.Sum256(canon); hex.EncodeToString(sum[:]) != id {
			c.errorf("key id %s is not the SHA-256 of the key's canonical form (%x)", id, sum)
		}
		pub, _ := obj(key["keyval"])["public"].(string)
		switch key["keytype"] {
		case "ed25519":
			if key["scheme"] != "ed25519" || len(pub) != 64 || !hexRE.MatchString(pub) {
				c.errorf("ed25519 key %s: scheme %v, public %q; want scheme ed25519 and 64 hex digits", id, key["scheme"], pub)
			}
		case "ecdsa":
			if key["scheme"] != "ecdsa-sha2-nistp256" || !strings.HasPrefix(pub, "-----BEGIN PUBLIC KEY-----") {
				c.errorf("ecdsa key %s: scheme %v, public %q; want ecdsa-sha2-nistp256 and PEM", id, key["scheme"], pub)
			}
		default:
			c.errorf("key %s: keytype %v", id, key["keytype"])
		}
	}
}

func (c specCheck) keyIDs(v any, keys map[string]any, what string) {
	c.t.Helper()
	ids, _ := v.([]any)
	if len(ids) == 0 {
		c.errorf("%s: no keyids", what)
	}
	for _, id := range ids {
		if _, ok := keys[id.(string)]; !ok {
			c.errorf("%s: keyid %v is not among the keys", what, id)
		}
	}
}

func (c specCheck) document(b []byte) {
	c.t.Helper()
	var doc map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		c.errorf("%v", err)
		return
	}
	signed := obj(doc["signed"])
	sigs, _ := doc["signatures"].([]any)
	if signed == nil || len(sigs) == 0 || len(doc) != 2 {
		c.errorf("want exactly {signed, signatures} with at least one signature, got %v keys", len(doc))
	}
	for _, s := range sigs {
		sig := obj(s)
		id, _ := sig["keyid"].(string)
		v, _ := sig["sig"].(string)
		if len(id) != 64 || !hexRE.MatchString(id) || v == "" || !hexRE.MatchString(v) {
			c.errorf("signature %v: want a 64-digit hex keyid and a hex sig", sig)
		}
	}
	typ, _ := signed["_type"].(string)
	if want := strings.TrimSuffix(filepath.Base(c.file), ".json"); !strings.HasSuffix(want, typ) && typ != "targets" {
		c.errorf("_type %q for file %s", typ, c.file)
	}
	if sv, _ := signed["spec_version"].(string); !specVersion.MatchString(sv) {
		c.errorf("spec_version %q is not a 1.x.y semantic version", sv)
	}
	if e, _ := signed["expires"].(string); !specExpires.MatchString(e) {
		c.errorf("expires %q, want YYYY-MM-DDTHH:MM:SSZ", e)
	}
	c.int(signed["version"], "version")
	switch typ {
	case "root":
		if _, ok := signed["consistent_snapshot"].(bool); !ok {
			c.errorf("consistent_snapshot missing")
		}
		c.keys(signed["keys"])
		for _, r := range []string{"root", "targets", "snapshot", "timestamp"} {
			role := obj(obj(signed["roles"])[r])
			c.keyIDs(role["keyids"], obj(signed["keys"]), "role "+r)
			c.int(role["threshold"], "role "+r+" threshold")
		}
	case "targets":
		for p, tf := range obj(signed["targets"]) {
			c.int(obj(tf)["length"], "target "+p+" length")
			c.hashes(obj(tf)["hashes"], "target "+p)
		}
		if del := obj(signed["delegations"]); del != nil {
			c.keys(del["keys"])
			roles, hasRoles := del["roles"].([]any)
			succinct := obj(del["succinct_roles"])
			if hasRoles == (succinct != nil) {
				c.errorf("delegations: want exactly one of roles and succinct_roles (TAP 15)")
			}
			for _, r := range roles {
				role := obj(r)
				name, _ := role["name"].(string)
				c.keyIDs(role["keyids"], obj(del["keys"]), "delegated role "+name)
				c.int(role["threshold"], "delegated role "+name+" threshold")
				if _, ok := role["terminating"].(bool); !ok {
					c.errorf("delegated role %s: terminating missing", name)
				}
				_, paths := role["paths"]
				_, prefixes := role["path_hash_prefixes"]
				if paths == prefixes {
					c.errorf("delegated role %s: want exactly one of paths and path_hash_prefixes", name)
				}
			}
			if succinct != nil {
				c.keyIDs(succinct["keyids"], obj(del["keys"]), "succinct_roles")
				c.int(succinct["threshold"], "succinct_roles threshold")
				c.int(succinct["bit_length"], "succinct_roles bit_length")
				if p, _ := succinct["name_prefix"].(string); p == "" {
					c.errorf("succinct_roles: name_prefix missing")
				}
			}
		}
	case "snapshot", "timestamp":
		meta := obj(signed["meta"])
		if len(meta) == 0 {
			c.errorf("meta is empty")
		}
		for name, m := range meta {
			if !strings.HasSuffix(name, ".json") {
				c.errorf("meta names %q, want ROLE.json", name)
			}
			c.int(obj(m)["version"], "meta "+name+" version")
			if l, ok := obj(m)["length"]; ok {
				c.int(l, "meta "+name+" length")
			}
			if h, ok := obj(m)["hashes"]; ok {
				c.hashes(h, "meta "+name)
			}
		}
	default:
		c.errorf("_type %q", typ)
	}
}

// TestMetadataFollowsSpec checks every metadata file a workspace publishes
// (both key algorithms, a rotated root, a named delegation and hashed
// bins) against the formats the TUF specification fixes.
func TestMetadataFollowsSpec(t *testing.T) {
	for _, tt := range []struct {
		alg  string
		bins bool
	}{{signer.Ed25519, false}, {signer.ECDSAP256, true}} {
		t.Run(tt.alg, func(t *testing.T) {
			// A clock with nanoseconds, as time.Now has.
			now := time.Date(2026, 12, 2, 15, 59, 41, 909090346, time.UTC)
			w := initWorkspace(t, InitOptions{Algorithm: tt.alg, Now: func() time.Time { return now }})
			w.Now = func() time.Time { return now }
			key := filepath.Join(t.TempDir(), "delegate.json")
			info, _, err := GenerateKey("file:"+key, "", tt.alg, nil, signer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.bins {
				err = w.AddHashedBins(BinsOptions{Bits: 2, Keys: []string{info.URI}})
			} else {
				err = w.AddDelegation("acme", DelegationOptions{Paths: []string{"hw2/*/*"}, Keys: []string{info.URI}})
			}
			if err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(t.TempDir(), "fw.img")
			os.WriteFile(img, []byte("firmware"), 0o644)
			if _, err := w.AddTarget(img, AddOptions{Hardware: []string{"hw1"}, Version: "1.0", Counter: 1}); err != nil {
				t.Fatal(err)
			}
			if tt.bins {
				_, err = w.AddDelegatedTarget("", img, AddOptions{Hardware: []string{"hw2"}, Version: "1.0", Counter: 1})
			} else {
				_, err = w.AddDelegatedTarget("acme", img, AddOptions{Hardware: []string{"hw2"}, Version: "1.0", Counter: 1})
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Rotate("snapshot", RotateOptions{Add: []string{pubKey(t)}}); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if _, err := w.Publish(out, PublishOptions{}); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(out, "metadata", "*.json"))
			if len(files) < 6 {
				t.Fatalf("published only %v", files)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				specCheck{t, filepath.Base(f)}.document(b)
			}
		})
	}
}
