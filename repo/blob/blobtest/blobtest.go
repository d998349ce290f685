// Package blobtest holds test doubles around a real blob.Store: it wraps a
// store (a directory or a bucket) and never replaces one. Tests only.
package blobtest

import (
	"context"
	"io"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
)

// Racing runs Publish once, just before the first write of timestamp.json
// reaches Store (whichever way it is written, Put or Swap): a release
// published between a writer's read of the old timestamp and its write of
// the new one. Store must be a blob.Swapper.
type Racing struct {
	blob.Store
	Publish func()
}

func (r *Racing) race(name string) {
	if name == layout.Timestamp && r.Publish != nil {
		p := r.Publish
		r.Publish = nil
		p()
	}
}

// Put implements blob.Store.
func (r *Racing) Put(ctx context.Context, name string, rd io.Reader, size int64) error {
	r.race(name)
	return r.Store.Put(ctx, name, rd, size)
}

// GetTagged implements blob.Swapper.
func (r *Racing) GetTagged(ctx context.Context, name string) ([]byte, string, error) {
	return r.Store.(blob.Swapper).GetTagged(ctx, name)
}

// Swap implements blob.Swapper.
func (r *Racing) Swap(ctx context.Context, name string, data []byte, tag string) error {
	r.race(name)
	return r.Store.(blob.Swapper).Swap(ctx, name, data, tag)
}
