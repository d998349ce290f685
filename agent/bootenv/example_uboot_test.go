package bootenv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
)

// TestExampleUBootScript runs examples/boot/boot.cmd in a real U-Boot
// (Debian's qemu_arm64 build under qemu-system-aarch64). Each boot starts
// from an environment we encode, which U-Boot imports with its own CRC
// check (env import -c); the script picks a slot, counts the attempt and,
// finding no kernel, resets. The slot sequence must be that of the
// BOOT_ORDER/BOOT_x_LEFT convention (agent/boot.Select). QEMU's emulated
// NOR flash does not keep U-Boot's saveenv reliably, so the test carries
// the counters from one boot to the next itself.
func TestExampleUBootScript(t *testing.T) {
	qemu, firmware := needUBootQEMU(t)
	mkimage := testenv.LookPath(t, "mkimage", ubootToolsHint)
	dir := t.TempDir()
	scr := filepath.Join(dir, "boot.scr")
	run(t, mkimage, "-A", "arm64", "-T", "script", "-C", "none", "-n", "fwctl A/B",
		"-d", filepath.Join("..", "..", "examples", "boot", "boot.cmd"), scr)

	const envSize = 0x4000
	booting := regexp.MustCompile(`fwctl: booting slot (\S+) \(A left (\S+), B left (\S+)\)`)
	boot := func(vars map[string]string) (string, map[string]string) {
		img, err := encodeUBootEnv(vars, envSize, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		envFile := filepath.Join(dir, "env.bin")
		os.WriteFile(envFile, img, 0o644)
		out := runUBoot(t, qemu, firmware,
			[]string{"-device", "loader,file=" + envFile + ",addr=0x48000000,force-raw=on",
				"-device", "loader,file=" + scr + ",addr=0x49000000,force-raw=on"},
			fmt.Sprintf("env import -c 0x48000000 %#x && source 0x49000000", envSize))
		if !strings.Contains(out, "## Executing script") {
			t.Fatalf("U-Boot did not import our environment or run the script:\n%s", out)
		}
		next := map[string]string{"BOOT_ORDER": vars["BOOT_ORDER"]}
		if m := booting.FindStringSubmatch(out); m != nil {
			if !strings.Contains(out, "failed to boot; resetting") {
				t.Fatalf("script did not reach its failure path:\n%s", out)
			}
			next["BOOT_A_LEFT"], next["BOOT_B_LEFT"] = m[2], m[3]
			return m[1] + m[2] + m[3], next
		}
		if strings.Contains(out, "no slot has boot attempts left") {
			next["BOOT_A_LEFT"], next["BOOT_B_LEFT"] = "3", "3"
			return "refill", next
		}
		t.Fatalf("unexpected U-Boot output:\n%s", out)
		return "", nil
	}

	// The agent has just asked to try B, with A as the fallback; B never
	// confirms. Three tries of B, three of A, then every count is refilled.
	vars := map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
	want := []string{"B32", "B31", "B30", "A20", "A10", "A00", "refill", "B32"}
	var got []string
	for range want {
		var step string
		step, vars = boot(vars)
		got = append(got, step)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("boots (slot, A left, B left):\n got %v\nwant %v", got, want)
	}

	// A blank environment: no BOOT_ORDER means "A B", no counts mean none
	// left, so the script refills them.
	if step, _ := boot(map[string]string{}); step != "refill" {
		t.Fatalf("blank environment: %s, want refill", step)
	}
}

// TestExampleUBootBootcount runs the bootcount.env variant's altbootcmd in
// U-Boot: after too many failed boots of B it must switch back to A and
// clear the trial. (Debian's qemu build has no CONFIG_BOOTCOUNT_LIMIT, so
// the test runs altbootcmd itself, as U-Boot would past bootlimit.)
func TestExampleUBootBootcount(t *testing.T) {
	qemu, firmware := needUBootQEMU(t)
	text, err := os.ReadFile(filepath.Join("..", "..", "examples", "boot", "bootcount.env"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(text), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[k] = v
		}
	}
	for _, k := range []string{"bootlimit", "bootcmd", "altbootcmd", "fwctl_boot", "fwctl_slot"} {
		if vars[k] == "" {
			t.Fatalf("bootcount.env sets no %s", k)
		}
	}
	// The agent started a trial of B; U-Boot counted past bootlimit.
	vars["fwctl_slot"], vars["upgrade_available"], vars["bootcount"] = "B", "1", "4"
	img, err := encodeUBootEnv(vars, 0x4000, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "env.bin")
	os.WriteFile(envFile, img, 0o644)
	out := runUBoot(t, qemu, firmware,
		[]string{"-device", "loader,file=" + envFile + ",addr=0x48000000,force-raw=on"},
		"env import -c 0x48000000 0x4000 && run altbootcmd")
	for _, want := range []string{
		"fwctl: slot B failed 4 times, falling back",
		"fwctl: slot A failed to boot", // no kernel here; A is what it tried
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("U-Boot output lacks %q:\n%s", want, out)
		}
	}
}

// TestUBootExportMatches has U-Boot import an environment we encoded and
// export it again (env export -c writes what saveenv stores): our parser
// must read U-Boot's bytes, and our encoder must produce them exactly.
func TestUBootExportMatches(t *testing.T) {
	qemu, firmware := needUBootQEMU(t)
	// env export -c always writes the board's CONFIG_ENV_SIZE (256 KiB for
	// qemu_arm64). Only the first 8 KiB are dumped over the console; the
	// rest must be zero padding, which the CRC then confirms.
	const size, boardSize = 0x2000, 0x40000
	ours := map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "msg": "grüße ✓", "zz": "a=b c"}
	img, err := encodeUBootEnv(ours, size, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "env.bin")
	os.WriteFile(envFile, img, 0o644)
	out := runUBoot(t, qemu, firmware,
		[]string{"-device", "loader,file=" + envFile + ",addr=0x48000000,force-raw=on"},
		fmt.Sprintf("env import -c 0x48000000 %#x && env export -c 0x4a000000 && md.b 0x4a000000 %#x && echo DUMPED; reset", size, size))
	if !strings.Contains(out, "DUMPED") {
		t.Fatalf("U-Boot did not import and export:\n%s", out)
	}
	// md.b lines: "4a000010: 61 62 ...    ab..."
	line := regexp.MustCompile(`(?m)^4a([0-9a-f]{6}): ((?:[0-9a-f]{2} ){1,16})`)
	exported := make([]byte, boardSize)
	n := 0
	for _, m := range line.FindAllStringSubmatch(out, -1) {
		var off int
		fmt.Sscanf(m[1], "%x", &off)
		for i, h := range strings.Fields(m[2]) {
			fmt.Sscanf(h, "%x", &exported[off+i])
			n++
		}
	}
	if n != size {
		t.Fatalf("parsed %d bytes of the dump, want %d", n, size)
	}
	vars, _, err := parseUBootEnv(exported, false)
	if err != nil {
		t.Fatalf("U-Boot's export: %v", err)
	}
	for k, v := range ours {
		if vars[k] != v {
			t.Errorf("U-Boot exported %s=%q, want %q", k, vars[k], v)
		}
	}
	if len(vars) <= len(ours) {
		t.Errorf("U-Boot's export lacks its default environment: %q", vars)
	}
	again, err := encodeUBootEnv(vars, boardSize, false, 0)
	if err != nil || !bytes.Equal(again, exported) {
		t.Errorf("our encoding of U-Boot's variables differs from U-Boot's export (err %v)", err)
	}
}

// needUBootQEMU returns qemu-system-aarch64 and Debian's qemu_arm64 U-Boot,
// or skips (fails under FW_REQUIRE_REAL=1) without them.
func needUBootQEMU(t *testing.T) (qemu, firmware string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots U-Boot in qemu")
	}
	const hint = "apt-get install -y --no-install-recommends qemu-system-arm u-boot-qemu"
	qemu = testenv.LookPath(t, "qemu-system-aarch64", hint)
	firmware = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"
	if _, err := os.Stat(firmware); err != nil {
		testenv.Missing(t, firmware, hint)
	}
	return qemu, firmware
}

// runUBoot boots U-Boot in qemu, stops autoboot, types cmd at the prompt
// and returns the console output once U-Boot resets (qemu -no-reboot exits).
func runUBoot(t *testing.T, qemu, firmware string, extra []string, cmd string) string {
	t.Helper()
	args := append([]string{"-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-nographic",
		"-no-reboot", "-net", "none", "-bios", firmware}, extra...)
	c := exec.Command(qemu, args...)
	stdin, _ := c.StdinPipe()
	var mu sync.Mutex
	var out bytes.Buffer
	c.Stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	c.Stderr = c.Stdout
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	output := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	wait := func(s string) {
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(output(), s) {
			if time.Now().After(deadline) {
				c.Process.Kill()
				t.Fatalf("U-Boot: no %q within 60s:\n%s", s, output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("Hit any key to stop autoboot")
	io.WriteString(stdin, "\n")
	wait("=> ")
	io.WriteString(stdin, cmd+"\n")
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		c.Process.Kill()
		t.Fatalf("U-Boot did not reset within 60s:\n%s", output())
	}
	return strings.ReplaceAll(output(), "\r", "")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
