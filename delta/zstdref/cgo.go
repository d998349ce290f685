//go:build cgo

package zstdref

import (
	"sync"

	"github.com/DataDog/zstd"
	"github.com/fwctl/fwctl/delta"
)

// ref compresses with a free list of libzstd contexts: a context is not
// safe for concurrent use, and creating one per section would cost more
// than small sections take to compress. Not a sync.Pool: its per-P private
// slots cannot be taken by another P, so with GOMAXPROCS 16 an encode with
// two workers built up to 16 level-19 contexts (tens of MiB each, C memory
// the Go memory limit does not see: the 2 GiB pair's peak went from 449 to
// 580 MiB). The list holds at most as many contexts as ran at once.
type ref struct {
	mu      sync.Mutex
	free    []zstd.Ctx
	created int // contexts made (TestContextsPerUser)
}

func compressor() delta.Compressor { return &ref{} }

func (r *ref) get() zstd.Ctx {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.free); n > 0 {
		ctx := r.free[n-1]
		r.free = r.free[:n-1]
		return ctx
	}
	r.created++
	return zstd.NewCtx()
}

func (r *ref) put(ctx zstd.Ctx) {
	r.mu.Lock()
	r.free = append(r.free, ctx)
	r.mu.Unlock()
}

// Compress implements delta.Compressor.
func (r *ref) Compress(dst, src []byte) []byte {
	ctx := r.get()
	defer r.put(ctx)
	out, err := ctx.CompressLevel(nil, src, Level)
	if err != nil {
		return nil // stored instead; a valid delta either way
	}
	if len(dst) == 0 {
		return out
	}
	return append(dst, out...)
}
