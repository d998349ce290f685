package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Persistent handle ranges (TCG "Registry of Reserved TPM 2.0 Handles").
// The owner may persist objects in the lower half; the upper half needs the
// platform hierarchy, which only firmware holds.
const (
	persistentFirst    tpm2.TPMHandle = 0x81000000
	persistentPlatform tpm2.TPMHandle = 0x81800000
	persistentLast     tpm2.TPMHandle = 0x81FFFFFF
)

// ErrNoKey means a persistent handle holds no key.
var ErrNoKey = errors.New("no key at this persistent handle")

// CheckSigningKeyHandle reports whether h may hold a signing key for
// SigningKey: a persistent handle (0x81000000–0x81FFFFFF) other than
// DeviceKeyHandle, which belongs to the device identity key.
func CheckSigningKeyHandle(h tpm2.TPMHandle) error {
	if h < persistentFirst || h > persistentLast {
		return fmt.Errorf("TPM handle %#08x is not a persistent handle: use one in 0x81000000–0x817FFFFF, e.g. 0x81000101", uint32(h))
	}
	if h == DeviceKeyHandle {
		return fmt.Errorf("TPM handle %#08x holds the device identity key: choose another handle for a signing key", uint32(h))
	}
	return nil
}

// SigningKey is a non-exportable ECDSA P-256 key at a persistent handle the
// caller chose, such as a repository's online timestamp key. Like the device
// key it is created inside the TPM (FixedTPM, FixedParent,
// SensitiveDataOrigin) and never leaves it. It implements crypto.Signer with
// ASN.1 DER output and is usable while its TPM stays open.
type SigningKey struct {
	k      *Key
	handle tpm2.TPMHandle
}

var _ crypto.Signer = (*SigningKey)(nil)

// SigningKey returns the signing key persisted at handle. When there is none
// it creates one if create is set (which needs the owner password, see
// WithOwnerAuth), else it returns an error wrapping ErrNoKey. created reports
// whether this call created the key; an existing key is returned as it is.
func (t *TPM) SigningKey(ctx context.Context, handle tpm2.TPMHandle, create bool) (k *SigningKey, created bool, err error) {
	if err := CheckSigningKeyHandle(handle); err != nil {
		return nil, false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rw, done, err := t.conn(ctx)
	if err != nil {
		return nil, false, err
	}
	defer done()
	what := fmt.Sprintf("signing key at %#08x", uint32(handle))
	key, err := t.loadKeyAt(rw, handle, what)
	if errors.Is(err, errNoKey) && create {
		if err = t.createKeyAt(ctx, rw, handle, what); err == nil {
			created = true
			key, err = t.loadKeyAt(rw, handle, what)
		}
	}
	if errors.Is(err, errNoKey) {
		return nil, false, fmt.Errorf("%s: %w", what, ErrNoKey)
	}
	if err != nil {
		return nil, false, err
	}
	return &SigningKey{k: key, handle: handle}, created, nil
}

// Handle returns the key's persistent handle.
func (k *SigningKey) Handle() tpm2.TPMHandle { return k.handle }

// Public returns the *ecdsa.PublicKey.
func (k *SigningKey) Public() crypto.PublicKey { return k.k.Public() }

// KeyID returns the hex SHA-256 of the key's PKIX (DER) public key.
func (k *SigningKey) KeyID() string { return k.k.KeyID() }

// PublicKeyPEM returns the public key as a PEM "PUBLIC KEY" block.
func (k *SigningKey) PublicKeyPEM() []byte { return k.k.PublicKeyPEM() }

// Sign signs digest inside the TPM, as (*Key).Sign does.
func (k *SigningKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.k.tpm.signAt(k.handle, k.k.name, fmt.Sprintf("signing key %#08x", uint32(k.handle)), digest, opts)
}

// signAt signs digest with the persistent key at h, whose Name is name, and
// returns an ASN.1 DER ECDSA signature.
func (t *TPM) signAt(h tpm2.TPMHandle, name tpm2.TPM2BName, what string, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var alg tpm2.TPMIAlgHash
	switch hf := opts.HashFunc(); hf {
	case crypto.SHA256:
		alg = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		alg = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		alg = tpm2.TPMAlgSHA512
	default:
		return nil, fmt.Errorf("tpm sign: hash %v not supported; use SHA-256, SHA-384 or SHA-512", hf)
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("tpm sign: digest is %d bytes, want %d for %v", len(digest), opts.HashFunc().Size(), opts.HashFunc())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rw, done, err := t.conn(context.Background())
	if err != nil {
		return nil, err
	}
	defer done()
	cmd := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: h, Name: name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}
	rsp, err := cmd.Execute(rw)
	if err != nil {
		return nil, fmt.Errorf("tpm sign with %s: %w", what, err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm sign: unexpected signature type: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

// loadKeyAt reads the persistent key at h and checks it is a non-exportable
// ECDSA P-256 signing key, as fwctl creates them. It returns errNoKey when
// the handle is empty.
func (t *TPM) loadKeyAt(rw transport.TPM, h tpm2.TPMHandle, what string) (*Key, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(rw)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", what, err)
	}
	a := pub.ObjectAttributes
	if pub.Type != tpm2.TPMAlgECC || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Restricted {
		return nil, fmt.Errorf("persistent handle %#08x holds a key fwctl did not create (not a non-exportable ECC signing key); evict it (tpm2_evictcontrol -c %#08x) if it is not in use, or choose another handle", uint32(h), uint32(h))
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s is not ECDSA P-256", what)
	}
	der, err := x509.MarshalPKIXPublicKey(ec)
	if err != nil {
		return nil, fmt.Errorf("encode public key of %s: %w", what, err)
	}
	return &Key{tpm: t, name: rsp.Name, pub: ec, der: der}, nil
}

// createKeyAt creates a key from deviceKeyTemplate under the owner's ECC
// storage root key (TCG template, re-derived each time, never persisted by
// us) and persists it at h, which must be empty.
func (t *TPM) createKeyAt(ctx context.Context, rw transport.TPM, h tpm2.TPMHandle, what string) error {
	if h >= persistentPlatform {
		return fmt.Errorf("create %s: handles from 0x81800000 belong to the platform hierarchy; use one in 0x81000000–0x817FFFFF", what)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	srk, err := tpm2.CreatePrimary{PrimaryHandle: t.owner(), InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(rw)
	if err != nil {
		return fmt.Errorf("create storage root key: %w", ownerHint(err))
	}
	defer flush(rw, srk.ObjectHandle)
	parent := tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
	created, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(deviceKeyTemplate())}.Execute(rw)
	if err != nil {
		return fmt.Errorf("create %s: %w", what, err)
	}
	loaded, err := tpm2.Load{ParentHandle: parent, InPrivate: created.OutPrivate, InPublic: created.OutPublic}.Execute(rw)
	if err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	defer flush(rw, loaded.ObjectHandle)
	ev := tpm2.EvictControl{
		Auth:             t.owner(),
		ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
		PersistentHandle: h,
	}
	if _, err := ev.Execute(rw); err != nil {
		return fmt.Errorf("persist %s: %w", what, ownerHint(err))
	}
	return nil
}
