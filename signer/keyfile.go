// Package signer owns release-side signing keys: generating them, keeping
// them encrypted at rest or inside a PKCS#11 token, naming them by URI
// (file:PATH, pkcs11:token=…;object=…), loading them behind crypto.Signer,
// and adapting a crypto.Signer to the signer interface go-tuf's metadata
// package expects. Every backend passes one conformance suite
// (conformance_test.go). It never writes a private key unencrypted unless
// the caller explicitly asks for it, and never takes secrets (passphrases,
// PINs) from the command line or a URI. PKCS#11 needs cgo; the device agent
// never imports this package.
package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// Algorithms.
const (
	Ed25519   = "ed25519"
	ECDSAP256 = "ecdsa-p256"
)

// fileVersion is the key file format version.
const fileVersion = 1

// ErrBadPassphrase means an encrypted key could not be decrypted.
var ErrBadPassphrase = errors.New("wrong passphrase (or corrupted key file)")

// KeyFile is the on-disk form of one private key.
type KeyFile struct {
	Format    int             `json:"fwctl_key"`
	Role      string          `json:"role"`
	KeyID     string          `json:"keyid"`
	Algorithm string          `json:"algorithm"`
	Public    string          `json:"public"`              // PKIX PEM
	Encrypted json.RawMessage `json:"encrypted,omitempty"` // scrypt + secretbox of the PKCS#8 DER
	Plaintext []byte          `json:"insecure_plaintext_pkcs8,omitempty"`
}

// Generate creates a new private key.
func Generate(alg string) (crypto.Signer, error) {
	switch alg {
	case Ed25519, "":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("unknown key algorithm %q: use %q or %q", alg, Ed25519, ECDSAP256)
}

// Algorithm names the algorithm of a public key.
func Algorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Ed25519
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256
		}
	}
	return "unsupported"
}

// TUFKey returns the TUF key object and key ID for a public key.
func TUFKey(pub crypto.PublicKey) (*metadata.Key, string, error) {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	id, err := k.ID()
	if err != nil {
		return nil, "", err
	}
	return k, id, nil
}

// Save writes key to path for role. With a nil passphrase the key is stored
// in plaintext, which callers must only allow on an explicit, clearly named
// user request.
func Save(path, role string, key crypto.Signer, passphrase []byte) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	_, id, err := TUFKey(key.Public())
	if err != nil {
		return "", err
	}
	kf := KeyFile{
		Format:    fileVersion,
		Role:      role,
		KeyID:     id,
		Algorithm: Algorithm(key.Public()),
		Public:    string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
	}
	if passphrase == nil {
		kf.Plaintext = der
	} else {
		enc, err := encrypted.Encrypt(der, passphrase)
		if err != nil {
			return "", fmt.Errorf("encrypt private key: %w", err)
		}
		kf.Encrypted = enc
	}
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", err
	}
	return id, atomicfile.Write(path, append(b, '\n'), 0o600)
}

// ReadKeyFile reads a key file without decrypting it.
func ReadKeyFile(path string) (*KeyFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("key file %s: not a fwctl key: %w", path, err)
	}
	if kf.Format != fileVersion {
		return nil, fmt.Errorf("key file %s: format %d, want %d", path, kf.Format, fileVersion)
	}
	return &kf, nil
}

// IsEncrypted reports whether the key needs a passphrase.
func (kf *KeyFile) IsEncrypted() bool { return len(kf.Encrypted) > 0 }

// Load decrypts a key file. passphrase is only consulted for encrypted keys.
func Load(path string, passphrase func() ([]byte, error)) (crypto.Signer, *KeyFile, error) {
	kf, err := ReadKeyFile(path)
	if err != nil {
		return nil, nil, err
	}
	der := kf.Plaintext
	if kf.IsEncrypted() {
		pw, err := passphrase()
		if err != nil {
			return nil, nil, err
		}
		der, err = encrypted.Decrypt(kf.Encrypted, pw)
		if err != nil {
			return nil, nil, fmt.Errorf("decrypt %s: %w", path, ErrBadPassphrase)
		}
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("key file %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("key file %s: unsupported key type %T", path, k)
	}
	if _, id, err := TUFKey(s.Public()); err != nil || id != kf.KeyID {
		return nil, nil, fmt.Errorf("key file %s: private key does not match key ID %s", path, kf.KeyID)
	}
	return s, kf, nil
}
