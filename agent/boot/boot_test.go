package boot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/agent/bootenv"
)

func newSwitch(t *testing.T) *Switch {
	return &Switch{Env: bootenv.File{Path: filepath.Join(t.TempDir(), "env")}, Slots: []string{"A", "B"}, Tries: 3}
}

func TestTryConfirm(t *testing.T) {
	s := newSwitch(t)
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

func TestFallbackWhenNeverConfirmed(t *testing.T) {
	s := newSwitch(t)
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

func TestDisabledSlotNeverBoots(t *testing.T) {
	s := newSwitch(t)
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
