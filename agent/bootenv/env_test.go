package bootenv

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// openEnv opens a fresh, empty environment in t's temp dir. reopen returns a
// new handle on the same storage, as after a reboot.
type openEnv func(t *testing.T) (env Env, reopen func() Env)

// testEnv is the conformance suite every Env backend passes.
func testEnv(t *testing.T, open openEnv) {
	t.Run("Empty", func(t *testing.T) {
		env, _ := open(t)
		got := mustLoad(t, env)
		if len(got) != 0 {
			t.Fatalf("fresh environment: got %v, want empty", got)
		}
	})
	t.Run("SetGet", func(t *testing.T) {
		env, _ := open(t)
		want := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}
		mustSave(t, env, want)
		assertVars(t, mustLoad(t, env), want)
	})
	t.Run("Overwrite", func(t *testing.T) {
		env, _ := open(t)
		mustSave(t, env, map[string]string{"a": "1", "b": "2"})
		want := map[string]string{"a": "10", "b": "2"}
		mustSave(t, env, want)
		assertVars(t, mustLoad(t, env), want)
	})
	t.Run("Delete", func(t *testing.T) {
		env, _ := open(t)
		mustSave(t, env, map[string]string{"a": "1", "upgrade_available": "1"})
		want := map[string]string{"a": "1"}
		mustSave(t, env, want)
		assertVars(t, mustLoad(t, env), want)
		mustSave(t, env, map[string]string{})
		assertVars(t, mustLoad(t, env), map[string]string{})
	})
	t.Run("Many", func(t *testing.T) {
		env, _ := open(t)
		want := map[string]string{}
		for i := range 40 {
			want[fmt.Sprintf("var%02d", i)] = fmt.Sprintf("value-%d", i*i)
		}
		mustSave(t, env, want)
		assertVars(t, mustLoad(t, env), want)
	})
	t.Run("Unicode", func(t *testing.T) {
		env, _ := open(t)
		want := map[string]string{"msg": "grüße, 日本語, ✓", "bootargs": "console=ttyS0,115200 root=/dev/mmcblk0p2 rw"}
		mustSave(t, env, want)
		assertVars(t, mustLoad(t, env), want)
	})
	t.Run("Reopen", func(t *testing.T) {
		env, reopen := open(t)
		want := map[string]string{"BOOT_ORDER": "B A", "BOOT_B_LEFT": "2"}
		mustSave(t, env, want)
		// Several saves, so redundant backends have cycled their copies.
		for i := range 3 {
			want["n"] = fmt.Sprint(i)
			mustSave(t, reopen(), want)
		}
		assertVars(t, mustLoad(t, reopen()), want)
	})
	t.Run("NoAliasing", func(t *testing.T) {
		env, _ := open(t)
		in := map[string]string{"a": "1"}
		mustSave(t, env, in)
		in["a"] = "changed"
		got := mustLoad(t, env)
		got["b"] = "x"
		assertVars(t, mustLoad(t, env), map[string]string{"a": "1"})
	})
}

func TestFileConformance(t *testing.T) {
	testEnv(t, func(t *testing.T) (Env, func() Env) {
		p := filepath.Join(t.TempDir(), "env")
		return File{Path: p}, func() Env { return File{Path: p} }
	})
}

func TestGRUBConformance(t *testing.T) {
	testEnv(t, func(t *testing.T) (Env, func() Env) {
		p := filepath.Join(t.TempDir(), "grubenv")
		return GRUB{Path: p}, func() Env { return GRUB{Path: p} }
	})
}

func TestUBootSingleConformance(t *testing.T) {
	testEnv(t, func(t *testing.T) (Env, func() Env) {
		cfg := writeConfig(t, "env 0 0x2000\n")
		return mustOpenUBoot(t, cfg), func() Env { return mustOpenUBoot(t, cfg) }
	})
}

func TestUBootRedundantConformance(t *testing.T) {
	testEnv(t, func(t *testing.T) (Env, func() Env) {
		cfg := writeConfig(t, "env 0x0 0x2000 0x2000 1\nenv 0x2000 0x2000 0x2000 1\n")
		return mustOpenUBoot(t, cfg), func() Env { return mustOpenUBoot(t, cfg) }
	})
}

func TestUBootRedundantTwoFilesConformance(t *testing.T) {
	testEnv(t, func(t *testing.T) (Env, func() Env) {
		cfg := writeConfig(t, "env1 0 0x1000\nenv2 0 0x1000\n")
		return mustOpenUBoot(t, cfg), func() Env { return mustOpenUBoot(t, cfg) }
	})
}

// writeConfig writes an fw_env.config in a new temp dir; relative device
// paths in text are made absolute within that dir.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	var out []byte
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if line != "" && line[0] != '#' && line[0] != '/' {
			line = filepath.Join(dir, line)
		}
		out = append(out, line+"\n"...)
	}
	p := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustOpenUBoot(t *testing.T, cfg string) *UBoot {
	t.Helper()
	u, err := OpenUBoot(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustLoad(t *testing.T, env Env) map[string]string {
	t.Helper()
	vars, err := env.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if vars == nil {
		t.Fatal("Load returned a nil map")
	}
	return vars
}

func mustSave(t *testing.T, env Env, vars map[string]string) {
	t.Helper()
	if err := env.Save(vars); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func assertVars(t *testing.T, got, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("variables:\n got %q\nwant %q", got, want)
	}
}
