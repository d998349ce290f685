package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/tpm"
	"github.com/fwctl/fwctl/internal/testenv"
)

// agentSizeBudget is the most the stripped arm64 fwagent may weigh, in
// bytes (DESIGN.md: the agent is small).
const agentSizeBudget = 8 << 20 // 8 MiB, the usual unit of flash budgets

// TestCrossArm64 builds the release fwagent for arm64 (scripts/build-agent.sh,
// the binary 'make cross' ships) and
//   - size: holds it to its size budget;
//   - update: runs it under qemu-aarch64-static against an amd64 fwrepo
//     handler: provision, install into file slots, reboot, confirm;
//   - report: provisions it on swtpm and has it sign a device manifest with
//     the TPM key, which fwrepo's device API verifies and stores.
func TestCrossArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fwagent for arm64 and runs it under qemu; skipped with -short")
	}
	qemu := testenv.LookPath(t, "qemu-aarch64-static", "apt-get install -y qemu-user-static")
	script, err := filepath.Abs(filepath.Join("..", "scripts", "build-agent.sh"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "fwagent-linux-arm64")
	build := exec.Command(script, "arm64", bin)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build arm64 fwagent: %v\n%s", err, out)
	}

	t.Run("size", func(t *testing.T) {
		fi, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("stripped arm64 fwagent: %d bytes (%.2f MB), budget %d", fi.Size(), float64(fi.Size())/1e6, agentSizeBudget)
		if fi.Size() > agentSizeBudget {
			t.Errorf("stripped arm64 fwagent is %d bytes, over its budget of %d by %d: see 'go tool nm -size -sort size' for what grew",
				fi.Size(), agentSizeBudget, fi.Size()-agentSizeBudget)
		}
	})

	t.Run("update", func(t *testing.T) {
		r := newRelease(t)
		v1 := r.add("1.0.0", 1, 300_000)
		r.publish()
		d := newDevice(t, r.serve(), hw)
		root := filepath.Join(d.dir, "1.root.json")
		if err := os.WriteFile(root, r.rootJSON(), 0o644); err != nil {
			t.Fatal(err)
		}
		run := func(want int, args ...string) []byte {
			t.Helper()
			cmd := exec.Command(qemu, append([]string{bin}, args...)...)
			cmd.Dir = d.dir
			cmd.Env = append(os.Environ(), "FWAGENT_CONFIG="+filepath.Join(d.dir, "config.json"), "CI=1")
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != want {
				t.Fatalf("fwagent %v (arm64 under qemu) exited %d (%v), want %d\nstdout: %s\nstderr: %s", args, code, err, want, out.Bytes(), stderr.Bytes())
			}
			return out.Bytes()
		}
		run(0, "provision", "--root", root)
		run(10, "update")
		run(0, "simulate-boot")
		run(0, "confirm")
		var st struct {
			BootedSlot string `json:"booted_slot"`
			Counter    uint64 `json:"counter"`
		}
		if err := json.Unmarshal(run(0, "status", "--json"), &st); err != nil {
			t.Fatal(err)
		}
		if st.BootedSlot != "B" || st.Counter != 1 {
			t.Fatalf("after the update: running slot %s, counter %d; want B, 1", st.BootedSlot, st.Counter)
		}
		if got := mustRead(t, filepath.Join(d.dir, "slotB.img")); !bytes.Equal(got, v1) {
			t.Fatalf("slot B holds %d bytes that are not the released image", len(got))
		}
		run(0, "update") // up to date
	})

	t.Run("report", func(t *testing.T) {
		rp := newReporting(t)         // a device on swtpm with v1 confirmed, registered
		rp.d.store.(*tpm.TPM).Close() // swtpm serves one client: leave it to the arm64 agent
		withConfig(t, rp.d, func(m map[string]any) {
			m["trust"] = map[string]any{"type": "tpm", "device": rp.sim.Addr()}
		})
		cmd := exec.Command(qemu, bin, "report", "--json")
		cmd.Dir = rp.d.dir
		cmd.Env = append(os.Environ(), "FWAGENT_CONFIG="+filepath.Join(rp.d.dir, "config.json"), "CI=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("fwagent report (arm64 under qemu): %v\n%s", err, out)
		}
		dev, err := rp.db.Device(context.Background(), rp.key.KeyID())
		if err != nil || dev.Manifest == nil || dev.Manifest.Running().Version != "1.0.0" {
			t.Fatalf("fwrepo did not store the arm64 agent's report: %+v, %v\n%s", dev, err, out)
		}
	})
}
