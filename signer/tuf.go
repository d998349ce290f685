package signer

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"
)

// TUF adapts any crypto.Signer (file key, and later PKCS#11 or TPM keys) to
// the signature.Signer that go-tuf's Metadata.Sign takes. Ed25519 signs the
// message itself; ECDSA P-256 signs its SHA-256 digest (ecdsa-sha2-nistp256).
func TUF(s crypto.Signer) signature.Signer { return tufSigner{s} }

type tufSigner struct{ s crypto.Signer }

func (t tufSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return t.s.Public(), nil
}

func (t tufSigner) SignMessage(r io.Reader, _ ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	switch t.s.Public().(type) {
	case ed25519.PublicKey:
		return t.s.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		if Algorithm(t.s.Public()) != ECDSAP256 {
			return nil, fmt.Errorf("sign: unsupported key type %T", t.s.Public())
		}
		d := sha256.Sum256(msg)
		return t.s.Sign(rand.Reader, d[:], crypto.SHA256)
	}
}

var _ signature.Signer = tufSigner{}
