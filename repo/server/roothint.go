package server

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
)

// rootHint tracks the newest N.root.json under metadata/, which the
// server names on every timestamp.json (manifests.RootVersionHeader) so
// that a polling agent can skip its root probe. It is looked up again
// (one stat of N+1.root.json; roots are never removed) whenever the
// served timestamp.json is another version of the file than at the last
// look-up, so a timestamp published after a new root is never served
// with the older hint; and besides when the watched metadata/ changed,
// or at most once per Revalidate elsewhere.
type rootHint struct {
	mu      sync.Mutex
	v       int64
	hdr     atomic.Pointer[[]string] // nil: no root found
	ts      atomic.Pointer[entry]    // the timestamp.json of the last look-up
	checked atomic.Int64             // UnixNano
	gen     atomic.Uint64
}

// rootHeader returns the header value to serve with ts (timestamp.json),
// or nil.
func (s *Server) rootHeader(ctx context.Context, ts *entry) []string {
	h := &s.root
	now := time.Now().UnixNano()
	gen, watched := s.generation()
	fresh := func() bool {
		return h.checked.Load() != 0 && h.ts.Load() == ts &&
			(watched && h.gen.Load() == gen || !watched && now-h.checked.Load() < s.reval)
	}
	if !fresh() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !fresh() && !h.lookup(ctx, s.src) {
			return nil // the store is unreachable: no hint, the agent probes
		}
		h.ts.Store(ts)
		h.gen.Store(gen)
		h.checked.Store(now)
	}
	if p := h.hdr.Load(); p != nil {
		return *p
	}
	return nil
}

// lookup finds the newest root from the last one on (h.mu held).
func (h *rootHint) lookup(ctx context.Context, src source) bool {
	v := h.v
	for ; ; v++ {
		_, err := src.stat(ctx, layout.MetadataDir+"/"+strconv.FormatInt(v+1, 10)+".root.json")
		if errors.Is(err, blob.ErrNotExist) {
			break
		}
		if err != nil {
			return false
		}
	}
	if v > 0 && (v != h.v || h.hdr.Load() == nil) {
		hv := header(strconv.FormatInt(v, 10))
		h.hdr.Store(&hv)
	}
	h.v = v
	return true
}
