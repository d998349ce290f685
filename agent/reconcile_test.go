package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent/boot"
	"github.com/fwctl/fwctl/agent/bootenv"
	"github.com/fwctl/fwctl/manifests"
)

// reconcileDevice is a device running slot A with file slots and a real
// boot environment, whose update into B recorded the install as pending.
// cut says how far the switch got before the power was cut: "before-try"
// (Try never became durable) or "fell-back" (Try was durable, the
// bootloader tried B until its attempts ran out and went back to A).
func reconcileDevice(t *testing.T, scheme, cut string) *Agent {
	t.Helper()
	dir := t.TempDir()
	cfg := &Config{StateDir: filepath.Join(dir, "state"), Slots: map[string]string{"A": filepath.Join(dir, "a.img"), "B": filepath.Join(dir, "b.img")}}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var sw boot.Scheme
	switch scheme {
	case "grub-rauc":
		sw = &boot.Switch{Env: bootenv.GRUB{Path: filepath.Join(dir, "grubenv")}, Slots: []string{"A", "B"}}
	case "file-bootcount":
		sw = &boot.BootCount{Env: bootenv.File{Path: filepath.Join(dir, "env")}, Slots: []string{"A", "B"}}
	}
	a := &Agent{cfg: cfg, sw: sw, log: slog.New(slog.DiscardHandler), Now: time.Now}
	img := manifests.Image{Target: "fw/2.0.0.img", Version: "2.0.0", SHA256: "ab12", Length: 4}
	os.WriteFile(cfg.Slots["A"], []byte("old!"), 0o644)
	os.WriteFile(cfg.Slots["B"], []byte("new!"), 0o644)
	if _, err := sw.Init("A"); err != nil {
		t.Fatal(err)
	}
	// the update: Disable, write, verify, record pending, Try
	if err := sw.Disable("B"); err != nil {
		t.Fatal(err)
	}
	st, err := a.loadState()
	if err != nil {
		t.Fatal(err)
	}
	st.Slots["B"] = &SlotState{Status: manifests.SlotInstalled, Image: img}
	st.Pending = &Install{Slot: "B", Image: img, At: time.Now()}
	if err := a.saveState(st); err != nil {
		t.Fatal(err)
	}
	if cut == "fell-back" {
		if err := sw.Try("B"); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			s, err := sw.Select()
			if err != nil || i > boot.DefaultTries+1 {
				t.Fatalf("boot %d: %q, %v: never fell back to A", i, s, err)
			}
			if s == "A" {
				break
			}
		}
	}
	return a
}

// TestReconcileInterruptedSwitch: a power cut after the install was
// recorded as pending and before the switch to the new slot was durable
// (test/vm's crash states found it) left the bootloader never asked to try
// B. That is an interrupted install, not a fallback: the release must stay
// installable without --retry. A real fallback stays a failed release, so
// a slot that fell back is never installed again automatically.
func TestReconcileInterruptedSwitch(t *testing.T) {
	for _, scheme := range []string{"grub-rauc", "file-bootcount"} {
		t.Run(scheme, func(t *testing.T) {
			a := reconcileDevice(t, scheme, "before-try")
			st, err := a.reconcile("A")
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending != nil || len(st.Failed) != 0 {
				t.Fatalf("a switch that never became durable: pending %+v, failed %+v; want nothing pending and no failed release", st.Pending, st.Failed)
			}
			if st.Last == nil || st.Last.Outcome != manifests.OutcomeFailed || st.Slots["B"].Status == manifests.SlotBad {
				t.Fatalf("last %+v, slot B %q: want an interrupted (failed) attempt, slot not bad", st.Last, st.Slots["B"].Status)
			}
			if saved, _ := a.loadState(); saved.Pending != nil || len(saved.Failed) != 0 {
				t.Fatalf("state file not updated: %+v", saved)
			}

			a = reconcileDevice(t, scheme, "fell-back")
			st, err = a.reconcile("A")
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending != nil || len(st.Failed) != 1 || st.Failed[0].Outcome != manifests.OutcomeFellBack || st.Slots["B"].Status != manifests.SlotBad {
				t.Fatalf("a real fallback: pending %+v, failed %+v, slot B %q; want the release recorded as fallen back", st.Pending, st.Failed, st.Slots["B"].Status)
			}
		})
	}
}
