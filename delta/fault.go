package delta

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
)

// ErrBaseChanged reports that the base file shrank while Encode had it
// mapped: reading the missing pages faulted (SIGBUS), which would have
// killed the program.
var ErrBaseChanged = errors.New("delta: the base file was truncated while the delta was being encoded; do not write a release's image while its delta is built, and encode again")

// faultGuard turns a fault reading the mapped base, in any goroutine of
// an encode that watches it, into ErrBaseChanged and cancels the encode.
// The zero guard, and a nil one, catch nothing.
type faultGuard struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error
}

// watch makes a fault in the calling goroutine a panic that caught can
// recover, and returns a function that undoes it.
func (g *faultGuard) watch() (undo func()) {
	if g == nil || g.cancel == nil {
		return func() {}
	}
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}

// caught takes what recover returned in a deferred call of a watching
// goroutine: a memory fault is recorded as ErrBaseChanged and reported
// true; anything else panics again.
func (g *faultGuard) caught(r any) bool {
	if r == nil {
		return false
	}
	if _, fault := r.(interface{ Addr() uintptr }); !fault || g == nil || g.cancel == nil {
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
