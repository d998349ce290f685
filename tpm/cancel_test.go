package tpm

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// stallProxy sits between a TPM client and swtpm. Once armed it holds back
// the next response and reports, on held, that it did; the response is then
// dropped. It puts a cancellation exactly inside a chosen command, which
// timing cannot do on a busy machine or under qemu-user (where
// TestCounterInterrupted's 20 ms lands in a different command each run).
type stallProxy struct {
	addr  string
	armed atomic.Bool
	held  chan struct{}
}

func newStallProxy(t *testing.T, swtpmAddr string) *stallProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &stallProxy{addr: "tcp://" + l.Addr().String(), held: make(chan struct{}, 1)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", strings.TrimPrefix(swtpmAddr, "tcp://"))
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go io.Copy(s, c)
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && p.armed.CompareAndSwap(true, false) {
						p.held <- struct{}{}
						continue // dropped: the client waits until cancelled
					}
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

// TestCounterCancelledMidCommand: a raise cancelled while a TPM command
// waits for its answer, in the first read of the counter as much as in an
// increment, reports context.Canceled, so that callers can tell it from a
// broken TPM.
func TestCounterCancelledMidCommand(t *testing.T) {
	t.Parallel()
	sim, tp := open(t)
	provision(t, tp)
	tp.Close()
	p := newStallProxy(t, sim.Addr())
	tp, err := Open(context.Background(), p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	p.armed.Store(true) // the raise's first command: reading the counter
	go func() { <-p.held; cancel() }()
	if err := tp.RaiseCounter(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("raise cancelled while reading the counter = %v, want context.Canceled", err)
	}
}
