package trust

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// File keeps the pinned root digest and the counter in files under Dir.
// Anyone who can write the disk can reset them, so it protects against
// network attackers but not against someone with the device in hand; use
// the TPM backend where there is a TPM.
type File struct {
	Dir string
}

// Kind implements Store.
func (f File) Kind() string { return "file (weaker: no hardware protection)" }

func (f File) rootPath() string    { return filepath.Join(f.Dir, "pinned-root.sha256") }
func (f File) counterPath() string { return filepath.Join(f.Dir, "counter") }

// Provision implements Store.
func (f File) Provision(ctx context.Context, digest [32]byte) (Provisioned, error) {
	var p Provisioned
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return p, err
	}
	old, err := f.PinnedRoot(ctx)
	switch {
	case err == nil && old == digest:
		p.RootWasPinned = true
	case err == nil:
		return p, fmt.Errorf("%w (pinned %x, offered %x)", ErrAlreadyPinned, old[:8], digest[:8])
	case errors.Is(err, ErrNotProvisioned):
		if err := atomicfile.Write(f.rootPath(), []byte(hex.EncodeToString(digest[:])+"\n"), 0o400); err != nil {
			return p, err
		}
		p.RootPinned = true
	default:
		return p, err
	}
	if _, err := os.Stat(f.counterPath()); errors.Is(err, os.ErrNotExist) {
		if err := atomicfile.Write(f.counterPath(), []byte("0\n"), 0o600); err != nil {
			return p, err
		}
		p.CounterCreated = true
	}
	return p, nil
}

// PinnedRoot implements Store.
func (f File) PinnedRoot(context.Context) ([32]byte, error) {
	var d [32]byte
	b, err := os.ReadFile(f.rootPath())
	if errors.Is(err, os.ErrNotExist) {
		return d, ErrNotProvisioned
	}
	if err != nil {
		return d, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return d, fmt.Errorf("%s is corrupt: re-provision the device", f.rootPath())
	}
	copy(d[:], raw)
	return d, nil
}

// Counter implements Store.
func (f File) Counter(context.Context) (uint64, error) {
	b, err := os.ReadFile(f.counterPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNotProvisioned
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is corrupt: %w", f.counterPath(), err)
	}
	return n, nil
}

// RaiseCounter implements Store.
func (f File) RaiseCounter(ctx context.Context, n uint64) error {
	cur, err := f.Counter(ctx)
	if err != nil {
		return err
	}
	if n <= cur {
		return nil
	}
	return atomicfile.Write(f.counterPath(), []byte(strconv.FormatUint(n, 10)+"\n"), 0o600)
}
