package blob

import (
	"context"
	"errors"
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
