package vm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	fwboot "github.com/fwctl/fwctl/agent/boot"
	"github.com/fwctl/fwctl/agent/bootenv"
	"github.com/fwctl/fwctl/internal/testenv"
)

// The arm64 machine: Debian's qemu_arm64 U-Boot (u-boot-qemu) boots
// test/vm/uboot/boot.scr from the boot partition, which keeps a redundant
// U-Boot environment at two raw offsets of the disk and runs U-Boot's
// bootcount on it; the agent writes the same environment through
// fw_env.config (agent/bootenv) with its bootcount scheme
// (agent/boot.BootCount). scripts/vm-image-arm64.sh builds it.

// ubootFirmware is u-boot-qemu's build for QEMU's arm64 virt board.
const ubootFirmware = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// Where scripts/vm-image-arm64.sh and test/vm/uboot/boot.cmd keep the two
// environment copies.
const (
	ubootEnvOff0 = 0x40000
	ubootEnvOff1 = 0x80000
	ubootEnvSize = 0x4000
)

var (
	arm64Once, ubootOnce   sync.Once
	arm64Err, ubootErr     error
	arm64Built, ubootBuilt *image
)

// needArm64Image builds (or reuses) the arm64 machine.
func needArm64Image(t *testing.T) *image {
	t.Helper()
	qemu := needUBoot(t)
	for _, p := range []string{"readelf", "dpkg-deb", "apt-get"} {
		testenv.LookPath(t, p, "scripts/deps.sh; readelf is binutils")
	}
	arm64Once.Do(func() { arm64Built, arm64Err = buildArm64Image(qemu, true) })
	if arm64Err != nil {
		if errors.Is(arm64Err, errNoArm64Debs) {
			testenv.Missing(t, "Debian's arm64 packages (linux-image-arm64, busybox-static, e2fsprogs)", arm64Err.Error())
		}
		t.Fatal(arm64Err)
	}
	return arm64Built
}

// needUBootDisk builds (or reuses) the arm64 machine's disk without a
// kernel: what U-Boot needs to reach its decision.
func needUBootDisk(t *testing.T) *image {
	t.Helper()
	qemu := needUBoot(t)
	ubootOnce.Do(func() { ubootBuilt, ubootErr = buildArm64Image(qemu, false) })
	if ubootErr != nil {
		t.Fatal(ubootErr)
	}
	return ubootBuilt
}

// needUBoot returns qemu-system-aarch64 after checking for Debian's U-Boot
// and the tools that build the disk.
func needUBoot(t *testing.T) string {
	t.Helper()
	qemu := testenv.LookPath(t, "qemu-system-aarch64", "apt-get install qemu-system-arm (scripts/deps.sh)")
	if _, err := os.Stat(ubootFirmware); err != nil {
		testenv.Missing(t, "Debian's qemu_arm64 U-Boot ("+ubootFirmware+")", "apt-get install u-boot-qemu (scripts/deps.sh)")
	}
	for _, p := range []string{"mkimage", "mkenvimage", "mke2fs", "sfdisk"} {
		testenv.LookPath(t, p, "scripts/deps.sh installs u-boot-tools, e2fsprogs, fdisk")
	}
	return qemu
}

var errNoArm64Debs = errors.New("apt-get download of the arm64 packages failed")

// buildArm64Image builds the machine with scripts/vm-image-arm64.sh: whole
// (kernel, initramfs, agent) or only U-Boot's part.
func buildArm64Image(qemu string, whole bool) (*image, error) {
	root := repoRoot()
	cache := cacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	// the image depends on the agent, the scripts (init is vm-image.sh's)
	// and the boot script
	inputs := []string{filepath.Join(root, "scripts", "vm-image-arm64.sh"), filepath.Join(root, "scripts", "vm-image.sh"),
		filepath.Join(root, "scripts", "lib", "vm-modules.sh"), filepath.Join(root, "test", "vm", "uboot", "boot.cmd")}
	agent, kind := "-", "boot-"
	if whole {
		agent, kind = filepath.Join(cache, fmt.Sprintf("fwagent-arm64.%d", os.Getpid())), "image-"
		defer os.Remove(agent)
		if out, err := exec.Command(filepath.Join(root, "scripts", "build-agent.sh"), "arm64", agent).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("scripts/build-agent.sh arm64: %v\n%s", err, out)
		}
		inputs = append(inputs, agent)
	}
	key, err := inputsKey(inputs...)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "arm64", kind+key)
	err = buildCached(dir, func(tmp string) error {
		cmd := exec.Command(filepath.Join(root, "scripts", "vm-image-arm64.sh"), agent, tmp)
		cmd.Env = append(os.Environ(), "FWCTL_VM_CACHE="+cache)
		if out, err := cmd.CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 4 {
				return fmt.Errorf("%w: %s", errNoArm64Debs, out)
			}
			return fmt.Errorf("scripts/vm-image-arm64.sh: %v\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	factory, err := os.ReadFile(filepath.Join(dir, "factory.img"))
	if err != nil {
		return nil, err
	}
	fwEnv, err := os.ReadFile(filepath.Join(dir, "fw_env.config"))
	if err != nil {
		return nil, err
	}
	pf := platform{
		name: "arm64/U-Boot",
		// cortex-a57 rather than max: TCG emulates max's pointer
		// authentication slowly
		qemuArgs:     []string{"-M", "virt", "-cpu", "cortex-a57", "-bios", ubootFirmware},
		loader:       "FWVM uboot",
		loaderName:   "uboot",
		bootloader:   map[string]any{"type": "uboot", "path": "/ctl/fw_env.config", "tries": 3, "scheme": "bootcount"},
		files:        map[string][]byte{"fw_env.config": fwEnv},
		tortureKills: 50,
	}
	// arm64 guests on this x86_64 host always run under TCG
	return &image{dir: dir, qemu: qemu, accel: "tcg", factory: factory, platform: pf}, nil
}

// TestPowerCutsArm64 is TestPowerCuts' whole-machine kills on the arm64
// machine, booted by U-Boot.
func TestPowerCutsArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("whole machines take minutes under TCG; run without -short")
	}
	if os.Getenv("FW_VM") != "1" {
		t.Skip("whole-machine power cuts run with FW_VM=1 (make torture-vm, make torture-vm-arm64)")
	}
	s := newSession(t, needArm64Image(t))
	t.Run("kills", func(t *testing.T) { s.t = t; testKills(t, s) })
}

// ubootLine is boot.cmd's report of its decision.
var ubootLine = regexp.MustCompile(`(?m)^FWVM uboot slot=(\S*) copy=(\S+) flags=\S+ saved=(\S+) `)

// TestUBootRedundantEnv checks that the agent's environment round-trips
// with the machine's U-Boot: the agent (agent/bootenv through
// fw_env.config, agent/boot.BootCount) writes the disk image, U-Boot boots
// it and boot.cmd reads, counts and writes the environment back, and the
// agent, libubootenv's fw_printenv and boot.BootCount.Select (the agent's
// model of U-Boot) must all agree on the result. It fails if boot.cmd, its
// offsets or fw_env.config are wrong. Each boot stops at U-Boot's decision
// (about 1.5 s).
func TestUBootRedundantEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("boots U-Boot under QEMU")
	}
	im := needUBootDisk(t)
	fwPrintenv := testenv.LookPath(t, "fw_printenv", "apt-get install libubootenv-tool (scripts/deps.sh)")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := copyFile(disk, filepath.Join(im.dir, "disk.img")); err != nil {
		t.Fatal(err)
	}
	// the machine's fw_env.config with the disk image for /dev/vda
	cfgText := strings.ReplaceAll(string(im.files["fw_env.config"]), "/dev/vda", disk)
	cfgPath := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s %#x %#x\n%s %#x %#x\n", disk, ubootEnvOff0, ubootEnvSize, disk, ubootEnvOff1, ubootEnvSize)
	if !strings.HasSuffix(cfgText, want) {
		t.Fatalf("the image's fw_env.config:\n%s\nwant the copies\n%s", cfgText, want)
	}
	env, err := bootenv.OpenUBoot(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	scheme := &fwboot.BootCount{Env: env, Slots: []string{"A", "B"}, Tries: 3}
	printenv := func() map[string]string {
		out, err := exec.Command(fwPrintenv, "-c", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("fw_printenv: %v\n%s", err, out)
		}
		v := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if k, val, ok := strings.Cut(l, "="); ok {
				v[k] = val
			}
		}
		return v
	}
	load := func() map[string]string {
		v, err := env.Load()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// uboot boots the disk until boot.cmd has decided (and saved), then
	// cuts the power. It returns the slot and the copy U-Boot read, and
	// whether it saved.
	uboot := func() (slot, copyRead string, saved bool) {
		t.Helper()
		out := ubootDecision(t, im, disk)
		if strings.Contains(out, "FWVM error") {
			t.Fatalf("U-Boot:\n%s", out)
		}
		m := ubootLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("U-Boot printed no decision:\n%s", out)
		}
		return m[1], m[2], m[3] == "yes"
	}
	// step boots once and checks U-Boot against the agent's model: the
	// variables Select leaves, the slot it chooses, and the copy in use
	step := func(name, wantSlot string) {
		t.Helper()
		before := load()
		curBefore, _ := env.CurrentCopy()
		model := &fwboot.BootCount{Env: &memEnv{v: maps.Clone(before)}, Slots: []string{"A", "B"}, Tries: 3}
		modelSlot, err := model.Select()
		if err != nil {
			t.Fatal(err)
		}
		slot, copyRead, saved := uboot()
		after := load()
		curAfter, _ := env.CurrentCopy()
		if slot != modelSlot || slot != wantSlot {
			t.Errorf("%s: U-Boot booted %q, the agent's model %q, want %q", name, slot, modelSlot, wantSlot)
		}
		if copyRead != fmt.Sprint(curBefore) {
			t.Errorf("%s: U-Boot read copy %s, the agent's current copy was %d", name, copyRead, curBefore)
		}
		if want := model.Env.(*memEnv).v; !maps.Equal(after, want) {
			t.Errorf("%s: after U-Boot the environment is\n  %v\nthe agent's model of U-Boot leaves\n  %v", name, after, want)
		}
		if fw := printenv(); !maps.Equal(fw, after) {
			t.Errorf("%s: fw_printenv reads %v, the agent %v", name, fw, after)
		}
		switch {
		case saved && curAfter != 1-curBefore:
			t.Errorf("%s: U-Boot saved, but the copy in use went from %d to %d (want the other copy)", name, curBefore, curAfter)
		case !saved && (curAfter != curBefore || !maps.Equal(after, before)):
			t.Errorf("%s: U-Boot did not save, but the environment changed", name)
		}
		t.Logf("%s: U-Boot booted %s from copy %s (saved %v); now %v", name, slot, copyRead, saved, after)
	}

	// the factory environment: A, no trial, nothing saved
	step("factory", "A")
	// the agent provisions and confirms A, then installs B and tries it
	if _, err := scheme.Init("A"); err != nil {
		t.Fatal(err)
	}
	if err := scheme.MarkGood("A"); err != nil {
		t.Fatal(err)
	}
	if err := scheme.Disable("B"); err != nil {
		t.Fatal(err)
	}
	if err := scheme.Try("B"); err != nil {
		t.Fatal(err)
	}
	// B never confirms: three trials, then altbootcmd's fallback to A
	step("trial 1", "B")
	step("trial 2", "B")
	step("trial 3", "B")
	step("past bootlimit", "A")
	step("after the fallback", "A")
	if ok, err := scheme.Tried("B"); err != nil || !ok {
		t.Errorf("after U-Boot's fallback the agent's Tried(B) = %v, %v; want true (a real trial)", ok, err)
	}
	// a trial the agent confirms: U-Boot counted one boot, the agent's
	// MarkGood ends the trial, and U-Boot then saves nothing
	if err := scheme.Disable("B"); err != nil {
		t.Fatal(err)
	}
	if err := scheme.Try("B"); err != nil {
		t.Fatal(err)
	}
	step("second trial", "B")
	if err := scheme.MarkGood("B"); err != nil {
		t.Fatal(err)
	}
	step("confirmed", "B")

	// a save torn by a power cut: the copy the agent wrote last is
	// corrupt, so U-Boot must take the other one (A, before the trial)
	if err := scheme.Disable("A"); err != nil {
		t.Fatal(err)
	}
	if err := scheme.Try("A"); err != nil {
		t.Fatal(err)
	}
	cur, _ := env.CurrentCopy()
	corrupt(t, disk, []int64{ubootEnvOff0, ubootEnvOff1}[cur]+100)
	step("torn Try", "B")

	// the flags counter wraps: 0 follows 255
	for _, c := range []struct {
		name           string
		flags0, flags1 byte
		slot           string
	}{
		{"flags 255 then 0", 0xff, 0x00, "B"},
		{"flags 0 then 255", 0x00, 0xff, "A"},
		{"flags 7 then 8", 0x07, 0x08, "B"},
		{"flags equal", 0x05, 0x05, "A"},
	} {
		writeCopy(t, disk, ubootEnvOff0, c.flags0, map[string]string{"fwctl_slot": "A", "upgrade_available": "0", "bootlimit": "3"})
		writeCopy(t, disk, ubootEnvOff1, c.flags1, map[string]string{"fwctl_slot": "B", "upgrade_available": "0", "bootlimit": "3"})
		step(c.name, c.slot)
	}
	// U-Boot's save after flags 255 writes flags 0, which must then be the
	// copy in use
	writeCopy(t, disk, ubootEnvOff0, 0xff, map[string]string{"fwctl_slot": "B", "upgrade_available": "1", "bootcount": "0", "bootlimit": "3"})
	writeCopy(t, disk, ubootEnvOff1, 0xfe, map[string]string{"fwctl_slot": "A", "upgrade_available": "0", "bootlimit": "3"})
	step("save after flags 255", "B")
	if cur, _ := env.CurrentCopy(); cur != 1 {
		t.Errorf("after U-Boot's save over flags 255 the copy in use is %d, want 1 (flags 0)", cur)
	}
}

// memEnv is an environment in memory, for the agent's model of U-Boot.
type memEnv struct{ v map[string]string }

func (m *memEnv) Load() (map[string]string, error) { return maps.Clone(m.v), nil }
func (m *memEnv) Save(v map[string]string) error   { m.v = maps.Clone(v); return nil }

// corrupt flips one byte of the disk at off.
func corrupt(t *testing.T, disk string, off int64) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// writeCopy writes one redundant environment copy with the given flags
// byte, in U-Boot's layout, written here independently of agent/bootenv.
func writeCopy(t *testing.T, disk string, off int64, flags byte, vars map[string]string) {
	t.Helper()
	b := make([]byte, ubootEnvSize)
	var data bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		data.WriteString(k + "=" + vars[k] + "\x00")
	}
	copy(b[5:], data.Bytes())
	b[4] = flags
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[5:]))
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// ubootDecision powers the machine on with disk and cuts the power once
// boot.cmd has decided: after its save, before the kernel loads. It skips
// U-Boot's 2-second bootdelay by stopping autoboot and typing "boot" (the
// same bootcmd, distro_bootcmd). It returns the console output up to the
// decision.
func ubootDecision(t *testing.T, im *image, disk string) string {
	t.Helper()
	args := append([]string{"-accel", im.accel, "-m", "256", "-smp", "1", "-display", "none", "-monitor", "none",
		"-serial", "stdio", "-no-reboot", "-nodefaults", "-net", "none"}, im.qemuArgs...)
	args = append(args, "-drive", "file="+disk+",format=raw,if=virtio,cache=writeback")
	cmd := exec.Command(im.qemu, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	output := func() string { mu.Lock(); defer mu.Unlock(); return strings.ReplaceAll(out.String(), "\r", "") }
	wait := func(re *regexp.Regexp) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !re.MatchString(output()); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("U-Boot: no %q within a minute:\n%s", re, output())
			}
		}
	}
	wait(regexp.MustCompile(`Hit any key to stop autoboot`))
	io.WriteString(stdin, "\n")
	wait(regexp.MustCompile(`=> $`))
	io.WriteString(stdin, "boot\n")
	decided := regexp.MustCompile(`(?m)^FWVM (uboot .*|error.*)\n`)
	wait(decided)
	o := output()
	return o[:decided.FindStringIndex(o)[1]] // not what U-Boot does next
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
