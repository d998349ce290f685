package bootenv

// Cross-checks against the real U-Boot tools, both directions. They skip
// when the tools are missing and fail under FW_REQUIRE_REAL=1.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

const ubootToolsHint = "apt-get install -y libubootenv-tool u-boot-tools"

// fwTools runs libubootenv's fw_printenv and fw_setenv against one config.
type fwTools struct {
	t      *testing.T
	cfg    string
	defenv string // empty default environment, so fw_setenv works on blank storage
}

func newFwTools(t *testing.T, cfg string) fwTools {
	t.Helper()
	testenv.LookPath(t, "fw_printenv", ubootToolsHint)
	testenv.LookPath(t, "fw_setenv", ubootToolsHint)
	def := filepath.Join(filepath.Dir(cfg), "defenv")
	if err := os.WriteFile(def, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return fwTools{t: t, cfg: cfg, defenv: def}
}

// printenv returns what fw_printenv prints, parsed back into variables.
func (f fwTools) printenv() map[string]string {
	f.t.Helper()
	out := run(f.t, "fw_printenv", "-c", f.cfg)
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func (f fwTools) setenv(name, value string) {
	f.t.Helper()
	run(f.t, "fw_setenv", "-c", f.cfg, "-f", f.defenv, name, value)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

var ubootLayouts = []struct{ name, cfg string }{
	{"Single", "env 0 0x2000\n"},
	{"SingleAtOffset", "# header\nenv 0x1000 0x1000 0x1000 1\n"},
	{"Redundant", "env 0 0x2000\nenv 0x2000 0x2000\n"},
	{"RedundantTwoFiles", "env1 0 0x1000\nenv2 0 0x1000\n"},
}

// fwRequiresFiles creates the device files: libubootenv refuses a config
// whose devices do not exist.
func fwRequiresFiles(t *testing.T, cfgPath string) {
	t.Helper()
	b, _ := os.ReadFile(cfgPath)
	cfg, err := ParseFwEnvConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Copies {
		f, err := os.OpenFile(c.Path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		if end := c.Offset + c.Size; fi.Size() < end {
			f.Truncate(end)
		}
		f.Close()
	}
}

func TestUBootSaveThenFwPrintenv(t *testing.T) {
	for _, l := range ubootLayouts {
		t.Run(l.name, func(t *testing.T) {
			cfg := writeConfig(t, l.cfg)
			fwRequiresFiles(t, cfg)
			fw := newFwTools(t, cfg)
			u := mustOpenUBoot(t, cfg)
			for i := range 4 {
				want := map[string]string{
					"BOOT_ORDER": "A B", "bootargs": "console=ttyS0,115200 quiet",
					"msg": "grüße ✓", "n": fmt.Sprint(i),
				}
				mustSave(t, u, want)
				assertVars(t, fw.printenv(), want)
			}
		})
	}
}

func TestFwSetenvThenUBootLoad(t *testing.T) {
	for _, l := range ubootLayouts {
		t.Run(l.name, func(t *testing.T) {
			cfg := writeConfig(t, l.cfg)
			fwRequiresFiles(t, cfg)
			fw := newFwTools(t, cfg)
			u := mustOpenUBoot(t, cfg)
			want := map[string]string{}
			for i := range 5 {
				k, v := fmt.Sprintf("v%d", i%3), fmt.Sprintf("x y %d", i)
				fw.setenv(k, v)
				want[k] = v
				assertVars(t, mustLoad(t, u), want)
			}
			fw.setenv("v0", "") // an empty value is kept, as in U-Boot's own format
			want["v0"] = ""
			assertVars(t, mustLoad(t, u), want)
			run(t, "fw_setenv", "-c", cfg, "v0") // no value deletes
			delete(want, "v0")
			assertVars(t, mustLoad(t, u), want)
		})
	}
}

// TestUBootMatchesFwSetenvBytes interleaves fw_setenv and Save on one
// redundant environment and compares every write byte for byte with what
// the other tool writes, flags counter included.
func TestUBootMatchesFwSetenvBytes(t *testing.T) {
	cfg := writeConfig(t, "env1 0 0x1000\nenv2 0 0x1000\n")
	fwRequiresFiles(t, cfg)
	fw := newFwTools(t, cfg)
	u := mustOpenUBoot(t, cfg)
	dir := filepath.Dir(cfg)
	copyPath := func(i int) string { return filepath.Join(dir, fmt.Sprintf("env%d", i+1)) }

	vars := map[string]string{}
	for step := range 6 {
		vars[fmt.Sprintf("k%d", step)] = fmt.Sprintf("value %d", step)
		if step%2 == 0 {
			fw.setenv(fmt.Sprintf("k%d", step), vars[fmt.Sprintf("k%d", step)])
		} else {
			mustSave(t, u, vars)
		}
		// Copies alternate, starting with copy 1 (copy 0 is taken as
		// current when both are blank), and the flags count 1, 2, 3...
		written := (step + 1) % 2
		got, err := os.ReadFile(copyPath(written))
		if err != nil {
			t.Fatal(err)
		}
		if got[4] != byte(step+1) {
			t.Fatalf("step %d: flags of copy %d = %d, want %d", step, written, got[4], step+1)
		}
		want, err := encodeUBootEnv(vars, 0x1000, true, byte(step+1))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("step %d: copy %d differs from our encoding:\n got % x\nwant % x", step, written, got[:64], want[:64])
		}
	}
}

func TestMkenvimageThenUBootLoad(t *testing.T) {
	testenv.LookPath(t, "mkenvimage", ubootToolsHint)
	want := map[string]string{"bootcmd": "run distro_bootcmd", "bootdelay": "2", "BOOT_ORDER": "A B", "empty": ""}
	for _, redundant := range []bool{false, true} {
		t.Run(fmt.Sprintf("redundant=%v", redundant), func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "env.txt")
			os.WriteFile(in, []byte("# comment\nbootcmd=run distro_bootcmd\nbootdelay=2\n\nBOOT_ORDER=A B\nempty=\n"), 0o644)
			img := filepath.Join(dir, "env.img")
			args := []string{"-s", "0x4000", "-o", img, in}
			cfgText := img + " 0 0x4000\n"
			if redundant {
				args = append([]string{"-r"}, args...)
				// A second, blank copy: the image's copy is the only valid one.
				cfgText += filepath.Join(dir, "blank") + " 0 0x4000\n"
				os.WriteFile(filepath.Join(dir, "blank"), make([]byte, 0x4000), 0o644)
			}
			run(t, "mkenvimage", args...)
			cfg := filepath.Join(dir, "fw_env.config")
			os.WriteFile(cfg, []byte(cfgText), 0o644)
			assertVars(t, mustLoad(t, mustOpenUBoot(t, cfg)), want)
		})
	}
}

// TestUBootTornWrite simulates power loss during Save on a redundant
// environment: the copy being written is corrupted, and both we and
// fw_printenv must fall back to the previous environment.
func TestUBootTornWrite(t *testing.T) {
	cfg := writeConfig(t, "env 0 0x2000\nenv 0x2000 0x2000\n")
	fwRequiresFiles(t, cfg)
	u := mustOpenUBoot(t, cfg)
	dev := filepath.Join(filepath.Dir(cfg), "env")
	old := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}
	for range 3 { // cycle the flags counter a little first
		mustSave(t, u, old)
	}
	before, _ := os.ReadFile(dev)
	mustSave(t, u, map[string]string{"BOOT_ORDER": "B A", "BOOT_B_LEFT": "3"})
	after, _ := os.ReadFile(dev)
	written := -1
	for i := range 2 {
		if !bytes.Equal(before[i*0x2000:(i+1)*0x2000], after[i*0x2000:(i+1)*0x2000]) {
			if written >= 0 {
				t.Fatal("Save changed both copies; it must write only the copy not in use")
			}
			written = i
		}
	}
	// Tear the write: the first half of the data area is new, the rest old.
	torn := append([]byte(nil), before...)
	copy(torn[written*0x2000:], after[written*0x2000:written*0x2000+0x20])
	if err := os.WriteFile(dev, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	assertVars(t, mustLoad(t, u), old)
	// The cross-check is a subtest so that, without the tools, it skips (or
	// fails under FW_REQUIRE_REAL=1) while the rest of the test still runs.
	t.Run("fw_printenv", func(t *testing.T) {
		testenv.LookPath(t, "fw_printenv", ubootToolsHint)
		assertVars(t, newFwTools(t, cfg).printenv(), old)
	})
	// The next Save overwrites the torn copy again, not the good one.
	next := map[string]string{"BOOT_ORDER": "B A"}
	mustSave(t, u, next)
	assertVars(t, mustLoad(t, u), next)
}

// TestUBootBlockDevice runs on a loop device, as on eMMC: the environment
// sits between raw offsets of a device that must never be truncated or
// recreated. It needs root.
func TestUBootBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "loop devices need root; CI runs as root")
	}
	losetup := testenv.LookPath(t, "losetup", "apt-get install -y mount")
	img := filepath.Join(t.TempDir(), "disk.img")
	orig := bytes.Repeat([]byte{0x5a}, 1<<20)
	if err := os.WriteFile(img, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "-f", "--show", img).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "a free loop device", fmt.Sprintf("losetup: %v: %s", err, out))
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command(losetup, "-d", dev).Run() })

	// Redundant copies at the end of the device, one with a negative offset.
	cfg := writeConfig(t, fmt.Sprintf("%s 0xf0000 0x4000\n%s -0x8000 0x4000\n", dev, dev))
	u := mustOpenUBoot(t, cfg)
	want := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
	mustSave(t, u, want)
	assertVars(t, mustLoad(t, u), want)
	t.Run("fw_printenv", func(t *testing.T) {
		testenv.LookPath(t, "fw_printenv", ubootToolsHint)
		testenv.LookPath(t, "fw_setenv", ubootToolsHint)
		fw := newFwTools(t, cfg)
		assertVars(t, fw.printenv(), want)
		fw.setenv("BOOT_ORDER", "B A")
		want["BOOT_ORDER"] = "B A"
		assertVars(t, mustLoad(t, u), want)
	})
	mustSave(t, u, map[string]string{"BOOT_ORDER": "A B"})

	got, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(orig) || !bytes.Equal(got[:0xf0000], orig[:0xf0000]) || !bytes.Equal(got[0xfc000:], orig[0xfc000:]) {
		t.Fatal("bytes outside the two environment copies changed")
	}
	if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s is no longer a device: %v", dev, err)
	}
}
