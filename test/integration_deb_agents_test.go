package test

import (
	"debug/elf"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

// TestDebianAgentPackages builds fwagent's packages for the device
// architectures with `make deb-agents` and checks each one as a device
// would get it: the Debian architecture field, the files it installs, an
// ELF binary for that machine, and the binary run from the unpacked
// package under qemu-user reporting the build's version.
func TestDebianAgentPackages(t *testing.T) {
	dpkgDeb := testenv.LookPath(t, "dpkg-deb", "apt-get install -y dpkg")
	dist := makeDist(t, "deb-agents")
	for _, tc := range []struct {
		debArch string
		machine elf.Machine
		qemu    string
	}{
		{"armhf", elf.EM_ARM, "qemu-arm-static"},
		{"arm64", elf.EM_AARCH64, "qemu-aarch64-static"},
		{"riscv64", elf.EM_RISCV, "qemu-riscv64-static"},
	} {
		t.Run(tc.debArch, func(t *testing.T) {
			debs, _ := filepath.Glob(filepath.Join(dist, "agents", "fwagent_*_"+tc.debArch+".deb"))
			if len(debs) != 1 {
				t.Fatalf("make deb-agents wrote %v for %s, want one fwagent package", debs, tc.debArch)
			}
			field := func(name string) string {
				out, err := exec.Command(dpkgDeb, "--field", debs[0], name).Output()
				if err != nil {
					t.Fatalf("dpkg-deb --field %s: %v", name, err)
				}
				return strings.TrimSpace(string(out))
			}
			if got := field("Architecture"); got != tc.debArch {
				t.Errorf("Architecture %q, want %q", got, tc.debArch)
			}
			if got := field("Package"); got != "fwagent" {
				t.Errorf("Package %q, want fwagent", got)
			}
			list, err := exec.Command(dpkgDeb, "--contents", debs[0]).Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"./usr/bin/fwagent", "./lib/systemd/system/fwagent.service", "fwagent.1", "examples/config"} {
				if !strings.Contains(string(list), want) {
					t.Errorf("package lacks %s:\n%s", want, list)
				}
			}
			root := t.TempDir()
			if out, err := exec.Command(dpkgDeb, "-x", debs[0], root).CombinedOutput(); err != nil {
				t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
			}
			bin := filepath.Join(root, "usr", "bin", "fwagent")
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != tc.machine {
				t.Errorf("ELF machine %v, want %v", f.Machine, tc.machine)
			}
			f.Close()
			qemu := testenv.LookPath(t, tc.qemu, "apt-get install -y qemu-user-static")
			out, err := exec.Command(qemu, bin, "version", "--json").Output()
			if err != nil {
				t.Fatalf("%s fwagent version: %v", tc.qemu, err)
			}
			var v struct{ Version string }
			if err := json.Unmarshal(out, &v); err != nil || v.Version != "v0.0.0-itest" {
				t.Errorf("version %q (%v), want v0.0.0-itest:\n%s", v.Version, err, out)
			}
		})
	}
}
