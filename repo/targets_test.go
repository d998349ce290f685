package repo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwctl/fwctl/repo/layout"
)

// TestAddTargetRefuses: names outside the naming rule, counter jumps, and
// a FIFO given as the image (which must not block: the test would hang).
func TestAddTargetRefuses(t *testing.T) {
	w := initWorkspace(t, InitOptions{})
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, []byte("firmware"), 0o644)
	if _, err := w.AddTarget(img, AddOptions{Hardware: []string{"hw1"}, Version: "1.0", Counter: 7}); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "pipe.img")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		image string
		opt   AddOptions
		want  error
		says  string
	}{
		{"backslash", img, AddOptions{Name: `x\y.img`}, layout.ErrInvalidName, "is not allowed"},
		{"percent", img, AddOptions{Name: "x%2e.img"}, layout.ErrInvalidName, `"%"`},
		{"newline", img, AddOptions{Name: "x\ny.img"}, layout.ErrInvalidName, "a newline"},
		{"too long", img, AddOptions{Name: strings.Repeat("n", layout.MaxTargetName+1)}, layout.ErrInvalidName, "at most 174"},
		{"slash", img, AddOptions{Name: "a/b.img"}, layout.ErrInvalidName, "without '/'"},
		{"jump", img, AddOptions{Counter: 1008}, ErrCounterJump, "1001 above the highest release for hardware hw1 (7)"},
		{"first release jumps", img, AddOptions{Hardware: []string{"hw2"}, Counter: 1001}, ErrCounterJump, "hardware hw2 (0)"},
		{"fifo", fifo, AddOptions{}, nil, "is a named pipe (FIFO), not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opt := tt.opt
			if opt.Hardware == nil {
				opt.Hardware = []string{"hw1"}
			}
			opt.Version = "2.0"
			if opt.Counter == 0 {
				opt.Counter = 8
			}
			done := make(chan error, 1)
			go func() { _, err := w.AddTarget(tt.image, opt); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatal("AddTarget blocked")
			}
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("AddTarget = %v, want %v saying %q", err, tt.want, tt.says)
			}
		})
	}
	// With Force, a jump is allowed.
	if _, err := w.AddTarget(img, AddOptions{Hardware: []string{"hw1"}, Version: "3.0", Counter: 5000, Force: true}); err != nil {
		t.Fatal(err)
	}
}

// TestRemoveTarget: unstage a staged target with its deltas; a published
// one only with force.
func TestRemoveTarget(t *testing.T) {
	w := initWorkspace(t, InitOptions{})
	addRelease(t, w, "1.0", 1)
	if _, err := w.Publish(t.TempDir(), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	addRelease(t, w, "2.0", 2)
	if _, err := w.RemoveTarget("hw1/9.9/fw.img", false); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("remove a missing target: %v", err)
	}
	if _, err := w.RemoveTarget("hw1/1.0/fw.img", false); !errors.Is(err, ErrPublishedTarget) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("remove a published target: %v, want ErrPublishedTarget asking for --force", err)
	}
	removed, err := w.RemoveTarget("hw1/2.0/fw.img", false)
	if err != nil || len(removed) != 1 {
		t.Fatalf("RemoveTarget = %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir, "targets", "hw1", "2.0", "fw.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the workspace copy is still there: %v", err)
	}
	ts, _ := w.Targets()
	if len(ts) != 1 || ts[0].Path != "hw1/1.0/fw.img" {
		t.Errorf("staged after remove: %+v", ts)
	}
	if _, err := w.RemoveTarget("hw1/1.0/fw.img", true); err != nil {
		t.Fatal(err)
	}
}
