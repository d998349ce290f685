package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Key is the device identity key: ECDSA P-256, created inside the TPM and
// never exportable (FixedTPM, FixedParent). It implements crypto.Signer.
type Key struct {
	tpm  *TPM
	name tpm2.TPM2BName
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

// deviceKeyTemplate leaves the signing scheme open (TPM_ALG_NULL) so each
// Sign call can choose the hash.
func deviceKeyTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// loadDeviceKey reads the persistent key and checks it is the one we create.
func (t *TPM) loadDeviceKey(rw transport.TPM) (*Key, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: DeviceKeyHandle}.Execute(rw)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("read device key at %#08x: %w", uint32(DeviceKeyHandle), err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("parse device key at %#08x: %w", uint32(DeviceKeyHandle), err)
	}
	a := pub.ObjectAttributes
	if pub.Type != tpm2.TPMAlgECC || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Restricted {
		return nil, fmt.Errorf("persistent handle %#08x holds a key fwctl did not create (not a non-exportable ECC signing key); evict it (tpm2_evictcontrol -c %#08x) if it is not in use", uint32(DeviceKeyHandle), uint32(DeviceKeyHandle))
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("device key at %#08x: %w", uint32(DeviceKeyHandle), err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("device key at %#08x is not ECDSA P-256; evict it and provision again", uint32(DeviceKeyHandle))
	}
	der, err := x509.MarshalPKIXPublicKey(ec)
	if err != nil {
		return nil, fmt.Errorf("encode device public key: %w", err)
	}
	return &Key{tpm: t, name: rsp.Name, pub: ec, der: der}, nil
}

// ensureDeviceKey returns the persistent device key, creating it under the
// owner's ECC storage root key (TCG template, re-derived each time, never
// persisted by us) if it does not exist.
func (t *TPM) ensureDeviceKey(ctx context.Context, rw transport.TPM) (*Key, bool, error) {
	k, err := t.loadDeviceKey(rw)
	if !errors.Is(err, errNoKey) {
		return k, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	srk, err := tpm2.CreatePrimary{PrimaryHandle: t.owner(), InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(rw)
	if err != nil {
		return nil, false, fmt.Errorf("create storage root key: %w", ownerHint(err))
	}
	defer flush(rw, srk.ObjectHandle)
	parent := tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
	created, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(deviceKeyTemplate())}.Execute(rw)
	if err != nil {
		return nil, false, fmt.Errorf("create device key: %w", err)
	}
	loaded, err := tpm2.Load{ParentHandle: parent, InPrivate: created.OutPrivate, InPublic: created.OutPublic}.Execute(rw)
	if err != nil {
		return nil, false, fmt.Errorf("load device key: %w", err)
	}
	defer flush(rw, loaded.ObjectHandle)
	ev := tpm2.EvictControl{
		Auth:             t.owner(),
		ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
		PersistentHandle: DeviceKeyHandle,
	}
	if _, err := ev.Execute(rw); err != nil {
		return nil, false, fmt.Errorf("persist device key at %#08x: %w", uint32(DeviceKeyHandle), ownerHint(err))
	}
	k, err = t.loadDeviceKey(rw)
	return k, true, err
}

// flush frees a transient object; a failure only leaks a slot until the
// next TPM reset, so it is ignored.
func flush(rw transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(rw)
}
