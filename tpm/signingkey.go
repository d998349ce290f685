package tpm

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Persistent handle ranges (TCG "Registry of Reserved TPM 2.0 Handles").
// The owner may persist objects in the lower half; the upper half needs the
// platform hierarchy, which only firmware holds.
const (
	persistentFirst    Handle = 0x81000000
	persistentPlatform Handle = 0x81800000
	persistentLast     Handle = 0x81FFFFFF
)

// ErrNoKey means a persistent handle holds no key.
var ErrNoKey = errors.New("no key at this persistent handle")

// CheckSigningKeyHandle reports whether h may hold a signing key for
// SigningKey: a persistent handle (0x81000000–0x81FFFFFF) other than
// DeviceKeyHandle, which belongs to the device identity key.
func CheckSigningKeyHandle(h Handle) error {
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
	handle Handle
}

var _ crypto.Signer = (*SigningKey)(nil)

// SigningKey returns the signing key persisted at handle. When there is none
// it creates one if create is set (which needs the owner password, see
// WithOwnerAuth), else it returns an error wrapping ErrNoKey. created reports
// whether this call created the key; an existing key is returned as it is.
func (t *TPM) SigningKey(ctx context.Context, handle Handle, create bool) (k *SigningKey, created bool, err error) {
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
func (k *SigningKey) Handle() Handle { return k.handle }

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

// signAt signs digest with the persistent key at h (TPM2_Sign, ECDSA) and
// returns an ASN.1 DER ECDSA signature. name is the key's Name, which
// password authorisation does not send.
func (t *TPM) signAt(h Handle, name []byte, what string, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	_ = name
	var alg uint16
	switch hf := opts.HashFunc(); hf {
	case crypto.SHA256:
		alg = algSHA256
	case crypto.SHA384:
		alg = algSHA384
	case crypto.SHA512:
		alg = algSHA512
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
	params := append2B(nil, digest)
	params = appendU16(appendU16(params, algECDSA), alg) // TPMT_SIG_SCHEME
	params = appendU16(params, stHashCheck)              // TPMT_TK_HASHCHECK: the null ticket
	params = appendU32(params, uint32(rhNull))
	params = append2B(params, nil)
	_, rsp, err := run(rw, ccSign, []Handle{h}, [][]byte{nil}, params, 0)
	if err != nil {
		return nil, fmt.Errorf("tpm sign with %s: %w", what, err)
	}
	r := &reader{b: rsp} // TPMT_SIGNATURE
	sigAlg := r.u16()
	if r.err == nil && sigAlg != algECDSA {
		return nil, fmt.Errorf("tpm sign: unexpected signature type: algorithm %#04x, want ECDSA", sigAlg)
	}
	r.u16() // hash
	sr, ss := r.tpm2b(), r.tpm2b()
	if err := r.done("TPMT_SIGNATURE"); err != nil {
		return nil, fmt.Errorf("tpm sign: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sr), new(big.Int).SetBytes(ss)})
}

// loadKeyAt reads the persistent key at h and checks it is a non-exportable
// ECDSA P-256 signing key, as fwctl creates them. It returns errNoKey when
// the handle is empty.
func (t *TPM) loadKeyAt(rw sender, h Handle, what string) (*Key, error) {
	pub, name, err := readKey(rw, h)
	if errors.Is(err, errNoKey) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if pub.typ != algECC || pub.attrs&keyAttrs != keyAttrs || pub.attrs&objRestricted != 0 {
		return nil, fmt.Errorf("persistent handle %#08x holds a key fwctl did not create (not a non-exportable ECC signing key); evict it (tpm2_evictcontrol -c %#08x) if it is not in use, or choose another handle", uint32(h), uint32(h))
	}
	ec, err := pub.ecdsaP256()
	if err != nil {
		return nil, fmt.Errorf("%s is not ECDSA P-256", what)
	}
	der, err := x509.MarshalPKIXPublicKey(ec)
	if err != nil {
		return nil, fmt.Errorf("encode public key of %s: %w", what, err)
	}
	return &Key{tpm: t, name: name, pub: ec, der: der}, nil
}

// createKeyAt creates a key from signingKeyTemplate under the owner's ECC
// storage root key and persists it at h, which must be empty.
func (t *TPM) createKeyAt(ctx context.Context, rw sender, h Handle, what string) error {
	if h >= persistentPlatform {
		return fmt.Errorf("create %s: handles from 0x81800000 belong to the platform hierarchy; use one in 0x81000000–0x817FFFFF", what)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.createKey(rw, h, what, what)
}
