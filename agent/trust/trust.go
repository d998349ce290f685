// Package trust owns the device's trust anchor and anti-rollback counter: the
// digest of the root.json provisioned at manufacture, and the highest
// security counter the device has confirmed. Backends are a TPM (package
// tpm) or, on devices without one, files in the state directory, which
// anyone able to write the disk can reset and which is therefore weaker.
package trust

import (
	"context"

	"github.com/fwctl/fwctl/tpm"
)

// The TPM backend is package tpm, a leaf that imports nothing of ours; the
// vocabulary of provisioning is defined there and re-exported here so that
// both backends and their callers share one set of values.
var _ Store = (*tpm.TPM)(nil)

// Store holds the pinned root digest and the anti-rollback counter.
type Store interface {
	// Provision pins rootDigest (SHA-256 of the initial root.json) and
	// creates the counter. Provisioning again with the same digest is a
	// no-op that reports what already exists; a different digest is refused
	// with ErrAlreadyPinned.
	Provision(ctx context.Context, rootDigest [32]byte) (Provisioned, error)
	// PinnedRoot returns the pinned digest, or ErrNotProvisioned.
	PinnedRoot(ctx context.Context) ([32]byte, error)
	// Counter returns the highest confirmed security counter (0 when none).
	Counter(ctx context.Context) (uint64, error)
	// RaiseCounter sets the counter to n if n is larger; it never lowers it.
	RaiseCounter(ctx context.Context, n uint64) error
	// Kind names the backend for status output, e.g. "tpm" or "file".
	Kind() string
}

// Provisioned reports what provisioning created and what already existed.
type Provisioned = tpm.Provisioned

var (
	// ErrNotProvisioned means the device has no pinned root yet.
	ErrNotProvisioned = tpm.ErrNotProvisioned
	// ErrAlreadyPinned means a different root digest is already pinned.
	ErrAlreadyPinned = tpm.ErrAlreadyPinned
)
