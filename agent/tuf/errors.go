// Package tuf verifies TUF metadata for the device: parsing, canonical JSON,
// signatures (ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256), the root
// rotation chain, timestamp, snapshot and targets checks, and the
// delegation graph. It is a pure function of bytes, a reference time and
// what is already trusted: it does no I/O and never reads the clock.
//
// It exists so that the agent does not link go-tuf, whose signature code
// pulls in sigstore and the protobuf runtime (about 1.6 MB of an arm64
// binary). The release side keeps go-tuf for building metadata; the tests
// run both against the same repositories.
package tuf

import (
	"errors"
	"fmt"
)

// ErrRefused is matched by every verification failure: whatever the kind,
// the metadata or target must not be used.
var ErrRefused = errors.New("TUF verification failed")

// Kinds of failure, one per attack of TUF's threat model (and malformed
// input). Errors of this package match exactly one of them and ErrRefused.
var (
	// ErrRollback: a version lower than one already trusted.
	ErrRollback = errors.New("rollback attack")
	// ErrFreeze: metadata expired at the reference time.
	ErrFreeze = errors.New("freeze attack: metadata expired")
	// ErrMixAndMatch: a file whose version or hashes differ from what the
	// metadata that lists it says.
	ErrMixAndMatch = errors.New("mix-and-match attack")
	// ErrEndlessData: more bytes than the signed or configured length.
	ErrEndlessData = errors.New("endless data attack")
	// ErrSlowRetrieval: a download slower than the minimum rate (the
	// client's fetcher reports it; it is not a verification failure).
	ErrSlowRetrieval = errors.New("slow retrieval attack")
	// ErrArbitrarySoftware: a target whose bytes do not match the signed
	// length and hashes.
	ErrArbitrarySoftware = errors.New("arbitrary software attack")
	// ErrSignature: fewer valid signatures than the threshold of the keys
	// trusted for the role (a compromised, rotated or wrong key).
	ErrSignature = errors.New("key compromise: signature threshold not met")
	// ErrMalformed: the bytes are not valid metadata of the expected type.
	ErrMalformed = errors.New("invalid metadata")
	// ErrNotFound: no trusted role lists the target path.
	ErrNotFound = errors.New("target not found in trusted metadata")
	// ErrDelegation: the delegation graph exceeds its bounds.
	ErrDelegation = errors.New("delegation graph too large")
)

// Error is a verification failure of one file.
type Error struct {
	File string // e.g. "timestamp.json", "targets/acme-gw/fw.img"
	Kind error  // one of the kinds above
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.File, e.Kind, e.Msg)
}

// Unwrap makes errors.Is match the kind and ErrRefused.
func (e *Error) Unwrap() []error { return []error{e.Kind, ErrRefused} }

func fail(file string, kind error, format string, args ...any) error {
	return &Error{File: file, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
