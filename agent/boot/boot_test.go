package boot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/agent/bootenv"
)

// schemes runs a test against every boot-counting scheme.
func schemes(t *testing.T, f func(t *testing.T, s Scheme)) {
	for name, mk := range map[string]func(env bootenv.Env) Scheme{
		"rauc":      func(env bootenv.Env) Scheme { return &Switch{Env: env, Slots: []string{"A", "B"}, Tries: 3} },
		"bootcount": func(env bootenv.Env) Scheme { return &BootCount{Env: env, Slots: []string{"A", "B"}, Tries: 3} },
	} {
		t.Run(name, func(t *testing.T) { f(t, mk(bootenv.File{Path: filepath.Join(t.TempDir(), "env")})) })
	}
}

func TestTryConfirm(t *testing.T) { schemes(t, testTryConfirm) }

func testTryConfirm(t *testing.T, s Scheme) {
	if _, err := s.Init("A"); err != nil {
		t.Fatal(err)
	}
	if sl, _ := s.Select(); sl != "A" {
		t.Fatalf("boot %s, want A", sl)
	}
	s.Try("B")
	if sl, _ := s.Select(); sl != "B" {
		t.Fatalf("boot %s, want B", sl)
	}
	s.MarkGood("B")
	for range 5 {
		if sl, _ := s.Select(); sl != "B" {
			t.Fatalf("boot %s, want B", sl)
		}
		s.MarkGood("B") // the agent confirms on every boot
	}
}

func TestFallbackWhenNeverConfirmed(t *testing.T) { schemes(t, testFallback) }

func testFallback(t *testing.T, s Scheme) {
	s.Init("A")
	s.Select()
	s.Try("B")
	var got []string
	for range 5 {
		sl, _ := s.Select()
		got = append(got, sl)
	}
	want := []string{"B", "B", "B", "A", "A"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("boots %v, want %v", got, want)
		}
	}
}

func TestDisabledSlotNeverBoots(t *testing.T) { schemes(t, testDisabled) }

func testDisabled(t *testing.T, s Scheme) {
	s.Init("A")
	s.Try("B")
	s.Disable("B")
	if sl, _, _ := s.Primary(); sl != "A" {
		t.Fatalf("primary %s, want A", sl)
	}
}

func TestBootedSlot(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		cmdline string
		want    string
		err     error
	}{
		{"root=/dev/mmcblk0p2 fwctl.slot=A quiet", "A", nil},
		{"fwctl.slot=B", "B", nil},
		{"quiet", "", ErrAmbiguous},
		{"fwctl.slot=A fwctl.slot=B", "", ErrAmbiguous},
		{"fwctl.slot=C", "", ErrAmbiguous},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, "cmdline")
		os.WriteFile(p, []byte(tt.cmdline), 0o644)
		got, err := BootedSlot(p, "fwctl.slot", []string{"A", "B"})
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%q: got %q, %v; want %q, %v", tt.cmdline, got, err, tt.want, tt.err)
		}
	}
}

func TestBootedSlotFromEnv(t *testing.T) {
	slots := []string{"A", "B"}
	for _, tt := range []struct {
		vars map[string]string
		want string
		err  error
	}{
		{map[string]string{"fwctl_slot": "B"}, "B", nil},
		{map[string]string{}, "", ErrAmbiguous},
		{map[string]string{"fwctl_slot": ""}, "", ErrAmbiguous},
		{map[string]string{"fwctl_slot": "C"}, "", ErrAmbiguous},
	} {
		got, err := BootedSlotFromEnv(tt.vars, "fwctl_slot", slots)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%v: %q %v, want %q %v", tt.vars, got, err, tt.want, tt.err)
		}
	}
}

// TestDisabledSlotNeverRefilled: a slot being written is out of BOOT_ORDER,
// so even when the running slot exhausts its attempts (nobody confirms) the
// bootloader's last-resort refill never revives the partial slot.
func TestDisabledSlotNeverRefilled(t *testing.T) {
	s := &Switch{Env: bootenv.File{Path: filepath.Join(t.TempDir(), "env")}, Slots: []string{"A", "B"}, Tries: 3}
	s.Init("A")
	s.Try("B")
	s.MarkGood("B") // B confirmed, A the fallback
	s.Disable("A")  // A is being overwritten when power fails
	for i := range 12 {
		if sl, _ := s.Select(); sl != "B" {
			t.Fatalf("boot %d chose %s, a slot that may hold a partial image", i, sl)
		}
	}
	s.Try("A") // written and verified: back in the order
	if sl, _ := s.Select(); sl != "A" {
		t.Fatalf("after Try the bootloader chose %s, want A", sl)
	}
}

// TestTried: Disable takes a slot out until Try puts it back, and a trial
// the bootloader gave up on still counts as tried, in both schemes.
func TestTried(t *testing.T) {
	for name, sw := range map[string]Scheme{
		"rauc":      &Switch{Env: bootenv.File{Path: filepath.Join(t.TempDir(), "env")}, Slots: []string{"A", "B"}},
		"bootcount": &BootCount{Env: bootenv.File{Path: filepath.Join(t.TempDir(), "env")}, Slots: []string{"A", "B"}},
	} {
		tried := func(want bool, when string) {
			t.Helper()
			if got, err := sw.Tried("B"); err != nil || got != want {
				t.Fatalf("%s: Tried(B) = %v, %v after %s; want %v", name, got, err, when, want)
			}
		}
		sw.Init("A")
		sw.Disable("B")
		tried(false, "Disable")
		sw.Try("B")
		tried(true, "Try")
		for range DefaultTries + 1 {
			sw.Select()
		}
		if s, _, _ := sw.Primary(); s != "A" {
			t.Fatalf("%s: primary %s after the trial ran out, want A", name, s)
		}
		tried(true, "a fallback")
		sw.MarkGood("A")
		sw.Disable("B")
		tried(false, "Disable again")
	}
}
