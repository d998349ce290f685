package delta

import (
	"hash"
	"io"
	"sync/atomic"
)

// asyncWriter hands filled buffers to a goroutine that hashes and writes
// them, so that decoding, hashing and output I/O overlap. Apply's memory
// grows by the few buffers in flight.
type asyncWriter struct {
	cur  []byte // being filled; len is what is filled
	full chan []byte
	free chan []byte
	done chan error
	err  atomic.Pointer[error] // first write error, for failing fast
}

const writeBuffers = 4

// newAsyncWriter writes through buffers of size bytes (at least fieldLen).
func newAsyncWriter(w io.Writer, h hash.Hash, size int) *asyncWriter {
	a := &asyncWriter{
		full: make(chan []byte, writeBuffers),
		free: make(chan []byte, writeBuffers),
		done: make(chan error, 1),
		cur:  make([]byte, 0, size),
	}
	for range writeBuffers - 1 {
		a.free <- make([]byte, 0, size)
	}
	go func() {
		var err error
		for b := range a.full {
			if err == nil {
				h.Write(b)
				if _, err = w.Write(b); err != nil {
					a.err.Store(&err)
				}
			}
			a.free <- b[:0]
		}
		a.done <- err
	}()
	return a
}

// space returns the free part of the current buffer, at least fieldLen
// bytes long. Bytes written into it count once committed.
func (a *asyncWriter) space() ([]byte, error) {
	if cap(a.cur)-len(a.cur) < fieldLen {
		if err := a.flush(); err != nil {
			return nil, err
		}
	}
	return a.cur[len(a.cur):cap(a.cur)], nil
}

func (a *asyncWriter) commit(n int) { a.cur = a.cur[:len(a.cur)+n] }

func (a *asyncWriter) flush() error {
	if e := a.err.Load(); e != nil {
		return *e
	}
	a.full <- a.cur
	a.cur = <-a.free
	return nil
}

// Write copies p into the buffers.
func (a *asyncWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		s, err := a.space()
		if err != nil {
			return n, err
		}
		c := copy(s, p)
		a.commit(c)
		p, n = p[c:], n+c
	}
	return n, nil
}

// Close writes what is buffered, stops the goroutine and returns the first
// write error.
func (a *asyncWriter) Close() error {
	if len(a.cur) > 0 {
		a.full <- a.cur
		a.cur = nil
	}
	close(a.full)
	return <-a.done
}
