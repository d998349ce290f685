package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

// TestSystemdUnits checks examples/systemd/ with systemd's own verifier:
// every unit parses without a warning and its ExecStart= binaries exist and
// are executable (the real fwagent and fwrepo, built here, in place of
// /usr/bin/...), and `systemd-analyze security` rates the hardening of each
// service no worse than its threshold.
func TestSystemdUnits(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze", "apt-get install -y systemd")
	bin := buildPrograms(t)
	units, err := filepath.Glob(filepath.Join("..", "examples", "systemd", "*"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		if !strings.HasSuffix(u, ".service") && !strings.HasSuffix(u, ".timer") {
			continue
		}
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("/usr/bin/fwagent", filepath.Join(bin, "fwagent"),
			"/usr/bin/fwrepo", filepath.Join(bin, "fwrepo")).Replace(string(b))
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if len(paths) < 4 {
		t.Fatalf("found %d units in examples/systemd, want fwagent.service, fwagent-confirm.{service,timer}, fwrepo.service", len(paths))
	}
	// --man=no: the man pages of Documentation= come with the packages
	// (TestDebianPackages checks them installed).
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v (a warning counts as a failure)\n%s", err, out)
	}
	// Exposure levels as systemd rates them, in tenths (0 best, 100
	// worst; now 1.4 and 4.5). fwagent runs as root and writes block
	// devices, the TPM and the bootloader environment, so it cannot be as
	// tight as fwrepo.
	for unit, max := range map[string]int{"fwrepo.service": 20, "fwagent.service": 50, "fwagent-confirm.service": 50} {
		out, err := exec.Command(analyze, "security", "--offline=yes", fmt.Sprintf("--threshold=%d", max), filepath.Join(dir, unit)).CombinedOutput()
		if err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Errorf("%s: exposure above %d.%d: %v\n%s", unit, max/10, max%10, err, lines[len(lines)-1])
		}
	}
}
