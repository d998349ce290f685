package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/bootenv"
)

// TestExampleConfigs loads every device configuration in examples/config/
// with the agent's own loader, so an example cannot name a field the agent
// does not know (the loader refuses unknown fields) or a value it refuses.
func TestExampleConfigs(t *testing.T) {
	want := map[string]string{"simulator.json": "file", "uboot-emmc.json": "uboot", "grub-x86.json": "grub"}
	files, err := filepath.Glob(filepath.Join("..", "examples", "config", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			cfg, err := agent.LoadConfig(f)
			if err != nil {
				t.Fatal(err)
			}
			if bl, ok := want[name]; ok && cfg.Bootloader.Type != bl {
				t.Errorf("bootloader.type = %q, want %q", cfg.Bootloader.Type, bl)
			}
			delete(want, name)
			if cfg.Bootloader.Type == "uboot" {
				// The fw_env.config it names is the one next to it on the
				// device; check ours parses as fw_printenv would read it.
				b, err := os.ReadFile(filepath.Join(filepath.Dir(f), "fw_env.config"))
				if err != nil {
					t.Fatal(err)
				}
				uc, err := bootenv.ParseFwEnvConfig(b)
				if err != nil {
					t.Fatalf("fw_env.config: %v", err)
				}
				if !strings.Contains(string(b), "mmcblk0boot1") || len(uc.Copies) != 2 {
					t.Errorf("fw_env.config: %+v, want two redundant copies on mmcblk0boot1", uc)
				}
			}
		})
	}
	for name := range want {
		t.Errorf("examples/config/%s is missing", name)
	}
}
