package signer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestKeyFileRoundTrip(t *testing.T) {
	for _, alg := range []string{Ed25519, ECDSAP256} {
		t.Run(alg, func(t *testing.T) {
			k, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "k.json")
			pw := []byte("correct horse")
			id, err := Save(path, "targets", k, pw)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(path)
			if bytes.Contains(raw, []byte("insecure_plaintext")) {
				t.Fatal("encrypted key file holds plaintext")
			}
			fi, _ := os.Stat(path)
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
			}
			if _, _, err := Load(path, func() ([]byte, error) { return []byte("wrong"), nil }); !errors.Is(err, ErrBadPassphrase) {
				t.Fatalf("wrong passphrase: %v", err)
			}
			s, kf, err := Load(path, func() ([]byte, error) { return pw, nil })
			if err != nil {
				t.Fatal(err)
			}
			if kf.KeyID != id || kf.Role != "targets" {
				t.Fatalf("key file = %+v", kf)
			}
			// A signature made through the TUF adapter verifies with go-tuf.
			md := metadata.Targets()
			if _, err := md.Sign(TUF(s)); err != nil {
				t.Fatal(err)
			}
			root := metadata.Root()
			key, _, _ := TUFKey(s.Public())
			root.Signed.AddKey(key, metadata.TARGETS)
			if err := root.VerifyDelegate(metadata.TARGETS, md); err != nil {
				t.Fatalf("signature does not verify: %v", err)
			}
		})
	}
}

func TestPlaintextOnlyWhenAsked(t *testing.T) {
	k, _ := Generate(Ed25519)
	path := filepath.Join(t.TempDir(), "k.json")
	if _, err := Save(path, "root", k, nil); err != nil {
		t.Fatal(err)
	}
	kf, err := ReadKeyFile(path)
	if err != nil || kf.IsEncrypted() {
		t.Fatalf("plaintext key: %v %v", kf, err)
	}
	if _, _, err := Load(path, func() ([]byte, error) { t.Fatal("asked for a passphrase"); return nil, nil }); err != nil {
		t.Fatal(err)
	}
}
