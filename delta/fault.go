package delta

import (
	"context"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// ErrBaseChanged reports that the base file shrank while Encode had it
// mapped: reading the missing pages faulted (SIGBUS), which would have
// killed the program.
var ErrBaseChanged = errors.New("delta: the base file was truncated while the delta was being encoded; do not write a release's image while its delta is built, and encode again")

// faultGuard turns a fault reading the mapped base, in any goroutine of
// an encode that watches it, into ErrBaseChanged and cancels the encode.
// A nil guard catches nothing.
type faultGuard struct {
	cancel context.CancelFunc
	// shrunk reports whether the base's file is now shorter than the
	// mapping: only then is a memory fault the base's (under qemu-user a
	// SIGBUS in a mapping comes with address 0 and looks like a nil
	// dereference, which must not be hidden).
	shrunk func() bool
	mu     sync.Mutex
	err    error
}

// newFaultGuard returns a guard of a mapping of n bytes of f that cancels
// with cancel.
func newFaultGuard(cancel context.CancelFunc, f *os.File, n int64) *faultGuard {
	return &faultGuard{cancel: cancel, shrunk: func() bool {
		st, err := f.Stat()
		return err == nil && st.Size() < n
	}}
}

// watch makes a fault in the calling goroutine a panic that caught can
// recover, and returns a function that undoes it.
func (g *faultGuard) watch() (undo func()) {
	if g == nil {
		return func() {}
	}
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}

// caught takes what recover returned in a deferred call of a watching
// goroutine: a runtime error while the base's file is shorter than its
// mapping is recorded as ErrBaseChanged and reported true; anything else
// panics again.
func (g *faultGuard) caught(r any) bool {
	if r == nil {
		return false
	}
	if _, fault := r.(runtime.Error); !fault || g == nil || !g.shrunk() {
		panic(r)
	}
	g.mu.Lock()
	g.err = ErrBaseChanged
	g.mu.Unlock()
	g.cancel()
	return true
}

// Err returns ErrBaseChanged if a watching goroutine faulted.
func (g *faultGuard) Err() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// errOr returns g.Err() if set, else err.
func (g *faultGuard) errOr(err error) error {
	if e := g.Err(); e != nil {
		return e
	}
	return err
}
