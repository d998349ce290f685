package manifests

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// envelope is the wire form of a signed device manifest.
type envelope struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature []byte          `json:"signature"` // standard base64 in JSON
	KeyID     string          `json:"keyid"`
}

// SignedDeviceManifest is a parsed, not yet verified, signed device
// manifest: {"manifest": {...}, "signature": BASE64, "keyid": HEX}.
//
// Signature is an ASN.1 DER ECDSA P-256 signature over the SHA-256 of
// Signed, the canonical encoding (Canonicalize) of the manifest object as
// sent. KeyID is the hex SHA-256 of the signer's PKIX public key.
type SignedDeviceManifest struct {
	Manifest  *DeviceManifest
	Signed    []byte
	Signature []byte
	KeyID     string
}

// ParseDeviceManifest parses and validates a signed device manifest without
// verifying its signature: the caller looks the device up by
// Manifest.DeviceID and then calls Verify with its registered key. It never
// panics, whatever b holds.
func ParseDeviceManifest(b []byte) (*SignedDeviceManifest, error) {
	if len(b) > MaxDeviceManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidDeviceManifest, len(b), MaxDeviceManifestSize)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrInvalidDeviceManifest, err)
	}
	if err := exactNames("envelope", top, []string{"manifest", "signature", "keyid"}); err != nil {
		return nil, err
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrInvalidDeviceManifest, err)
	}
	if len(env.Manifest) == 0 || string(env.Manifest) == "null" {
		return nil, fmt.Errorf("%w: envelope has no manifest", ErrInvalidDeviceManifest)
	}
	if len(env.Signature) == 0 || len(env.Signature) > 256 {
		return nil, fmt.Errorf("%w: signature: want a base64 ASN.1 ECDSA signature, got %d bytes", ErrInvalidDeviceManifest, len(env.Signature))
	}
	if k, err := hex.DecodeString(env.KeyID); err != nil || len(k) != sha256.Size {
		return nil, fmt.Errorf("%w: keyid %q: want the 64 hex digit SHA-256 of the device's public key", ErrInvalidDeviceManifest, clip(env.KeyID))
	}
	signed, err := Canonicalize(env.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrInvalidDeviceManifest, err)
	}
	m, err := decodeDeviceManifest(signed)
	if err != nil {
		return nil, err
	}
	return &SignedDeviceManifest{Manifest: m, Signed: signed, Signature: env.Signature, KeyID: env.KeyID}, nil
}

// Verify checks the signature against pub, which must be the ECDSA P-256
// key registered for the device, and that KeyID names pub. It is a pure
// function of its inputs.
func (s *SignedDeviceManifest) Verify(pub crypto.PublicKey) error {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return fmt.Errorf("%w: the registered key is %T, device manifests are signed with ECDSA P-256", ErrBadSignature, pub)
	}
	id, err := KeyID(ec)
	if err != nil {
		return err
	}
	if id != s.KeyID {
		return fmt.Errorf("%w: signed by key %s, but device %s is registered with key %s", ErrBadSignature, s.KeyID, s.Manifest.DeviceID, id)
	}
	digest := sha256.Sum256(s.Signed)
	if !ecdsa.VerifyASN1(ec, digest[:], s.Signature) {
		return fmt.Errorf("%w: device %s, key %s: the manifest was modified or signed by another key", ErrBadSignature, s.Manifest.DeviceID, id)
	}
	return nil
}

// SignDeviceManifest validates m, signs its canonical encoding with signer
// (an ECDSA P-256 key, such as the TPM device key) and returns the signed
// envelope, ready to send.
func SignDeviceManifest(m *DeviceManifest, signer crypto.Signer) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	id, err := KeyID(signer.Public())
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode device manifest: %w", err)
	}
	signed, err := Canonicalize(raw)
	if err != nil {
		return nil, fmt.Errorf("encode device manifest: %w", err)
	}
	digest := sha256.Sum256(signed)
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign device manifest with key %s: %w", id, err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(envelope{Manifest: signed, Signature: sig, KeyID: id}); err != nil {
		return nil, fmt.Errorf("encode signed device manifest: %w", err)
	}
	return out.Bytes(), nil
}

// KeyID returns the hex SHA-256 of pub's PKIX (DER) encoding, the key ID
// the TPM device key reports and the default device ID. Only ECDSA P-256
// keys are accepted.
func KeyID(pub crypto.PublicKey) (string, error) {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return "", fmt.Errorf("device key is %T, want ECDSA P-256", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(ec)
	if err != nil {
		return "", fmt.Errorf("encode device public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// ParsePublicKeyPEM parses a PEM "PUBLIC KEY" block holding an ECDSA P-256
// key, as 'fwagent provision' and 'fwagent identity --pem' print it.
func ParsePublicKeyPEM(b []byte) (*ecdsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM \"PUBLIC KEY\" block: use the key 'fwagent identity --pem' prints on the device")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("public key is %T, want ECDSA P-256 (the TPM device key)", k)
	}
	return ec, nil
}
