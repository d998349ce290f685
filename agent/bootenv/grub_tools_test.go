package bootenv

// Cross-checks against grub-editenv, both directions. They skip when it is
// missing and fail under FW_REQUIRE_REAL=1.

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

const grubToolsHint = "apt-get install -y grub-common"

// grubList runs grub-editenv FILE list and parses its output. Values with
// newlines come out as several lines, so tests compare raw output for them.
func grubList(t *testing.T, path string) map[string]string {
	t.Helper()
	out := run(t, "grub-editenv", path, "list")
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func TestGRUBSaveThenGrubEditenv(t *testing.T) {
	testenv.LookPath(t, "grub-editenv", grubToolsHint)
	p := filepath.Join(t.TempDir(), "grubenv")
	g := GRUB{Path: p}
	want := map[string]string{
		"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "saved_entry": "fwctl-A",
		"path": `C:\boot\x`, "msg": "grüße ✓", "f": "g=h", "e": "",
	}
	mustSave(t, g, want)
	assertVars(t, grubList(t, p), want)

	// A newline survives: grub-editenv prints it raw.
	mustSave(t, g, map[string]string{"a": "1\n2", "b": `\`})
	if out := run(t, "grub-editenv", p, "list"); out != "a=1\n2\nb=\\\n" {
		t.Fatalf("grub-editenv list = %q", out)
	}
	// grub-editenv edits our file in place and we read its result.
	run(t, "grub-editenv", p, "set", "c=3")
	assertVars(t, mustLoad(t, g), map[string]string{"a": "1\n2", "b": `\`, "c": "3"})
}

func TestGrubEditenvThenGRUBLoad(t *testing.T) {
	testenv.LookPath(t, "grub-editenv", grubToolsHint)
	p := filepath.Join(t.TempDir(), "grubenv")
	run(t, "grub-editenv", p, "create")
	assertVars(t, mustLoad(t, GRUB{Path: p}), map[string]string{})
	run(t, "grub-editenv", p, "set", "a=b", `c=x\y`, "n=l1\nl2", "e=", "f=g=h", "u=日本語")
	want := map[string]string{"a": "b", "c": `x\y`, "n": "l1\nl2", "e": "", "f": "g=h", "u": "日本語"}
	assertVars(t, mustLoad(t, GRUB{Path: p}), want)
	run(t, "grub-editenv", p, "unset", "a")
	delete(want, "a")
	assertVars(t, mustLoad(t, GRUB{Path: p}), want)

	// Our Save of what we loaded round-trips through grub-editenv again.
	mustSave(t, GRUB{Path: p}, want)
	b, _ := os.ReadFile(p)
	if len(b) != GrubEnvSize {
		t.Fatalf("saved block is %d bytes, want %d", len(b), GrubEnvSize)
	}
	run(t, "grub-editenv", p, "set", "a=again")
	want["a"] = "again"
	assertVars(t, mustLoad(t, GRUB{Path: p}), want)
}

// TestGRUBFull checks our limit against grub-editenv's: a block we fill to
// the last byte is one grub-editenv reads, and one more byte is refused by
// both.
func TestGRUBFull(t *testing.T) {
	testenv.LookPath(t, "grub-editenv", grubToolsHint)
	p := filepath.Join(t.TempDir(), "grubenv")
	g := GRUB{Path: p}
	// signature + "x=" + value + "\n" = 1024
	value := strings.Repeat("v", GrubEnvSize-len(grubSignature)-3)
	mustSave(t, g, map[string]string{"x": value})
	b, _ := os.ReadFile(p)
	if bytes.Count(b, []byte("#")) != 1 { // the signature's
		t.Fatalf("a full block should have no padding, got %q", b[len(b)-8:])
	}
	assertVars(t, grubList(t, p), map[string]string{"x": value})

	err := g.Save(map[string]string{"x": value + "v"})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Save of one byte too many: err = %v, want ErrTooLarge", err)
	}
	assertVars(t, mustLoad(t, g), map[string]string{"x": value})

	// grub-editenv refuses to grow the full block too.
	run(t, "grub-editenv", p, "unset", "x")
	run(t, "grub-editenv", p, "set", "x="+value)
	assertVars(t, mustLoad(t, g), map[string]string{"x": value})
}
