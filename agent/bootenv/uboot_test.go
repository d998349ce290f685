package bootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseFwEnvConfig(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []UBootCopy
		err        string
	}{
		{
			name: "single",
			text: "# Device  Offset  Env size  Sector size  Sectors\n/dev/mmcblk0 0x3f0000 0x10000 0x10000 1\n",
			want: []UBootCopy{{"/dev/mmcblk0", 0x3f0000, 0x10000, 0x10000, 1}},
		},
		{
			name: "redundant with tabs, CRLF and blank lines",
			text: "\r\n/dev/mmcblk0\t0x3f0000\t0x10000\r\n\n/dev/mmcblk0\t0x400000\t0x10000\r\n",
			want: []UBootCopy{{"/dev/mmcblk0", 0x3f0000, 0x10000, 0, 0}, {"/dev/mmcblk0", 0x400000, 0x10000, 0, 0}},
		},
		{
			// Sizes are hex even without 0x; offsets follow C's rules.
			name: "number bases",
			text: "/boot/uboot.env 4096 2000 1000 2\n/boot/uboot.env 010 0X2000\n",
			want: []UBootCopy{{"/boot/uboot.env", 4096, 0x2000, 0x1000, 2}, {"/boot/uboot.env", 8, 0x2000, 0, 0}},
		},
		{
			name: "negative offset and trailing comment",
			text: "/dev/mmcblk0boot1 -0x4000 0x4000 # last 16 KiB\n",
			want: []UBootCopy{{"/dev/mmcblk0boot1", -0x4000, 0x4000, 0, 0}},
		},
		{
			name: "indented comment and short lines ignored, third copy ignored",
			text: "  # a comment\n/dev/x\n/a 0 0x100\n/b 0 0x100\n/c 0 0x100\n",
			want: []UBootCopy{{"/a", 0, 0x100, 0, 0}, {"/b", 0, 0x100, 0, 0}},
		},
		{name: "empty", text: "# nothing\n", err: "want one or two"},
		{name: "bad offset", text: "/a zero 0x100\n", err: "offset"},
		{name: "bad size", text: "/a 0 0x10g\n", err: "env size"},
		{name: "zero size", text: "/a 0 0\n", err: "out of range"},
		{name: "size mismatch", text: "/a 0 0x100\n/b 0 0x200\n", err: "same size"},
		{name: "mtd", text: "/dev/mtd1 0 0x4000 0x10000\n", err: "MTD"},
		{name: "huge", text: "/a 0 0xffffffffffffffffffff\n", err: "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseFwEnvConfig([]byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Copies, tc.want) {
				t.Fatalf("copies = %+v, want %+v", cfg.Copies, tc.want)
			}
		})
	}
}

func TestCurrentCopy(t *testing.T) {
	for _, tc := range []struct {
		valid [2]bool
		flags [2]byte
		want  int
	}{
		{[2]bool{false, false}, [2]byte{1, 2}, -1},
		{[2]bool{true, false}, [2]byte{1, 2}, 0},
		{[2]bool{false, true}, [2]byte{9, 2}, 1},
		{[2]bool{true, true}, [2]byte{1, 2}, 1},
		{[2]bool{true, true}, [2]byte{3, 2}, 0},
		{[2]bool{true, true}, [2]byte{5, 5}, 0},
		{[2]bool{true, true}, [2]byte{0xff, 0}, 1}, // 0 follows 255
		{[2]bool{true, true}, [2]byte{0, 0xff}, 0},
		{[2]bool{true, true}, [2]byte{0xfe, 0xff}, 1},
	} {
		if got := currentCopy(tc.valid, tc.flags); got != tc.want {
			t.Errorf("currentCopy(%v, %v) = %d, want %d", tc.valid, tc.flags, got, tc.want)
		}
	}
}

func TestUBootDefaults(t *testing.T) {
	cfg := writeConfig(t, "env 0 0x400\nenv 0x400 0x400\n")
	dev := filepath.Join(filepath.Dir(cfg), "env")
	os.WriteFile(dev, bytes.Repeat([]byte{0xff}, 0x800), 0o644) // erased flash
	defaults := map[string]string{"bootcmd": "run fwctl_boot", "BOOT_ORDER": "A B"}
	u, err := OpenUBoot(cfg, defaults)
	if err != nil {
		t.Fatal(err)
	}
	got := mustLoad(t, u)
	assertVars(t, got, defaults)
	got["BOOT_ORDER"] = "B A" // must not leak into the defaults
	defaults["bootcmd"] = "changed by caller after Open"
	assertVars(t, mustLoad(t, u), map[string]string{"bootcmd": "run fwctl_boot", "BOOT_ORDER": "A B"})

	// Once saved, the environment no longer falls back to defaults.
	mustSave(t, u, map[string]string{"x": "1"})
	assertVars(t, mustLoad(t, u), map[string]string{"x": "1"})
}

func TestUBootFlagsWrap(t *testing.T) {
	cfg := writeConfig(t, "env1 0 0x400\nenv2 0 0x400\n")
	dir := filepath.Dir(cfg)
	b, _ := encodeUBootEnv(map[string]string{"gen": "255"}, 0x400, true, 0xff)
	os.WriteFile(filepath.Join(dir, "env1"), b, 0o644)
	u := mustOpenUBoot(t, cfg)
	mustSave(t, u, map[string]string{"gen": "0"})
	b2, _ := os.ReadFile(filepath.Join(dir, "env2"))
	if b2[4] != 0 {
		t.Fatalf("flags after 255 = %d, want 0", b2[4])
	}
	assertVars(t, mustLoad(t, u), map[string]string{"gen": "0"})
	mustSave(t, u, map[string]string{"gen": "1"})
	b1, _ := os.ReadFile(filepath.Join(dir, "env1"))
	if b1[4] != 1 {
		t.Fatalf("flags after 0 = %d, want 1", b1[4])
	}
	assertVars(t, mustLoad(t, u), map[string]string{"gen": "1"})
}

func TestUBootSaveRefuses(t *testing.T) {
	cfg := writeConfig(t, "env 0 0x40\n")
	u := mustOpenUBoot(t, cfg)
	old := map[string]string{"a": "1"}
	mustSave(t, u, old)
	// 0x40 - 4 (CRC) = 60 bytes of data, including the final NUL.
	if err := u.Save(map[string]string{"x": strings.Repeat("y", 57)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: err = %v, want ErrTooLarge", err)
	}
	mustSave(t, u, map[string]string{"x": strings.Repeat("y", 56)}) // exactly full
	assertVars(t, mustLoad(t, u), map[string]string{"x": strings.Repeat("y", 56)})
	mustSave(t, u, old)
	for _, bad := range []map[string]string{{"": "v"}, {"a=b": "v"}, {"a\x00": "v"}, {"a": "v\x00"}} {
		if err := u.Save(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Save(%q): err = %v, want ErrInvalid", bad, err)
		}
	}
	assertVars(t, mustLoad(t, u), old)
}

func TestUBootCorruptSingleCopy(t *testing.T) {
	cfg := writeConfig(t, "env 0 0x100\n")
	u, _ := OpenUBoot(cfg, map[string]string{"fallback": "1"})
	mustSave(t, u, map[string]string{"a": "1"})
	dev := filepath.Join(filepath.Dir(cfg), "env")
	b, _ := os.ReadFile(dev)
	b[10] ^= 1
	os.WriteFile(dev, b, 0o644)
	assertVars(t, mustLoad(t, u), map[string]string{"fallback": "1"})
}

// TestUBootInsideLargerFile keeps the bytes around the environment, as on
// a disk image with the environment between the bootloader and partitions.
func TestUBootInsideLargerFile(t *testing.T) {
	for _, tc := range []struct{ name, cfg string }{
		{"Single", "disk.img 0x1000 0x400\n"},
		{"SingleNegative", "disk.img -0x800 0x400\n"},
		{"Redundant", "disk.img 0x1000 0x400\ndisk.img 0x1400 0x400\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, tc.cfg)
			img := filepath.Join(filepath.Dir(cfg), "disk.img")
			orig := bytes.Repeat([]byte("fwctl!"), 0x3000/6)
			os.WriteFile(img, orig, 0o600)
			u := mustOpenUBoot(t, cfg)
			mustSave(t, u, map[string]string{"a": "1"})
			mustSave(t, u, map[string]string{"a": "2"})
			assertVars(t, mustLoad(t, u), map[string]string{"a": "2"})
			got, _ := os.ReadFile(img)
			if len(got) != len(orig) {
				t.Fatalf("image size changed: %d -> %d", len(orig), len(got))
			}
			start, end := 0x1000, 0x1800
			if strings.Contains(tc.cfg, "-0x800") {
				start, end = len(orig)-0x800, len(orig)-0x400
			}
			if !bytes.Equal(got[:start], orig[:start]) || !bytes.Equal(got[end:], orig[end:]) {
				t.Fatal("bytes outside the environment changed")
			}
			if fi, _ := os.Stat(img); fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode changed to %v", fi.Mode())
			}
		})
	}
}

func TestUBootSymlinkWrittenThrough(t *testing.T) {
	cfg := writeConfig(t, "link 0 0x100\n")
	dir := filepath.Dir(cfg)
	os.WriteFile(filepath.Join(dir, "target"), make([]byte, 0x100), 0o644)
	os.Symlink("target", filepath.Join(dir, "link"))
	mustSave(t, mustOpenUBoot(t, cfg), map[string]string{"a": "1"})
	if fi, err := os.Lstat(filepath.Join(dir, "link")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v %v", fi, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "target"))
	if vars, _, err := parseUBootEnv(b, false); err != nil || vars["a"] != "1" {
		t.Fatalf("target not written: %v %v", vars, err)
	}
}

func TestUBootMissingDevice(t *testing.T) {
	u := NewUBoot(UBootConfig{Copies: []UBootCopy{{Path: "/dev/fwctl-test-no-such-device", Size: 0x400}}})
	assertVars(t, mustLoad(t, u), map[string]string{})
	if err := u.Save(map[string]string{"a": "1"}); err == nil {
		t.Fatal("Save created a missing device node")
	}
	if _, err := os.Stat("/dev/fwctl-test-no-such-device"); err == nil {
		t.Fatal("Save created a file under /dev")
	}
}

func TestNewUBootChecksConfig(t *testing.T) {
	u := NewUBoot(UBootConfig{})
	if _, err := u.Load(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load with no copies: %v", err)
	}
	if err := u.Save(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Save with no copies: %v", err)
	}
	if _, err := OpenUBoot(filepath.Join(t.TempDir(), "missing.config"), nil); err == nil {
		t.Fatal("OpenUBoot of a missing config succeeded")
	}
}

func TestParseUBootEnvMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want map[string]string
		ok   bool
	}{
		{"no terminator", "a=1", nil, false},
		{"skips entries without = or name", "junk\x00=v\x00a=1\x00\x00", map[string]string{"a": "1"}, true},
		{"last value wins", "a=1\x00a=2\x00\x00", map[string]string{"a": "2"}, true},
		{"ends at area end", "a=1\x00", map[string]string{"a": "1"}, true},
		{"empty", "\x00\xff\xff", map[string]string{}, true},
	} {
		b := make([]byte, 4+len(tc.data))
		copy(b[4:], tc.data)
		crc := crcOf(b[4:])
		copy(b, crc)
		vars, _, err := parseUBootEnv(b, false)
		if (err == nil) != tc.ok || (tc.ok && !reflect.DeepEqual(vars, tc.want)) {
			t.Errorf("%s: got %v, %v", tc.name, vars, err)
		}
	}
	if _, _, err := parseUBootEnv([]byte{1, 2}, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("short: %v", err)
	}
}

func crcOf(data []byte) []byte {
	return binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(data))
}

// TestUBootCurrentCopyMethod: CurrentCopy follows the copy each save writes
// and falls back to the other when the current one is torn.
func TestUBootCurrentCopyMethod(t *testing.T) {
	cfg := writeConfig(t, "env 0 0x2000\nenv 0x2000 0x2000\n")
	u := mustOpenUBoot(t, cfg)
	if c, err := u.CurrentCopy(); err != nil || c != -1 {
		t.Fatalf("blank storage: copy %d (%v), want -1", c, err)
	}
	mustSave(t, u, map[string]string{"BOOT_ORDER": "A B"})
	first, err := u.CurrentCopy()
	if err != nil || first < 0 {
		t.Fatalf("after a save: copy %d (%v)", first, err)
	}
	mustSave(t, u, map[string]string{"BOOT_ORDER": "B A"})
	second, _ := u.CurrentCopy()
	if second != 1-first {
		t.Fatalf("a save wrote copy %d again, want the other one", second)
	}
	dev := filepath.Join(filepath.Dir(cfg), "env")
	b, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	b[second*0x2000+10] ^= 0xff // tear the current copy
	if err := os.WriteFile(dev, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _ := u.CurrentCopy(); c != first {
		t.Fatalf("with copy %d torn, current is %d, want %d", second, c, first)
	}
}
