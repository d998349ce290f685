package bootenv

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseGrubEnv(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       map[string]string
	}{
		{"blank", grubSignature + strings.Repeat("#", 999), map[string]string{}},
		{"comments skipped", grubSignature + "# WARNING: Do not edit\na=1\n# b=2\n###", map[string]string{"a": "1"}},
		{"escapes", grubSignature + `a=x\\y` + "\n" + `b=1\` + "\n2\n" + `c=\q` + "\n", map[string]string{"a": `x\y`, "b": "1\n2", "c": "q"}},
		{"value with = and #", grubSignature + "a=b=c#d\n", map[string]string{"a": "b=c#d"}},
		{"last wins", grubSignature + "a=1\na=2\n", map[string]string{"a": "2"}},
		{"stops at line without =", grubSignature + "a=1\nbroken\n", map[string]string{"a": "1"}},
		{"stops at unterminated line", grubSignature + "a=1\nb=2", map[string]string{"a": "1"}},
		{"stops at trailing backslash", grubSignature + "a=1\nb=2\\", map[string]string{"a": "1"}},
		{"no padding", grubSignature + "a=1\n", map[string]string{"a": "1"}},
	} {
		got, err := parseGrubEnv([]byte(tc.text))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "# GRUB Environment Block", "# GRUB Environment Blocks\n", "a=1\n"} {
		if _, err := parseGrubEnv([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("parseGrubEnv(%q): err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestEncodeGrubEnvRefuses(t *testing.T) {
	for _, bad := range []map[string]string{
		{"": "v"}, {"#a": "v"}, {"a=b": "v"}, {"a\nb": "v"}, {"a\x00": "v"}, {"a": "v\x00"},
	} {
		if _, err := encodeGrubEnv(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("encodeGrubEnv(%q): err = %v, want ErrInvalid", bad, err)
		}
	}
	// Escaping counts: 500 newlines take 1000 bytes.
	if _, err := encodeGrubEnv(map[string]string{"a": strings.Repeat("\n", 500)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("escaped value too large: err = %v, want ErrTooLarge", err)
	}
}

func TestGRUBSaveLeavesFileOnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "grubenv")
	g := GRUB{Path: p}
	old := map[string]string{"BOOT_ORDER": "A B"}
	mustSave(t, g, old)
	if err := g.Save(map[string]string{"big": strings.Repeat("x", GrubEnvSize)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	assertVars(t, mustLoad(t, g), old)
	if fi, _ := os.Stat(p); fi.Size() != GrubEnvSize {
		t.Fatalf("size %d, want %d", fi.Size(), GrubEnvSize)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
	os.WriteFile(p, nil, 0o644)
	assertVars(t, mustLoad(t, g), map[string]string{}) // blank
	os.WriteFile(p, []byte("not a grubenv"), 0o644)
	if _, err := g.Load(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load of garbage: err = %v, want ErrInvalid", err)
	}
}

func TestGRUBSaveFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "efi"), 0o755)
	target := filepath.Join(dir, "efi", "grubenv")
	link := filepath.Join(dir, "grubenv")
	os.Symlink("efi/grubenv", link)
	os.WriteFile(target, nil, 0o600)
	mustSave(t, GRUB{Path: link}, map[string]string{"a": "2"})
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v", err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600 kept", fi.Mode())
	}
	assertVars(t, mustLoad(t, GRUB{Path: target}), map[string]string{"a": "2"})
}
