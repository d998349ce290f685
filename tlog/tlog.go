// Package tlog verifies, offline and on the device, that a firmware image was
// recorded in a Rekor v1 transparency log: the signed entry timestamp (SET),
// the RFC 6962 inclusion proof, the signed checkpoint, and that the logged
// hashedrekord entry is for this image and this release key. It owns the
// parsing of these untrusted bytes and the "never go back" rule for
// checkpoints.
//
// It never performs I/O and imports only the standard library and
// github.com/transparency-dev/merkle, so that fwagent stays small: it must
// never import a Rekor client, sigstore or cosign. Uploading and searching
// the log is the release side's job (package transparency).
package tlog

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Errors a caller can branch on with errors.Is. Every error returned by this
// package wraps exactly one of them.
var (
	// ErrMalformed reports bytes that do not parse as the expected format.
	ErrMalformed = errors.New("tlog: malformed transparency data")
	// ErrWrongImage reports a log entry or bundle for a different image.
	ErrWrongImage = errors.New("tlog: log entry is for a different image")
	// ErrWrongKey reports a log entry made with a key other than the release key.
	ErrWrongKey = errors.New("tlog: log entry is for a different release key")
	// ErrBadSignature reports an image signature that does not verify with the release key.
	ErrBadSignature = errors.New("tlog: image signature does not verify")
	// ErrBadSET reports a missing signed entry timestamp, or one that does
	// not verify with the log key.
	ErrBadSET = errors.New("tlog: signed entry timestamp does not verify")
	// ErrBadProof reports a missing, truncated or wrong inclusion proof, or
	// one that does not match its checkpoint.
	ErrBadProof = errors.New("tlog: inclusion proof does not verify")
	// ErrBadCheckpoint reports a checkpoint that carries no valid signature
	// by the log key (forged or altered).
	ErrBadCheckpoint = errors.New("tlog: checkpoint signature does not verify")
	// ErrRollback reports a checkpoint for a smaller tree than the last accepted one.
	ErrRollback = errors.New("tlog: checkpoint is older than the last accepted one")
	// ErrInconsistent reports two checkpoints that cannot both be views of
	// one append-only log: a split view, or a different log.
	ErrInconsistent = errors.New("tlog: checkpoints are not consistent")
)

// Entry is one Rekor v1 log entry as the device sees it.
type Entry struct {
	// Body is the canonicalized entry (hashedrekord JSON) exactly as logged.
	Body []byte
	// IntegratedTime is when the log integrated the entry, in Unix seconds.
	IntegratedTime int64
	// LogID is the SHA-256 of the log key's DER (PKIX) encoding.
	LogID []byte
	// LogIndex is the entry's global index, the one the SET covers.
	LogIndex int64
	// SET is the log's DER ECDSA signature over the entry (signed entry
	// timestamp), nil when absent.
	SET []byte
	// Proof is the inclusion proof, nil when absent.
	Proof *InclusionProof
}

// InclusionProof proves that an entry is in the tree a checkpoint commits to.
type InclusionProof struct {
	// LogIndex is the leaf's index in this tree; it equals Entry.LogIndex
	// unless the log was sharded.
	LogIndex int64
	// TreeSize is the size of the tree the proof leads to.
	TreeSize int64
	// RootHash is that tree's root hash.
	RootHash []byte
	// Hashes are the proof's sibling hashes, leaf to root.
	Hashes [][]byte
	// Checkpoint is the log's signed note committing to TreeSize and RootHash.
	Checkpoint []byte
}

// KeyID returns the SHA-256 of the key's DER (PKIX) encoding: Rekor's log ID
// and Sigstore's public key hint.
func KeyID(key *ecdsa.PublicKey) ([]byte, error) {
	der, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:], nil
}

func marshalKey(key *ecdsa.PublicKey) ([]byte, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: no public key given", ErrMalformed)
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: encode public key: %w", ErrMalformed, err)
	}
	return der, nil
}

// ParsePublicKey parses a PEM "PUBLIC KEY" (PKIX) holding an ECDSA key, the
// form in which release and log keys are distributed.
func ParsePublicKey(pemBytes []byte) (*ecdsa.PublicKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: no PEM PUBLIC KEY block", ErrMalformed)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrMalformed, err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: public key is %T, want ECDSA", ErrMalformed, k)
	}
	return ek, nil
}
