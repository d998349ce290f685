//go:build unix

package agent

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// TestLockExcludes: while one fwagent holds the device's lock, another's
// update or confirm waits and gives up with ErrBusy when its context ends,
// and takes the lock once it is free. (Each Agent opens the lock file
// itself, as two processes do: flock conflicts between open files.)
func TestLockExcludes(t *testing.T) {
	dir := t.TempDir()
	newAgent := func(stateDir string) *Agent {
		return &Agent{cfg: &Config{StateDir: stateDir}, log: slog.New(slog.DiscardHandler), Now: time.Now}
	}
	holder, other := newAgent(dir), newAgent(dir)
	unlock, err := holder.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := other.lock(ended); !errors.Is(err, ErrBusy) {
		t.Fatalf("lock while held: %v, want ErrBusy", err)
	}
	if _, err := other.Confirm(ended); !errors.Is(err, ErrBusy) {
		t.Fatalf("confirm while an update holds the lock: %v, want ErrBusy", err)
	}
	if _, err := other.Update(ended, UpdateOptions{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("update while another holds the lock: %v, want ErrBusy", err)
	}
	unlock()
	again, err := other.lock(ended)
	if err != nil {
		t.Fatalf("lock once free: %v", err)
	}
	again()
	if u, err := newAgent(filepath.Join(dir, "missing")).lock(ended); err != nil {
		t.Fatalf("no state directory yet: %v, want no lock and no error", err)
	} else {
		u()
	}
}
