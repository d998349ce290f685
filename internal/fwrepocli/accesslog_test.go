package fwrepocli

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFlushWriter: buffered lines reach the output on the timer and on
// Close; nothing is lost or reordered.
func TestFlushWriter(t *testing.T) {
	var out lockedBuffer
	f := newFlushWriter(&out, 10*time.Millisecond)
	f.Write([]byte("one\n"))
	for i := 0; i < 500 && out.String() == ""; i++ { // count-bounded wait
		time.Sleep(10 * time.Millisecond)
	}
	if got := out.String(); got != "one\n" {
		t.Fatalf("after the interval: %q", got)
	}
	f.Write([]byte("two\n"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
}
