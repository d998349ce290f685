package bootenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

// TestExampleGrubCfg boots examples/boot/grub.cfg in grub-emu, GRUB's
// userspace build, against an ext2 image holding a grubenv written by us:
// GRUB's own load_env and save_env run on our file, and the slot sequence
// must be that of the BOOT_ORDER/BOOT_x_LEFT convention (agent/boot.Select).
func TestExampleGrubCfg(t *testing.T) {
	const hint = "apt-get install -y grub-emu e2fsprogs"
	emu := testenv.LookPath(t, "grub-emu", hint)
	mke2fs := testenv.LookPath(t, "mke2fs", hint)
	debugfs := testenv.LookPath(t, "debugfs", hint)
	script, err := os.ReadFile(filepath.Join("..", "..", "examples", "boot", "grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	grubDir := filepath.Join(dir, "root", "boot", "grub")
	os.MkdirAll(grubDir, 0o755)
	os.WriteFile(filepath.Join(grubDir, "fwctl.cfg"), script, 0o644)
	// Print the choice instead of booting a kernel, which grub-emu cannot.
	os.WriteFile(filepath.Join(grubDir, "grub.cfg"), []byte("source $prefix/fwctl.cfg\n"+
		"echo \"RESULT $fwctl_slot $BOOT_A_LEFT $BOOT_B_LEFT\"\nreboot\n"), 0o644)
	// The agent has just asked to try B, with A as the fallback.
	mustSave(t, GRUB{Path: filepath.Join(grubDir, "grubenv")},
		map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"})
	img := filepath.Join(dir, "disk.img")
	run(t, mke2fs, "-q", "-t", "ext2", "-d", filepath.Join(dir, "root"), img, "4M")
	devmap := filepath.Join(dir, "device.map")
	os.WriteFile(devmap, []byte("(hd0) "+img+"\n"), 0o644)

	result := regexp.MustCompile(`RESULT (\S*) (\S*) (\S*)`)
	boot := func() string {
		cmd := exec.Command(emu, "-m", devmap, "-r", "hd0", "-d", "/boot/grub")
		out, err := cmd.CombinedOutput() // grub-emu exits on reboot
		if err != nil {
			t.Fatalf("grub-emu: %v\n%q", err, out)
		}
		if strings.Contains(string(out), "error:") {
			t.Fatalf("grub-emu reported an error:\n%q", out)
		}
		m := result.FindStringSubmatch(string(out))
		if m == nil {
			return "refill"
		}
		// What GRUB saved is what we read.
		env, err := parseGrubEnv([]byte(run(t, debugfs, "-R", "cat /boot/grub/grubenv", img)))
		if err != nil {
			t.Fatal(err)
		}
		if env["BOOT_A_LEFT"] != m[2] || env["BOOT_B_LEFT"] != m[3] {
			t.Fatalf("GRUB counted A=%s B=%s but saved %q", m[2], m[3], env)
		}
		return m[1] + m[2] + m[3]
	}
	// B is never confirmed: three tries, then A three times, then every
	// count is refilled and B, first in BOOT_ORDER, is tried again.
	want := []string{"B32", "B31", "B30", "A20", "A10", "A00", "refill", "B32"}
	var got []string
	for range want {
		got = append(got, boot())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("boots (slot, A left, B left):\n got %v\nwant %v", got, want)
	}
}
