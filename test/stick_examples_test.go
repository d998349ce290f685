package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
)

// unplug unmounts a plugged stick (the operator pulls it).
func (s *stick) unplug() {
	s.t.Helper()
	run(s.t, "umount", s.mnt)
}

// exitCode runs cmd and returns its exit status and output.
func exitCode(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%s: %v", cmd, err)
	return 0, ""
}

// TestStickExamples (issue 17) checks examples/offline/ for real: systemd
// verifies the unit (with the script as its ExecStart), udev's own rule
// engine starts it for a loop device labelled FWUPDATE and not for another
// label, and the script, run as the unit runs it against a vfat stick on a
// loop device with the real fwagent, installs from the stick and writes
// the signed report back, which 'fwrepo reports import' then verifies and
// stores; a report already imported is refused as a replay.
func TestStickExamples(t *testing.T) {
	script, err := filepath.Abs(filepath.Join("..", "examples", "offline", "fwctl-stick-update"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("systemd unit", func(t *testing.T) {
		analyze := testenv.LookPath(t, "systemd-analyze", "apt-get install -y systemd")
		b, err := os.ReadFile(filepath.Join("..", "examples", "offline", "fwctl-stick-update@.service"))
		if err != nil {
			t.Fatal(err)
		}
		// An instance, as the rule starts it, with the script where the
		// unit expects it installed.
		p := filepath.Join(t.TempDir(), "fwctl-stick-update@sdb1.service")
		os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/libexec/fwctl/fwctl-stick-update", script)), 0o644)
		out, err := exec.Command(analyze, "verify", "--man=no", p).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Fatalf("systemd-analyze verify: %v (a warning counts as a failure)\n%s", err, out)
		}
		// It mounts, so it cannot be as tight as fwrepo; now 5.6.
		if out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=60", p).CombinedOutput(); err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Errorf("exposure above 6.0: %v\n%s", err, lines[len(lines)-1])
		}
	})

	t.Run("shellcheck", func(t *testing.T) {
		sc := testenv.LookPath(t, "shellcheck", "apt-get install -y shellcheck")
		if out, err := exec.Command(sc, "-s", "sh", script).CombinedOutput(); err != nil {
			t.Fatalf("shellcheck %s: %v\n%s", script, err, out)
		}
	})

	t.Run("udev rule", func(t *testing.T) {
		udevadm := testenv.LookPath(t, "udevadm", "apt-get install -y udev")
		// udevadm test (systemd 252; 'udevadm verify' came in 254) reads
		// the system's rule directories only: the rule goes into the
		// runtime one for the test.
		rule := fmt.Sprintf("/run/udev/rules.d/90-fwctl-stick-test%d.rules", os.Getpid())
		b, err := os.ReadFile(filepath.Join("..", "examples", "offline", "90-fwctl-stick.rules"))
		if err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() != 0 {
			testenv.Missing(t, "root", "the rule is tested from /run/udev/rules.d")
		}
		os.MkdirAll(filepath.Dir(rule), 0o755)
		if err := os.WriteFile(rule, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(rule) })
		for _, label := range []string{"FWUPDATE", "HOLIDAYPIX"} {
			s := newStick(t, label, 8)
			name := filepath.Base(s.dev)
			out, err := exec.Command(udevadm, "test", "--action=add", "/sys/class/block/"+name).CombinedOutput()
			if err != nil {
				t.Fatalf("udevadm test %s: %v\n%s", s.dev, err, out)
			}
			if !strings.Contains(string(out), "ID_FS_LABEL="+label+"\n") {
				t.Fatalf("udev's blkid did not see label %s on %s:\n%s", label, s.dev, out)
			}
			want := "SYSTEMD_WANTS=fwctl-stick-update@" + name + ".service"
			if got := strings.Contains(string(out), want); got != (label == "FWUPDATE") {
				t.Fatalf("label %s: %q in udevadm test's output = %v:\n%s", label, want, got, out)
			}
		}
	})

	t.Run("script", func(t *testing.T) {
		bin := buildPrograms(t)
		r := newRelease(t)
		p1, img1 := addTarget(r, "1.0.0", 1, 1<<20)
		r.publish()
		s := newStick(t, "FWUPDATE", 32)
		s.put(writeBundle(t, r, p1), "site.fwbundle")
		d := identityDevice(t, r, "http://127.0.0.1:1")
		dbPath := filepath.Join(t.TempDir(), "fleet.db")
		db, err := inventory.Open(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		key := d.register(db)
		plug := func(wantCode int) string {
			t.Helper()
			cmd := exec.Command("sh", script, s.dev)
			cmd.Env = append(os.Environ(), "FWAGENT="+filepath.Join(bin, "fwagent"),
				"FWAGENT_CONFIG="+filepath.Join(d.dir, "config.json"), "FWCTL_STICK_RUN="+t.TempDir())
			code, out := exitCode(t, cmd)
			if code != wantCode {
				t.Fatalf("fwctl-stick-update: exit %d, want %d:\n%s", code, wantCode, out)
			}
			return out
		}
		importStick := func(wantCode int) string {
			t.Helper()
			s.plug()
			defer s.unplug()
			code, out := exitCode(t, exec.Command(filepath.Join(bin, "fwrepo"), "reports", "import", "--db", dbPath, s.mnt))
			if code != wantCode {
				t.Fatalf("fwrepo reports import: exit %d, want %d:\n%s", code, wantCode, out)
			}
			return out
		}

		// On the site: plugged in, installed (exit 10), report written.
		plug(10)
		d.reload()
		d.boot()
		if _, err := d.ag.Confirm(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.assertRunning(img1)
		// At the office: the report says what happened.
		if out := importStick(0); !strings.Contains(out, "imported") {
			t.Fatalf("import: %s", out)
		}
		dev, _ := db.Device(context.Background(), key.KeyID())
		if dev.Manifest == nil || dev.Manifest.Slots[d.other(dev.Manifest.RunningSlot)].Version != "1.0.0" {
			t.Fatalf("stored report: %+v", dev.Manifest)
		}
		// Plugged in again after the reboot: nothing newer (exit 0), the
		// confirmation goes onto the stick; the first report, imported
		// already, is refused as a replay, the new one imported.
		plug(0)
		out := importStick(3)
		if strings.Count(out, "imported ") != 1 || !strings.Contains(out, "already stored") {
			t.Fatalf("second import: %s", out)
		}
		hist, _ := db.History(context.Background(), key.KeyID(), 0)
		if len(hist) == 0 || hist[0].Outcome != manifests.OutcomeConfirmed || hist[0].Version != "1.0.0" {
			t.Fatalf("history after the second import: %+v", hist)
		}
	})
}
