package tuf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// verifySig reports whether sig (hex) is key's signature over msg.
func verifySig(key *Key, msg []byte, sigHex string) error {
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return errors.New("signature is not hexadecimal")
	}
	switch key.Scheme {
	case "ed25519":
		if key.KeyType != "ed25519" {
			return fmt.Errorf("scheme ed25519 with key type %q", key.KeyType)
		}
		pub, err := hex.DecodeString(key.KeyVal.Public)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return errors.New("ed25519 public key is not 32 bytes of hex")
		}
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("ed25519 signature does not verify")
		}
		return nil
	case "ecdsa-sha2-nistp256":
		if key.KeyType != "ecdsa" && key.KeyType != "ecdsa-sha2-nistp256" {
			return fmt.Errorf("scheme %s with key type %q", key.Scheme, key.KeyType)
		}
		pub, err := ecdsaKey(key.KeyVal.Public)
		if err != nil {
			return err
		}
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(pub, d[:], sig) {
			return errors.New("ecdsa signature does not verify")
		}
		return nil
	case "rsassa-pss-sha256":
		if key.KeyType != "rsa" {
			return fmt.Errorf("scheme %s with key type %q", key.Scheme, key.KeyType)
		}
		pk, err := pemKey(key.KeyVal.Public)
		if err != nil {
			return err
		}
		pub, ok := pk.(*rsa.PublicKey)
		if !ok {
			return errors.New("rsa key is not an RSA public key")
		}
		d := sha256.Sum256(msg)
		if err := rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}); err != nil {
			return errors.New("rsassa-pss signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("signature scheme %q not supported", key.Scheme)
}

// ecdsaKey reads a P-256 public key as PEM (SubjectPublicKeyInfo, as
// securesystemslib writes it) or as hex (an uncompressed point or DER).
func ecdsaKey(s string) (*ecdsa.PublicKey, error) {
	var pk any
	var err error
	if raw, herr := hex.DecodeString(s); herr == nil {
		if len(raw) == 65 && raw[0] == 4 {
			return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		}
		pk, err = x509.ParsePKIXPublicKey(raw)
	} else {
		pk, err = pemKey(s)
	}
	if err != nil {
		return nil, err
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("ecdsa key is not a P-256 public key")
	}
	return pub, nil
}

func pemKey(s string) (any, error) {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		return nil, errors.New("public key is not PEM")
	}
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pk, nil
}

// verifyThreshold checks that at least threshold distinct keys among
// keyIDs (looked up in keys) signed env. Key IDs are taken as listed, not
// recomputed; a key that signs twice counts once, and so does one key
// listed under several key IDs.
func verifyThreshold(file, role string, env *envelope, keyIDs []string, threshold int, keys map[string]*Key) error {
	allowed := make(map[string]bool, len(keyIDs))
	for _, id := range keyIDs {
		allowed[id] = true
	}
	good := map[string]bool{}
	distinct := map[Key]bool{}
	var last error
	for _, s := range env.signatures {
		if !allowed[s.KeyID] || good[s.KeyID] {
			continue
		}
		k := keys[s.KeyID]
		if k == nil {
			continue
		}
		if err := verifySig(k, env.canonical, s.Sig); err != nil {
			last = fmt.Errorf("key %s: %w", s.KeyID, err)
			continue
		}
		good[s.KeyID] = true
		distinct[*k] = true
	}
	if len(distinct) < threshold {
		msg := fmt.Sprintf("%d valid signatures by distinct keys for role %s, threshold %d", len(distinct), role, threshold)
		if last != nil {
			msg += fmt.Sprintf(" (%v)", last)
		}
		return fail(file, ErrSignature, "%s", msg)
	}
	return nil
}
