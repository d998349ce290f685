package tlog

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// BundleMediaType is the media type of the Sigstore bundles this package
// reads and writes.
const BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// maxEntries bounds the log entries accepted in one bundle.
const maxEntries = 8

// Bundle is a Sigstore bundle (v0.3) for a firmware image signed with a
// plain public key: the image digest, the signature, and optionally the
// Rekor entries recording it. cosign verify-blob --new-bundle-format reads
// the same file.
type Bundle struct {
	// Digest is the SHA-256 of the image.
	Digest []byte
	// Signature is the DER ECDSA signature over Digest.
	Signature []byte
	// KeyHint names the release key; this package writes base64(KeyID).
	KeyHint string
	// Entries are the log entries for this signature, if any.
	Entries []Entry
}

type bundleJSON struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
		TlogEntries []tlogEntryJSON `json:"tlogEntries,omitempty"`
	} `json:"verificationMaterial"`
	MessageSignature struct {
		MessageDigest struct {
			Algorithm string `json:"algorithm"`
			Digest    []byte `json:"digest"`
		} `json:"messageDigest"`
		Signature []byte `json:"signature"`
	} `json:"messageSignature"`
}

type tlogEntryJSON struct {
	LogIndex pbInt `json:"logIndex"`
	LogID    struct {
		KeyID []byte `json:"keyId"`
	} `json:"logId"`
	KindVersion struct {
		Kind    string `json:"kind"`
		Version string `json:"version"`
	} `json:"kindVersion"`
	IntegratedTime   pbInt `json:"integratedTime"`
	InclusionPromise *struct {
		SignedEntryTimestamp []byte `json:"signedEntryTimestamp"`
	} `json:"inclusionPromise,omitempty"`
	InclusionProof *struct {
		LogIndex   pbInt    `json:"logIndex"`
		RootHash   []byte   `json:"rootHash"`
		TreeSize   pbInt    `json:"treeSize"`
		Hashes     [][]byte `json:"hashes"`
		Checkpoint struct {
			Envelope string `json:"envelope"`
		} `json:"checkpoint"`
	} `json:"inclusionProof,omitempty"`
	CanonicalizedBody []byte `json:"canonicalizedBody"`
}

// Marshal encodes the bundle as Sigstore bundle v0.3 JSON.
func (b *Bundle) Marshal() ([]byte, error) {
	var j bundleJSON
	j.MediaType = BundleMediaType
	j.VerificationMaterial.PublicKey.Hint = b.KeyHint
	j.MessageSignature.MessageDigest.Algorithm = "SHA2_256"
	j.MessageSignature.MessageDigest.Digest = b.Digest
	j.MessageSignature.Signature = b.Signature
	for _, e := range b.Entries {
		t := tlogEntryJSON{LogIndex: pbInt(e.LogIndex), IntegratedTime: pbInt(e.IntegratedTime), CanonicalizedBody: e.Body}
		t.LogID.KeyID = e.LogID
		t.KindVersion.Kind, t.KindVersion.Version = "hashedrekord", "0.0.1"
		if e.SET != nil {
			t.InclusionPromise = &struct {
				SignedEntryTimestamp []byte `json:"signedEntryTimestamp"`
			}{e.SET}
		}
		if p := e.Proof; p != nil {
			t.InclusionProof = &struct {
				LogIndex   pbInt    `json:"logIndex"`
				RootHash   []byte   `json:"rootHash"`
				TreeSize   pbInt    `json:"treeSize"`
				Hashes     [][]byte `json:"hashes"`
				Checkpoint struct {
					Envelope string `json:"envelope"`
				} `json:"checkpoint"`
			}{LogIndex: pbInt(p.LogIndex), RootHash: p.RootHash, TreeSize: pbInt(p.TreeSize), Hashes: append([][]byte{}, p.Hashes...)}
			t.InclusionProof.Checkpoint.Envelope = string(p.Checkpoint)
		}
		j.VerificationMaterial.TlogEntries = append(j.VerificationMaterial.TlogEntries, t)
	}
	out, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	return append(out, '\n'), nil
}

// ParseBundle parses a Sigstore bundle v0.3 JSON as written by Marshal (or
// by cosign for a key-signed blob).
func ParseBundle(data []byte) (*Bundle, error) {
	if len(data) > maxInput {
		return nil, fmt.Errorf("%w: bundle of %d bytes, at most %d expected", ErrMalformed, len(data), maxInput)
	}
	var j bundleJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: bundle: %w", ErrMalformed, err)
	}
	if j.MediaType != BundleMediaType {
		return nil, fmt.Errorf("%w: bundle media type %q, want %q", ErrMalformed, j.MediaType, BundleMediaType)
	}
	md := j.MessageSignature.MessageDigest
	if md.Algorithm != "SHA2_256" || len(md.Digest) != 32 {
		return nil, fmt.Errorf("%w: bundle digest is %s of %d bytes, want SHA2_256 of 32 bytes", ErrMalformed, md.Algorithm, len(md.Digest))
	}
	if len(j.MessageSignature.Signature) == 0 {
		return nil, fmt.Errorf("%w: bundle has no signature", ErrMalformed)
	}
	if n := len(j.VerificationMaterial.TlogEntries); n > maxEntries {
		return nil, fmt.Errorf("%w: bundle holds %d log entries, at most %d expected", ErrMalformed, n, maxEntries)
	}
	b := &Bundle{Digest: md.Digest, Signature: j.MessageSignature.Signature, KeyHint: j.VerificationMaterial.PublicKey.Hint}
	for i, t := range j.VerificationMaterial.TlogEntries {
		e := Entry{Body: t.CanonicalizedBody, IntegratedTime: int64(t.IntegratedTime), LogID: t.LogID.KeyID, LogIndex: int64(t.LogIndex)}
		if len(e.Body) == 0 || len(e.LogID) != 32 {
			return nil, fmt.Errorf("%w: bundle log entry %d has no body or a log ID that is not 32 bytes", ErrMalformed, i)
		}
		if t.InclusionPromise != nil {
			e.SET = t.InclusionPromise.SignedEntryTimestamp
		}
		if p := t.InclusionProof; p != nil {
			e.Proof = &InclusionProof{LogIndex: int64(p.LogIndex), TreeSize: int64(p.TreeSize), RootHash: p.RootHash, Checkpoint: []byte(p.Checkpoint.Envelope)}
			if len(p.RootHash) != 32 {
				return nil, fmt.Errorf("%w: bundle log entry %d has a root hash of %d bytes", ErrMalformed, i, len(p.RootHash))
			}
			if len(p.Hashes) > maxHashes {
				return nil, fmt.Errorf("%w: inclusion proof of %d hashes, at most %d expected", ErrMalformed, len(p.Hashes), maxHashes)
			}
			for k, h := range p.Hashes {
				if len(h) != 32 {
					return nil, fmt.Errorf("%w: bundle log entry %d: proof hash %d is %d bytes", ErrMalformed, i, k, len(h))
				}
			}
			e.Proof.Hashes = p.Hashes
		}
		if err := checkIndexes(&e); err != nil {
			return nil, err
		}
		b.Entries = append(b.Entries, e)
	}
	return b, nil
}

// VerifyBundle checks that the bundle is for the image with this SHA-256
// and that its signature verifies with the release key. If logKey is not
// nil, it also requires a log entry that VerifyEntry accepts and returns
// that entry's verified checkpoint.
func VerifyBundle(b *Bundle, imageSHA256 []byte, releaseKey, logKey *ecdsa.PublicKey) (*Checkpoint, error) {
	if b == nil || releaseKey == nil {
		return nil, fmt.Errorf("%w: missing bundle or release key", ErrMalformed)
	}
	if !bytes.Equal(b.Digest, imageSHA256) {
		return nil, fmt.Errorf("%w: bundle is for sha256 %x, image has %x", ErrWrongImage, b.Digest, imageSHA256)
	}
	if !ecdsa.VerifyASN1(releaseKey, b.Digest, b.Signature) {
		return nil, fmt.Errorf("%w: bundle signature over sha256 %x", ErrBadSignature, b.Digest)
	}
	if logKey == nil {
		return nil, nil
	}
	if len(b.Entries) == 0 {
		return nil, fmt.Errorf("%w: bundle holds no log entry", ErrBadProof)
	}
	var first error
	for i := range b.Entries {
		cp, err := VerifyEntry(&b.Entries[i], imageSHA256, releaseKey, logKey)
		if err == nil {
			return cp, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// KeyHint returns the public key hint written into bundles for a release
// key: base64 of its KeyID.
func KeyHint(key *ecdsa.PublicKey) (string, error) {
	id, err := KeyID(key)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(id), nil
}
