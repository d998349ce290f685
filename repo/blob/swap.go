package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// ErrChanged is returned (wrapped) by Swapper.Swap when the file no longer
// holds the content the caller read: someone else replaced it in between.
// Nothing was written; read it again and decide afresh.
var ErrChanged = errors.New("changed since it was read")

// Swapper is a Store that can replace a file only if it still holds what
// the caller read (compare-and-swap). fwrepo re-signs timestamp.json
// through it, so a re-sign of the old timestamp can never overwrite the
// newer one a concurrent 'fwctl publish' wrote.
type Swapper interface {
	// GetTagged reads the whole of name and returns a tag that identifies
	// this content (an S3 ETag, a SHA-256 for a directory).
	GetTagged(ctx context.Context, name string) (data []byte, tag string, err error)
	// Swap replaces name with data if it still holds the content tag
	// identifies; otherwise it writes nothing and wraps ErrChanged. An
	// empty tag means "only if there is no name yet" (S3 If-None-Match: *).
	Swap(ctx context.Context, name string, data []byte, tag string) error
}

var (
	_ Swapper = Dir("")
	_ Swapper = (*S3)(nil)
)

// Replace is the one race-safe way to replace a file that other writers
// replace too (timestamp.json: 'fwctl publish', its upload, fwrepo's
// online re-sign). It reads name (cur is nil and tag "" when there is
// none), asks next for the bytes to write in its place, and writes them
// only if name still holds what was read (Swap). If another writer
// replaced it in between, Replace reads it again and asks next again, at
// most attempts times in all; then it returns an error wrapping
// ErrChanged. next may refuse (return an error, which Replace returns
// as it is) or return cur itself to leave the file as it is. Replace
// returns the bytes it left in place.
func Replace(ctx context.Context, sw Swapper, name string, attempts int, next func(cur []byte, tag string) ([]byte, error)) ([]byte, error) {
	var last error
	for range max(attempts, 1) {
		cur, tag, err := sw.GetTagged(ctx, name)
		switch {
		case errors.Is(err, ErrNotExist):
			cur, tag = nil, ""
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		data, err := next(cur, tag)
		if err != nil {
			return nil, err
		}
		if cur != nil && bytes.Equal(cur, data) {
			return data, nil
		}
		err = sw.Swap(ctx, name, data, tag)
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, ErrChanged) {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("%w: it was replaced %d times while this write was prepared", last, max(attempts, 1))
}
