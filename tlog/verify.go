package tlog

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// VerifyEntry checks everything a device needs to trust that an image was
// logged: the entry body is a hashedrekord for imageSHA256 signed by
// releaseKey (VerifyBody), the log promised to include it (VerifySET), and
// the inclusion proof leads to a checkpoint signed by logKey
// (VerifyInclusion). It returns that checkpoint, which the caller then
// compares with its last accepted one (Advance, Consistent).
func VerifyEntry(e *Entry, imageSHA256 []byte, releaseKey, logKey *ecdsa.PublicKey) (*Checkpoint, error) {
	if e == nil {
		return nil, fmt.Errorf("%w: no log entry", ErrMalformed)
	}
	if err := VerifyBody(e.Body, imageSHA256, releaseKey); err != nil {
		return nil, err
	}
	if err := VerifySET(e, logKey); err != nil {
		return nil, err
	}
	return VerifyInclusion(e, logKey)
}

// VerifyBody checks that a hashedrekord entry body records imageSHA256,
// that its public key is releaseKey and that its signature verifies.
func VerifyBody(body, imageSHA256 []byte, releaseKey *ecdsa.PublicKey) error {
	r, err := ParseHashedRekord(body)
	if err != nil {
		return err
	}
	if !bytes.Equal(r.Digest, imageSHA256) {
		return fmt.Errorf("%w: entry records sha256 %x, image has %x", ErrWrongImage, r.Digest, imageSHA256)
	}
	want, err := marshalKey(releaseKey)
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(r.PublicKeyPEM)
	if blk == nil {
		return fmt.Errorf("%w: entry public key is not PEM", ErrMalformed)
	}
	if !bytes.Equal(blk.Bytes, want) {
		got, _ := x509.ParsePKIXPublicKey(blk.Bytes)
		if k, ok := got.(*ecdsa.PublicKey); !ok || !k.Equal(releaseKey) {
			return fmt.Errorf("%w: entry made with key %x, release key is %x", ErrWrongKey, sha256.Sum256(blk.Bytes), sha256.Sum256(want))
		}
	}
	if !ecdsa.VerifyASN1(releaseKey, r.Digest, r.Signature) {
		return fmt.Errorf("%w: entry signature over sha256 %x", ErrBadSignature, r.Digest)
	}
	return nil
}

// VerifySET checks the signed entry timestamp: the log's ECDSA signature
// over the SHA-256 of the canonical JSON
// {"body","integratedTime","logID","logIndex"}, and that the entry's log ID
// is logKey's.
func VerifySET(e *Entry, logKey *ecdsa.PublicKey) error {
	if e == nil || len(e.SET) == 0 {
		return fmt.Errorf("%w: entry has no signed entry timestamp", ErrBadSET)
	}
	id, err := KeyID(logKey)
	if err != nil {
		return err
	}
	if !bytes.Equal(e.LogID, id) {
		return fmt.Errorf("%w: entry is from log %x, trusted log is %x", ErrBadSET, e.LogID, id)
	}
	// RFC 8785 canonical form: keys in this (sorted) order, no spaces;
	// base64 and hex need no escaping and the integers are plain decimals.
	payload, err := json.Marshal(struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogID          string `json:"logID"`
		LogIndex       int64  `json:"logIndex"`
	}{base64.StdEncoding.EncodeToString(e.Body), e.IntegratedTime, hex.EncodeToString(e.LogID), e.LogIndex})
	if err != nil {
		return fmt.Errorf("%w: encode SET payload: %w", ErrMalformed, err)
	}
	digest := sha256.Sum256(payload)
	if !ecdsa.VerifyASN1(logKey, digest[:], e.SET) {
		return fmt.Errorf("%w: entry %d", ErrBadSET, e.LogIndex)
	}
	return nil
}

// VerifyInclusion checks the entry's inclusion proof: the leaf hash
// SHA-256(0x00 ‖ body) leads through the proof's hashes to its root hash,
// and a checkpoint signed by logKey commits to that root and tree size.
// It returns the verified checkpoint.
func VerifyInclusion(e *Entry, logKey *ecdsa.PublicKey) (*Checkpoint, error) {
	if e == nil || e.Proof == nil {
		return nil, fmt.Errorf("%w: entry has no inclusion proof", ErrBadProof)
	}
	p := e.Proof
	cp, err := VerifyCheckpoint(p.Checkpoint, logKey)
	if err != nil {
		return nil, err
	}
	if p.LogIndex < 0 || p.TreeSize <= p.LogIndex {
		return nil, fmt.Errorf("%w: index %d in a tree of size %d", ErrBadProof, p.LogIndex, p.TreeSize)
	}
	index, size := uint64(p.LogIndex), uint64(p.TreeSize)
	if cp.Size != size || !bytes.Equal(cp.RootHash, p.RootHash) {
		return nil, fmt.Errorf("%w: proof is for tree size %d root %x, checkpoint for size %d root %x", ErrBadProof, size, p.RootHash, cp.Size, cp.RootHash)
	}
	if got, want := len(p.Hashes), proofLen(index, size); got != want {
		return nil, fmt.Errorf("%w: truncated or padded proof: %d hashes, index %d in a tree of size %d needs %d", ErrBadProof, got, index, size, want)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(e.Body)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, leaf, p.Hashes, p.RootHash); err != nil {
		return nil, fmt.Errorf("%w: entry %d in tree of size %d: %w", ErrBadProof, index, size, err)
	}
	return cp, nil
}

// proofLen is the number of hashes in an RFC 6962 inclusion proof for
// index < size.
func proofLen(index, size uint64) int {
	inner := bits.Len64(index ^ (size - 1))
	return inner + bits.OnesCount64(index>>uint(inner))
}
