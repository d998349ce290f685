package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
)

// Identity kinds, as 'fwagent identity --pem' labels them ("Identity:"
// PEM header) and 'fwagent status' shows them.
const (
	IdentityTPM  = "tpm"
	IdentityFile = "file"
)

// IdentityConfig is the "identity" object of the config: a device
// identity key in a file, for devices without a TPM. Anyone who can read
// the file can sign as the device, so fwrepo shows such devices as weaker.
type IdentityConfig struct {
	// KeyFile holds the ECDSA P-256 private key (SEC 1 PEM), created 0600
	// by 'fwagent provision'. A file readable or writable by group or
	// others is refused.
	KeyFile string `json:"key_file"`
}

// ErrIdentityPermissions means the identity key file is accessible to
// group or others.
var ErrIdentityPermissions = errors.New("identity key file permissions too open")

// fileKey is a device identity key held in a file.
type fileKey struct {
	*ecdsa.PrivateKey
	id string
}

func (k fileKey) KeyID() string { return k.id }

// Sign makes fileKey a crypto.Signer whose Public is a crypto.PublicKey
// (the embedded key's Public already is one).
func (k fileKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.PrivateKey.Sign(r, digest, opts)
}

// IdentityKey returns the device identity key and its kind: the file key
// when identity.key_file is set, else the TPM device key.
func (a *Agent) IdentityKey(ctx context.Context) (DeviceSigner, string, error) {
	if a.cfg.Identity != nil && a.cfg.Identity.KeyFile != "" {
		k, err := loadFileKey(a.cfg.Identity.KeyFile)
		return k, IdentityFile, err
	}
	k, err := a.tpmIdentity(ctx)
	return k, IdentityTPM, err
}

// IdentityKind names the kind of identity the config gives this device
// ("file", "tpm", or "" for none).
func (a *Agent) IdentityKind() string {
	switch {
	case a.cfg.Identity != nil && a.cfg.Identity.KeyFile != "":
		return IdentityFile
	case a.cfg.Trust.Type == "tpm":
		return IdentityTPM
	}
	return ""
}

// ensureFileIdentity creates the identity key file (0600) if the config
// names one and it does not exist yet.
func (a *Agent) ensureFileIdentity() (string, error) {
	if a.cfg.Identity == nil || a.cfg.Identity.KeyFile == "" {
		return "", nil
	}
	path := a.cfg.Identity.KeyFile
	if _, err := os.Stat(path); err == nil {
		k, err := loadFileKey(path)
		if err != nil {
			return "", err
		}
		return k.id, nil
	}
	key, err := newP256Key()
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("create identity key: %w", err)
	}
	id, err := manifests.KeyID(key.Public())
	return id, err
}

// newP256Key makes a P-256 key from a random scalar (ecdsa.GenerateKey
// would link its own key generation into the agent; a uniformly random
// 32-byte string is a valid scalar but with negligible probability).
func newP256Key() (*ecdsa.PrivateKey, error) {
	b := make([]byte, 32)
	for range 64 {
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("identity key: no valid P-256 scalar from the random source")
}

// loadFileKey reads an identity key file, refusing one that group or
// others may access.
func loadFileKey(path string) (fileKey, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileKey{}, fmt.Errorf("identity key %s does not exist: run 'fwagent provision' to create it", path)
	}
	if err != nil {
		return fileKey{}, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fileKey{}, fmt.Errorf("%w: %s is mode %04o, group or others may read it; run 'chmod 600 %s' (and replace the key if others could read it)",
			ErrIdentityPermissions, path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fileKey{}, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "EC PRIVATE KEY" {
		return fileKey{}, fmt.Errorf("identity key %s: not a PEM \"EC PRIVATE KEY\" (SEC 1)", path)
	}
	// SEC 1 rather than PKCS#8: parsing PKCS#8 links RSA key checks into
	// the agent (tens of kB of its size budget).
	ek, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return fileKey{}, fmt.Errorf("identity key %s: %w", path, err)
	}
	if ek.Curve != elliptic.P256() {
		return fileKey{}, fmt.Errorf("identity key %s: want an ECDSA P-256 key, got %s", path, ek.Curve.Params().Name)
	}
	id, err := manifests.KeyID(ek.Public())
	if err != nil {
		return fileKey{}, err
	}
	return fileKey{PrivateKey: ek, id: id}, nil
}

// IdentityPEM returns the public key of an identity key as PEM, with an
// "Identity:" header naming its kind, which fwrepo stores (file
// identities are shown as weaker).
func IdentityPEM(k DeviceSigner, kind string) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Identity": kind}, Bytes: der}), nil
}
