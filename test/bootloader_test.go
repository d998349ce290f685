package test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent/boot"
	"github.com/fwctl/fwctl/internal/testenv"
)

// bootloaders are the environment backends and boot-counting schemes a
// device can use; every A/B flow runs against each.
var bootloaders = []struct {
	name   string
	setup  func(t *testing.T, dir string) map[string]any
	verify func(t *testing.T, dir string) map[string]string // read back with the real tool
}{
	{"file-rauc", func(t *testing.T, dir string) map[string]any {
		return map[string]any{"type": "file", "path": "bootenv", "tries": 3}
	}, nil},
	{"uboot-redundant-rauc", ubootSetup(""), fwPrintenv},
	{"uboot-redundant-bootcount", ubootSetup("bootcount"), fwPrintenv},
	{"grub-rauc", func(t *testing.T, dir string) map[string]any {
		return map[string]any{"type": "grub", "path": "grubenv", "tries": 3}
	}, grubEditenvList},
}

func ubootSetup(scheme string) func(t *testing.T, dir string) map[string]any {
	return func(t *testing.T, dir string) map[string]any {
		env := filepath.Join(dir, "uboot.env")
		os.WriteFile(env, make([]byte, 0x8000), 0o644)
		cfg := env + " 0x0000 0x4000\n" + env + " 0x4000 0x4000\n"
		os.WriteFile(filepath.Join(dir, "fw_env.config"), []byte(cfg), 0o644)
		return map[string]any{"type": "uboot", "path": "fw_env.config", "tries": 3, "scheme": scheme}
	}
}

func parseVars(out string) map[string]string {
	vars := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func fwPrintenv(t *testing.T, dir string) map[string]string {
	p := testenv.LookPath(t, "fw_printenv", "apt-get install libubootenv-tool")
	out, err := exec.Command(p, "-c", filepath.Join(dir, "fw_env.config")).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv: %v\n%s", err, out)
	}
	return parseVars(string(out))
}

func grubEditenvList(t *testing.T, dir string) map[string]string {
	p := testenv.LookPath(t, "grub-editenv", "apt-get install grub-common")
	out, err := exec.Command(p, filepath.Join(dir, "grubenv"), "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-editenv: %v\n%s", err, out)
	}
	return parseVars(string(out))
}

func TestBootloadersInstallAndFallback(t *testing.T) {
	for _, bl := range bootloaders {
		t.Run(bl.name, func(t *testing.T) {
			r := newRelease(t)
			v1 := r.add("1.0.0", 1, 20_000)
			r.publish()
			d := newDevice(t, r.serve(), hw)
			withConfig(t, d, func(m map[string]any) { m["bootloader"] = bl.setup(t, d.dir) })
			d.provision(r.rootJSON())
			d.mustInstall(v1)
			if bl.verify != nil {
				vars := bl.verify(t, d.dir)
				if vars["BOOT_ORDER"] != "B A" && vars["fwctl_slot"] != "B" {
					t.Fatalf("the real tool reads %v: does not boot B first", vars)
				}
			}
			// v2 is tried and never confirmed: the device falls back to B.
			r.add("2.0.0", 2, 20_000)
			r.publish()
			if res, err := d.update(); err != nil || !res.Installed {
				t.Fatalf("update: %v", err)
			}
			var boots []string
			for range 5 {
				boots = append(boots, d.boot())
			}
			if strings.Join(boots, "") != "AAABB" {
				t.Fatalf("boots %v, want three tries of A then B", boots)
			}
			d.assertRunning(v1)
			st, err := d.ag.Status(context.Background())
			if err != nil || st.Last.Outcome != "fell-back" {
				t.Fatalf("status %+v %v", st, err)
			}
			// Retried (it fell back, so only with --retry), a confirmed
			// update sticks.
			d.mustRetry(mustRead(t, targetFile(t, r, "2.0.0")))
			for range 4 {
				if s := d.boot(); s != "A" {
					t.Fatalf("confirmed slot A, but booted %s", s)
				}
				d.ag.Confirm(context.Background())
			}
		})
	}
}

// TestBootedSlotFromEnvironment: the running slot can come from a variable
// the boot script saves; with "both" the command line and the environment
// must agree, or the agent refuses to write anything.
func TestBootedSlotFromEnvironment(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	withConfig(t, d, func(m map[string]any) {
		m["bootloader"] = ubootSetup("bootcount")(t, d.dir)
		m["booted_slot"] = map[string]any{"source": "both", "cmdline": "cmdline"}
	})
	// Before the first boot the environment names no slot: ambiguous.
	if _, err := d.ag.Provision(context.Background(), r.rootJSON()); !errors.Is(err, boot.ErrAmbiguous) {
		t.Fatalf("provision with no booted slot in the environment: %v, want ambiguous", err)
	}
	vars, _ := d.ag.Env().Load()
	vars["fwctl_booted"] = "A"
	d.ag.Env().Save(vars)
	d.provision(r.rootJSON())
	res, err := d.update()
	if err != nil || !res.Installed {
		t.Fatalf("update: %v", err)
	}
	// A reboot that records the slot in both places: agreement.
	slot := d.boot()
	vars, _ = d.ag.Env().Load()
	vars["fwctl_booted"] = slot
	d.ag.Env().Save(vars)
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v1)
	// The two sources disagree: nothing is written.
	vars["fwctl_booted"] = "A"
	d.ag.Env().Save(vars)
	before := mustRead(t, d.cfg.Slots["A"])
	r.add("2.0.0", 2, 20_000)
	r.publish()
	if _, err := d.update(); !errors.Is(err, boot.ErrAmbiguous) {
		t.Fatalf("update with disagreeing sources: %v, want ambiguous", err)
	}
	if !bytes.Equal(mustRead(t, d.cfg.Slots["A"]), before) {
		t.Fatal("the agent wrote a slot although the running slot was ambiguous")
	}
}
