package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "add missing golden key files to testdata/keyfile (never overwrites one)")

// The golden key files in testdata/keyfile were written by Save under key
// file format version 1. Every file written by any past fwctl must keep
// loading to the same private key: they are only ever added, never
// rewritten. goldenPassphrase unlocks the encrypted ones.
const (
	goldenDir        = "testdata/keyfile"
	goldenPassphrase = "fwctl golden vector passphrase"
)

// goldenKey is one golden file and the private key (PKCS#8 DER, hex) it
// must load to; the expected keys are in testdata/keyfile/expected.json.
type goldenKey struct {
	File      string `json:"file"`
	Role      string `json:"role"`
	Algorithm string `json:"algorithm"`
	Encrypted bool   `json:"encrypted"`
	KeyID     string `json:"keyid"`
	PKCS8     string `json:"pkcs8_hex"`
}

// goldenSpecs are the files the -update run creates when missing.
var goldenSpecs = []goldenKey{
	{File: "v1-ed25519.json", Role: "root", Algorithm: Ed25519, Encrypted: true},
	{File: "v1-ecdsa-p256.json", Role: "targets", Algorithm: ECDSAP256, Encrypted: true},
	{File: "v1-ed25519-plaintext.json", Role: "timestamp", Algorithm: Ed25519},
}

func readExpected(t *testing.T) []goldenKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "expected.json"))
	if errors.Is(err, os.ErrNotExist) && *update {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ks []goldenKey
	if err := json.Unmarshal(b, &ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

// addMissingGolden writes every goldenSpecs file that is not there yet.
func addMissingGolden(t *testing.T, have []goldenKey) []goldenKey {
	t.Helper()
	os.MkdirAll(goldenDir, 0o755)
	for _, spec := range goldenSpecs {
		if slices.ContainsFunc(have, func(k goldenKey) bool { return k.File == spec.File }) {
			continue
		}
		path := filepath.Join(goldenDir, spec.File)
		if _, err := os.Stat(path); err == nil {
			t.Fatalf("%s exists but is not in expected.json; golden files are never overwritten", path)
		}
		k, err := Generate(spec.Algorithm)
		if err != nil {
			t.Fatal(err)
		}
		var pw []byte
		if spec.Encrypted {
			pw = []byte(goldenPassphrase)
		}
		if spec.KeyID, err = Save(path, spec.Role, k, pw); err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		spec.PKCS8 = hex.EncodeToString(der)
		have = append(have, spec)
		t.Logf("added %s", path)
	}
	b, _ := json.MarshalIndent(have, "", "  ")
	if err := os.WriteFile(filepath.Join(goldenDir, "expected.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return have
}

// TestGoldenKeyFiles: every golden key file loads, with the golden
// passphrase where it is encrypted, to exactly the recorded private key; a
// wrong passphrase is ErrBadPassphrase; the key signs and verifies.
func TestGoldenKeyFiles(t *testing.T) {
	keys := readExpected(t)
	if *update {
		keys = addMissingGolden(t, keys)
	}
	if len(keys) < len(goldenSpecs) {
		t.Fatalf("%d golden key files, want at least %d (go test -run Golden -update adds the missing ones)", len(keys), len(goldenSpecs))
	}
	for _, want := range keys {
		t.Run(want.File, func(t *testing.T) {
			path := filepath.Join(goldenDir, want.File)
			kf, err := ReadKeyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if kf.IsEncrypted() != want.Encrypted || kf.Role != want.Role || kf.Algorithm != want.Algorithm || kf.KeyID != want.KeyID {
				t.Fatalf("key file header %+v, want role %s algorithm %s keyid %s encrypted %v", kf, want.Role, want.Algorithm, want.KeyID, want.Encrypted)
			}
			if want.Encrypted {
				if _, _, err := Load(path, func() ([]byte, error) { return []byte("not the passphrase"), nil }); !errors.Is(err, ErrBadPassphrase) {
					t.Fatalf("wrong passphrase: got %v, want ErrBadPassphrase", err)
				}
			}
			s, _, err := Load(path, func() ([]byte, error) { return []byte(goldenPassphrase), nil })
			if err != nil {
				t.Fatalf("load golden key file: %v", err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(s)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(der) != want.PKCS8 {
				t.Fatal("golden key file decrypted to a different private key")
			}
			digest := sha256.Sum256([]byte("golden"))
			var opts crypto.SignerOpts = crypto.SHA256
			if want.Algorithm == Ed25519 {
				opts = crypto.Hash(0)
			}
			msg := digest[:]
			if want.Algorithm == Ed25519 {
				msg = []byte("golden")
			}
			sig, err := s.Sign(rand.Reader, msg, opts)
			if err != nil {
				t.Fatal(err)
			}
			switch pub := s.Public().(type) {
			case ed25519.PublicKey:
				if !ed25519.Verify(pub, msg, sig) {
					t.Fatal("signature does not verify")
				}
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, msg, sig) {
					t.Fatal("signature does not verify")
				}
			}
		})
	}
}

// TestKeyFileShape: a key file written today has the same JSON fields, at
// every level, as the golden one of its kind, so a renamed or dropped field
// is a deliberate format change (a new fileVersion and a new golden file),
// not an accident that only older files would reveal.
func TestKeyFileShape(t *testing.T) {
	for _, tc := range []struct {
		golden string
		pw     []byte
	}{
		{"v1-ed25519.json", []byte(goldenPassphrase)},
		{"v1-ed25519-plaintext.json", nil},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			k, _ := Generate(Ed25519)
			path := filepath.Join(t.TempDir(), "k.json")
			if _, err := Save(path, "root", k, tc.pw); err != nil {
				t.Fatal(err)
			}
			got, want := jsonShape(t, path), jsonShape(t, filepath.Join(goldenDir, tc.golden))
			if !slices.Equal(got, want) {
				t.Fatalf("key file fields %v, golden %s has %v", got, tc.golden, want)
			}
		})
	}
}

// jsonShape lists the paths of every object key in a JSON document.
func jsonShape(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, c := range m {
				out = append(out, prefix+k)
				walk(prefix+k+".", c)
			}
		}
	}
	walk("", v)
	slices.Sort(out)
	return out
}
