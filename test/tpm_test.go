package test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/tpm"
	"github.com/fwctl/fwctl/tpm/tpmtest"
)

// useTPM switches d to a TPM trust store on a private swtpm.
func useTPM(t *testing.T, d *device) *tpmtest.Sim {
	t.Helper()
	sim := tpmtest.Start(t)
	withConfig(t, d, func(m map[string]any) {
		m["trust"] = map[string]any{"type": "tpm", "device": sim.Addr()}
	})
	tp, err := tpm.Open(context.Background(), sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	d.store = tp
	d.ag, err = agent.New(d.cfg, tp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sim
}

// TestTPMRollbackAfterStateRestore: an attacker who restores the agent's
// state directory from an old backup cannot roll the device back, because
// the counter lives in the TPM. With the file store the same restore does
// roll the counter back, which is why status calls it weaker.
func TestTPMRollbackAfterStateRestore(t *testing.T) {
	for _, kind := range []string{"tpm", "file"} {
		t.Run(kind, func(t *testing.T) {
			r := newRelease(t)
			v1 := r.add("1.0.0", 1, 20_000)
			r.publish()
			d := newDevice(t, r.serve(), hw)
			if kind == "tpm" {
				useTPM(t, d)
			}
			d.provision(r.rootJSON())
			d.mustInstall(v1)
			backup := filepath.Join(t.TempDir(), "state")
			if out, err := exec.Command("cp", "-a", d.cfg.StateDir, backup).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			r.add("2.0.0", 40, 20_000) // counters jump
			r.publish()
			if res, err := d.update(); err != nil || !res.Installed {
				t.Fatalf("update to 2.0.0: %v", err)
			}
			if c, _ := d.store.Counter(context.Background()); c != 1 {
				t.Fatalf("counter %d before confirm, want it still 1", c)
			}
			d.boot()
			if _, err := d.ag.Confirm(context.Background()); err != nil {
				t.Fatal(err)
			}
			if c, _ := d.store.Counter(context.Background()); c != 40 {
				t.Fatalf("counter %d after confirm, want 40", c)
			}

			os.RemoveAll(d.cfg.StateDir)
			if out, err := exec.Command("cp", "-a", backup, d.cfg.StateDir).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			c, _ := d.store.Counter(context.Background())
			_, err := d.ag.Update(context.Background(), agent.UpdateOptions{Target: hw + "/1.0.0/firmware.img"})
			switch kind {
			case "tpm":
				if c != 40 || !errors.Is(err, agent.ErrRollback) {
					t.Fatalf("after restoring old state: counter %d, downgrade %v; want 40 and a refused rollback", c, err)
				}
			case "file":
				if c != 1 || err != nil {
					t.Fatalf("file store: counter %d, downgrade %v; want the weakness (1, allowed)", c, err)
				}
			}
		})
	}
}

func TestTPMPinnedRoot(t *testing.T) {
	r := newRelease(t)
	r.add("1.0.0", 1, 1000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	sim := useTPM(t, d)
	d.provision(r.rootJSON())

	// Swap the whole on-disk chain for another root: the TPM pin refuses it.
	other := newRelease(t)
	os.WriteFile(filepath.Join(d.cfg.StateDir, "roots", "1.root.json"), other.rootJSON(), 0o600)
	os.WriteFile(filepath.Join(d.cfg.StateDir, "metadata", "root.json"), other.rootJSON(), 0o600)
	if _, err := d.update(); !errors.Is(err, agent.ErrRootNotPinned) {
		t.Fatalf("update with a swapped root: %v, want root not pinned", err)
	}
	if _, err := d.ag.Provision(context.Background(), other.rootJSON()); !errors.Is(err, trust.ErrAlreadyPinned) {
		t.Fatalf("re-provisioning another root: %v, want already pinned", err)
	}
	// Wiping the state directory does not unpin either; the pin survives a
	// TPM restart.
	os.RemoveAll(d.cfg.StateDir)
	sim.Restart()
	useAgain := func() {
		withConfig(t, d, func(m map[string]any) { m["trust"] = map[string]any{"type": "tpm", "device": sim.Addr()} })
		tp, err := tpm.Open(context.Background(), sim.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tp.Close() })
		d.store = tp
		d.ag, _ = agent.New(d.cfg, tp, nil)
	}
	useAgain()
	if _, err := d.ag.Provision(context.Background(), other.rootJSON()); !errors.Is(err, trust.ErrAlreadyPinned) {
		t.Fatalf("after wipe and TPM restart, provisioning another root: %v, want already pinned", err)
	}
	d.provision(r.rootJSON())
	d.mustInstall(mustRead(t, targetFile(t, r, "1.0.0")))
}
