package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// Key is the device identity key: ECDSA P-256, created inside the TPM and
// never exportable (FixedTPM, FixedParent). It implements crypto.Signer.
type Key struct {
	tpm  *TPM
	name []byte // the key's Name
	pub  *ecdsa.PublicKey
	der  []byte // PKIX
}

var _ crypto.Signer = (*Key)(nil)

// DeviceKey returns the persistent device key, or an error wrapping
// ErrNotProvisioned if provisioning has not created it yet.
func (t *TPM) DeviceKey(ctx context.Context) (*Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rw, done, err := t.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	k, err := t.loadDeviceKey(rw)
	if errors.Is(err, errNoKey) {
		return nil, fmt.Errorf("device key at %#08x: %w", uint32(DeviceKeyHandle), ErrNotProvisioned)
	}
	return k, err
}

// Public returns the *ecdsa.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// KeyID returns the hex SHA-256 of the key's PKIX (DER) public key.
func (k *Key) KeyID() string {
	sum := sha256.Sum256(k.der)
	return hex.EncodeToString(sum[:])
}

// PublicKeyPEM returns the public key as a PEM "PUBLIC KEY" block.
func (k *Key) PublicKeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.der})
}

// Sign signs digest, the hash of the message under opts.HashFunc() (SHA-256,
// SHA-384 or SHA-512), inside the TPM and returns an ASN.1 DER ECDSA
// signature as ecdsa.VerifyASN1 expects. rand is unused: the TPM draws its
// own nonce.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.tpm.signAt(DeviceKeyHandle, k.name, fmt.Sprintf("device key %#08x", uint32(DeviceKeyHandle)), digest, opts)
}

var errNoKey = errors.New("no persistent key")

// keyAttrs are the attributes signingKeyTemplate sets that a key must have
// to be taken for one fwctl created: non-exportable, made in the TPM, for
// signing.
const keyAttrs = objFixedTPM | objFixedParent | objSensitiveDataOrigin | objSignEncrypt

// readKey reads the public area and Name of the persistent object at h
// (TPM2_ReadPublic); errNoKey if there is none.
func readKey(rw sender, h Handle) (*objectPublic, []byte, error) {
	_, params, err := run(rw, ccReadPublic, []Handle{h}, nil, nil, 0)
	if errors.Is(err, rcHandle) {
		return nil, nil, errNoKey
	}
	if err != nil {
		return nil, nil, err
	}
	r := &reader{b: params}
	area, name := r.tpm2b(), r.tpm2b()
	r.tpm2b() // qualifiedName
	if err := r.done("TPM2_ReadPublic response"); err != nil {
		return nil, nil, err
	}
	pub, err := parsePublic(area)
	return pub, name, err
}

// loadDeviceKey reads the persistent key and checks it is the one we create.
func (t *TPM) loadDeviceKey(rw sender) (*Key, error) {
	pub, name, err := readKey(rw, DeviceKeyHandle)
	if errors.Is(err, errNoKey) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("read device key at %#08x: %w", uint32(DeviceKeyHandle), err)
	}
	if pub.typ != algECC || pub.attrs&keyAttrs != keyAttrs || pub.attrs&objRestricted != 0 {
		return nil, fmt.Errorf("persistent handle %#08x holds a key fwctl did not create (not a non-exportable ECC signing key); evict it (tpm2_evictcontrol -c %#08x) if it is not in use", uint32(DeviceKeyHandle), uint32(DeviceKeyHandle))
	}
	ec, err := pub.ecdsaP256()
	if err != nil {
		return nil, fmt.Errorf("device key at %#08x is not ECDSA P-256; evict it and provision again", uint32(DeviceKeyHandle))
	}
	der, err := x509.MarshalPKIXPublicKey(ec)
	if err != nil {
		return nil, fmt.Errorf("encode device public key: %w", err)
	}
	return &Key{tpm: t, name: name, pub: ec, der: der}, nil
}

// ensureDeviceKey returns the persistent device key, creating it under the
// owner's ECC storage root key (TCG template, re-derived each time, never
// persisted by us) if it does not exist.
func (t *TPM) ensureDeviceKey(ctx context.Context, rw sender) (*Key, bool, error) {
	k, err := t.loadDeviceKey(rw)
	if !errors.Is(err, errNoKey) {
		return k, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := t.createKey(rw, DeviceKeyHandle, "device key", fmt.Sprintf("device key at %#08x", uint32(DeviceKeyHandle))); err != nil {
		return nil, false, err
	}
	k, err = t.loadDeviceKey(rw)
	return k, true, err
}

// createKey creates a key from signingKeyTemplate under the owner's ECC
// storage root key (go-tpm's ECCSRKTemplate, the TCG's, re-derived each
// time, never persisted by us) and persists it at h (TPM2_CreatePrimary,
// TPM2_Create, TPM2_Load, TPM2_EvictControl). what and persisted name the
// key in errors.
func (t *TPM) createKey(rw sender, h Handle, what, persisted string) error {
	out, _, err := run(rw, ccCreatePrimary, []Handle{rhOwner}, [][]byte{t.owner()}, createParams(srkTemplate()), 1)
	if err != nil {
		return fmt.Errorf("create storage root key: %w", ownerHint(err))
	}
	srk := out[0]
	defer flush(rw, srk)
	_, params, err := run(rw, ccCreate, []Handle{srk}, [][]byte{nil}, createParams(signingKeyTemplate()), 0)
	if err != nil {
		return fmt.Errorf("create %s: %w", what, err)
	}
	r := &reader{b: params}
	private, public := r.tpm2b(), r.tpm2b() // the rest is creation data
	if r.err != nil {
		return fmt.Errorf("create %s: parse TPM2_Create response: %w", what, r.err)
	}
	out, _, err = run(rw, ccLoad, []Handle{srk}, [][]byte{nil}, append2B(append2B(nil, private), public), 1)
	if err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	defer flush(rw, out[0])
	if _, _, err := run(rw, ccEvictControl, []Handle{rhOwner, out[0]}, [][]byte{t.owner()}, appendU32(nil, uint32(h)), 0); err != nil {
		return fmt.Errorf("persist %s: %w", persisted, ownerHint(err))
	}
	return nil
}

// flush frees a transient object (TPM2_FlushContext, whose handle is a
// parameter); a failure only leaks a slot until the next TPM reset, so it is
// ignored.
func flush(rw sender, h Handle) {
	_, _, _ = run(rw, ccFlushContext, nil, nil, appendU32(nil, uint32(h)), 0)
}
