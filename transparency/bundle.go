package transparency

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/fwctl/fwctl/tlog"
)

// MarshalBundle writes a Sigstore bundle v0.3 JSON for an image signed with
// a plain ECDSA P-256 release key: digest is the image's SHA-256, sig the
// DER signature over it, pubPEM the release public key, entry the log entry
// (nil for a bundle without one). Check it with
//
//	cosign verify-blob --new-bundle-format --trusted-root trusted_root.json \
//	  --key release.pub --bundle IMAGE.sigstore.json IMAGE
//
// adding --insecure-ignore-tlog=true when entry is nil.
func MarshalBundle(digest, sig, pubPEM []byte, entry *Entry) ([]byte, error) {
	key, err := tlog.ParsePublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("bundle: release key: %w", err)
	}
	hint, err := tlog.KeyHint(key)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if len(digest) != 32 || len(sig) == 0 {
		return nil, fmt.Errorf("bundle: want a 32-byte SHA-256 and a signature, got %d and %d bytes", len(digest), len(sig))
	}
	b := &tlog.Bundle{Digest: digest, Signature: sig, KeyHint: hint}
	if entry != nil {
		b.Entries = []tlog.Entry{entry.Entry}
	}
	return b.Marshal()
}

// TrustedRoot writes a cosign/sigstore trusted_root.json that trusts only
// the private log at baseURL with the PEM public key logPubPEM, for entries
// integrated from validFrom on. It holds no certificate authority: release
// signatures are checked against an explicit key (--key).
func TrustedRoot(baseURL string, logPubPEM []byte, validFrom time.Time) ([]byte, error) {
	key, err := tlog.ParsePublicKey(logPubPEM)
	if err != nil {
		return nil, fmt.Errorf("trusted root: log key: %w", err)
	}
	if key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("trusted root: log key is on %s, want P-256", key.Curve.Params().Name)
	}
	id, err := tlog.KeyID(key)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	blk, _ := pem.Decode(logPubPEM) // valid: ParsePublicKey accepted it
	type keyID struct {
		KeyID string `json:"keyId"`
	}
	type publicKey struct {
		RawBytes   string `json:"rawBytes"`
		KeyDetails string `json:"keyDetails"`
		ValidFor   struct {
			Start string `json:"start"`
		} `json:"validFor"`
	}
	type tlogJSON struct {
		BaseURL       string    `json:"baseUrl"`
		HashAlgorithm string    `json:"hashAlgorithm"`
		PublicKey     publicKey `json:"publicKey"`
		LogID         keyID     `json:"logId"`
	}
	t := tlogJSON{BaseURL: baseURL, HashAlgorithm: "SHA2_256", LogID: keyID{base64.StdEncoding.EncodeToString(id)}}
	t.PublicKey.RawBytes = base64.StdEncoding.EncodeToString(blk.Bytes)
	t.PublicKey.KeyDetails = "PKIX_ECDSA_P256_SHA_256"
	t.PublicKey.ValidFor.Start = validFrom.UTC().Format(time.RFC3339)
	out, err := json.MarshalIndent(struct {
		MediaType string     `json:"mediaType"`
		Tlogs     []tlogJSON `json:"tlogs"`
	}{"application/vnd.dev.sigstore.trustedroot+json;version=0.1", []tlogJSON{t}}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	return append(out, '\n'), nil
}
