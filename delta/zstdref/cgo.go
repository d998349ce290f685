//go:build cgo

package zstdref

import (
	"sync"

	"github.com/DataDog/zstd"
	"github.com/fwctl/fwctl/delta"
)

// ref compresses with a pool of libzstd contexts: a context is not safe for
// concurrent use, and creating one per section would cost more than small
// sections take to compress.
type ref struct{ ctxs sync.Pool }

func compressor() delta.Compressor {
	return &ref{ctxs: sync.Pool{New: func() any { return zstd.NewCtx() }}}
}

// Compress implements delta.Compressor.
func (r *ref) Compress(dst, src []byte) []byte {
	ctx := r.ctxs.Get().(zstd.Ctx)
	defer r.ctxs.Put(ctx)
	out, err := ctx.CompressLevel(nil, src, Level)
	if err != nil {
		return nil // stored instead; a valid delta either way
	}
	if len(dst) == 0 {
		return out
	}
	return append(dst, out...)
}
