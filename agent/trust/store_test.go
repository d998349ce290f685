package trust_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/tpm"
	"github.com/fwctl/fwctl/tpm/tpmtest"
)

// backend is one trust.Store implementation. fresh returns a function that
// opens one new, unprovisioned store; calling it again opens the same store
// anew (as after a reboot).
type backend struct {
	name  string
	fresh func(t *testing.T) func(t *testing.T) trust.Store
}

var backends = []backend{
	{"file", func(t *testing.T) func(t *testing.T) trust.Store {
		dir := t.TempDir()
		return func(*testing.T) trust.Store { return trust.File{Dir: dir} }
	}},
	{"tpm", func(t *testing.T) func(t *testing.T) trust.Store {
		sim := tpmtest.Start(t) // swtpm, through internal/testenv
		var cur *tpm.TPM
		return func(t *testing.T) trust.Store {
			// swtpm serves one connection: reopening closes the last one,
			// as a reboot would.
			if cur != nil {
				cur.Close()
			}
			tp, err := tpm.Open(context.Background(), sim.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tp.Close() })
			cur = tp
			return tp
		}
	}},
}

var (
	rootA = sha256.Sum256([]byte("root A"))
	rootB = sha256.Sum256([]byte("root B"))
)

// TestStoreConformance is the one suite every trust.Store passes: nothing
// works before provisioning, provisioning pins one root for good and is
// idempotent, the counter starts at 0 and only grows, and everything
// survives reopening the store.
func TestStoreConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			open := b.fresh(t)
			s := open(t)
			if s.Kind() == "" {
				t.Error("Kind is empty: status output needs a backend name")
			}

			// Before provisioning.
			if _, err := s.PinnedRoot(ctx); !errors.Is(err, trust.ErrNotProvisioned) {
				t.Errorf("PinnedRoot before provisioning: %v, want ErrNotProvisioned", err)
			}
			if _, err := s.Counter(ctx); !errors.Is(err, trust.ErrNotProvisioned) {
				t.Errorf("Counter before provisioning: %v, want ErrNotProvisioned", err)
			}
			if err := s.RaiseCounter(ctx, 1); !errors.Is(err, trust.ErrNotProvisioned) {
				t.Errorf("RaiseCounter before provisioning: %v, want ErrNotProvisioned", err)
			}

			// Provisioning pins the root and creates the counter at 0.
			p, err := s.Provision(ctx, rootA)
			if err != nil {
				t.Fatal(err)
			}
			if !p.RootPinned || p.RootWasPinned || !p.CounterCreated {
				t.Errorf("first Provision reported %+v, want root pinned and counter created", p)
			}
			assertState(t, s, rootA, 0)

			// Again with the same root: a no-op that says so.
			p, err = s.Provision(ctx, rootA)
			if err != nil {
				t.Fatal(err)
			}
			if p.RootPinned || !p.RootWasPinned || p.CounterCreated {
				t.Errorf("second Provision reported %+v, want only root_was_pinned", p)
			}
			// Another root is refused and changes nothing.
			if _, err := s.Provision(ctx, rootB); !errors.Is(err, trust.ErrAlreadyPinned) {
				t.Errorf("Provision with another root: %v, want ErrAlreadyPinned", err)
			}
			assertState(t, s, rootA, 0)

			// The counter only grows.
			for _, tt := range []struct{ raise, want uint64 }{{3, 3}, {2, 3}, {3, 3}, {0, 3}, {7, 7}} {
				if err := s.RaiseCounter(ctx, tt.raise); err != nil {
					t.Fatalf("RaiseCounter(%d): %v", tt.raise, err)
				}
				if got, err := s.Counter(ctx); err != nil || got != tt.want {
					t.Fatalf("after RaiseCounter(%d) the counter is %d (%v), want %d", tt.raise, got, err, tt.want)
				}
			}

			// All of it survives reopening, and the reopened store still
			// refuses another root and a lower counter.
			s2 := open(t)
			assertState(t, s2, rootA, 7)
			if _, err := s2.Provision(ctx, rootB); !errors.Is(err, trust.ErrAlreadyPinned) {
				t.Errorf("reopened: Provision with another root: %v, want ErrAlreadyPinned", err)
			}
			if err := s2.RaiseCounter(ctx, 1); err != nil {
				t.Fatal(err)
			}
			assertState(t, s2, rootA, 7)
		})
	}
}

func assertState(t *testing.T, s trust.Store, root [32]byte, counter uint64) {
	t.Helper()
	ctx := context.Background()
	if got, err := s.PinnedRoot(ctx); err != nil || got != root {
		t.Fatalf("PinnedRoot = %x (%v), want %x", got[:4], err, root[:4])
	}
	if got, err := s.Counter(ctx); err != nil || got != counter {
		t.Fatalf("Counter = %d (%v), want %d", got, err, counter)
	}
}
