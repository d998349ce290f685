//go:build !cgo

package signer

import (
	"crypto"
	"errors"
)

// PKCS11Available reports whether this build can use PKCS#11 tokens (it
// needs cgo).
const PKCS11Available = false

var errNoCgo = errors.New("this fwctl was built without cgo (CGO_ENABLED=0) and cannot use PKCS#11 tokens: rebuild with CGO_ENABLED=1")

func openPKCS11(Ref, func() ([]byte, error)) (crypto.Signer, error) { return nil, errNoCgo }

// GeneratePKCS11 creates a key pair in a PKCS#11 token; this build cannot.
func GeneratePKCS11(Ref, string, Options) (crypto.Signer, error) { return nil, errNoCgo }
