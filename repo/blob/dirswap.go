package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// GetTagged implements Swapper; the tag is the content's SHA-256.
func (d Dir) GetTagged(ctx context.Context, name string) ([]byte, string, error) {
	b, err := ReadAll(ctx, d, name)
	if err != nil {
		return nil, "", err
	}
	return b, contentTag(b), nil
}

func contentTag(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Swap implements Swapper. A rename cannot be conditional, so Swap holds
// name's lock file (see Lock), re-reads name, compares its SHA-256 with
// tag, and only then renames the new file over it. The compare and the
// rename are atomic with respect to every writer that holds the same lock
// (Swap itself and 'fwctl publish' writing timestamp.json), not to a
// writer that ignores it.
func (d Dir) Swap(ctx context.Context, name string, data []byte, tag string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	unlock, err := d.Lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := ReadAll(ctx, d, name)
	switch {
	case tag == "" && errors.Is(err, ErrNotExist):
		return atomicfile.Write(p, data, 0o644)
	case tag == "" && err == nil:
		return fmt.Errorf("swap %s in %s: %w (it exists now, and was absent when read)", name, d, ErrChanged)
	case err != nil:
		return fmt.Errorf("swap %s: %w", name, err)
	}
	if got := contentTag(cur); got != tag {
		return fmt.Errorf("swap %s in %s: %w (SHA-256 %.12s…, read as %.12s…)", name, d, ErrChanged, got, tag)
	}
	if bytes.Equal(cur, data) {
		return nil
	}
	return atomicfile.Write(p, data, 0o644)
}

// Lock takes an exclusive lock on name (an flock on the hidden file
// .NAME.lock beside it, which List skips) and returns the function that
// releases it. Writers that replace a file Swap may be swapping hold it
// while they write, so Swap's compare and rename cannot interleave with
// them. It blocks until the lock is free.
func (d Dir) Lock(name string) (unlock func(), err error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	lp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".lock")
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w; check that %s is on a local file system that supports flock", name, err, d)
	}
	return func() { f.Close() }, nil // closing releases the flock
}
