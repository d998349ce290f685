package bootenv

// U-Boot environments beyond 4 GiB into a device: large eMMC parts keep the
// environment near their end. They matter on the 32-bit armv7 agent, where
// an int is 32 bits: scripts/cross-test.sh runs this file under
// qemu-arm-static in full (without -short).

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// diskSize is a sparse 5 GiB "eMMC": more than 2^32 bytes.
const diskSize = int64(5) << 30

// sparseDisk creates a diskSize file named disk.img next to cfg, with a
// marker just before and (within the disk) after the area [start, end)
// that must survive.
func sparseDisk(t *testing.T, cfg string, start, end int64) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(cfg), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(diskSize); err != nil {
		t.Fatalf("make a sparse %d-byte disk image: %v", diskSize, err)
	}
	for _, off := range []int64{start - 8, end} {
		if off+8 > diskSize {
			continue
		}
		if _, err := f.WriteAt([]byte("keep me!"), off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func readDiskAt(t *testing.T, p string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %d bytes at %#x of %s: %v", n, off, p, err)
	}
	return b
}

// TestUBootAbove4GiB: environments at offsets above 2^32, counted from the
// start and from the end, single and redundant, written in place (the file
// is far too large to rewrite), read back by us and by libubootenv's
// fw_printenv and fw_setenv, which use 64-bit offsets on every
// architecture.
func TestUBootAbove4GiB(t *testing.T) {
	const at = int64(1)<<32 + 0x10000 // 4 GiB + 64 KiB
	for _, tc := range []struct {
		name       string
		cfg        string
		start, end int64 // the bytes the environment may occupy
	}{
		{"Single", fmt.Sprintf("disk.img %#x 0x2000\n", at), at, at + 0x2000},
		{"Redundant", fmt.Sprintf("disk.img %#x 0x2000\ndisk.img %#x 0x2000\n", at, at+0x2000), at, at + 0x4000},
		{"FromEnd", "disk.img -0x4000 0x2000\ndisk.img -0x2000 0x2000\n", diskSize - 0x4000, diskSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, tc.cfg)
			disk := sparseDisk(t, cfg, tc.start, tc.end)
			u := mustOpenUBoot(t, cfg)
			for i := range 3 {
				want := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "n": fmt.Sprint(i)}
				mustSave(t, u, want)
				assertVars(t, mustLoad(t, u), want)
			}
			if fi, err := os.Stat(disk); err != nil || fi.Size() != diskSize {
				t.Fatalf("disk image is %v bytes (%v) after saving, want %d", fi.Size(), err, diskSize)
			}
			if got := readDiskAt(t, disk, tc.start-8, 8); !bytes.Equal(got, []byte("keep me!")) {
				t.Fatalf("the 8 bytes before the environment changed: %q", got)
			}
			if tc.end < diskSize {
				if got := readDiskAt(t, disk, tc.end, 8); !bytes.Equal(got, []byte("keep me!")) {
					t.Fatalf("the 8 bytes after the environment changed: %q", got)
				}
			}
			// The environment is where the config says, not 4 GiB lower.
			if low := readDiskAt(t, disk, tc.start&(1<<32-1), 8); !bytes.Equal(low, make([]byte, 8)) {
				t.Fatalf("bytes at %#x (the offset truncated to 32 bits) were written: %q", tc.start&(1<<32-1), low)
			}

			// libubootenv takes negative offsets only on block devices: give
			// it the same copies as offsets from the start.
			toolsCfg := cfg
			if tc.name == "FromEnd" {
				toolsCfg = filepath.Join(filepath.Dir(cfg), "fw_env.tools.config")
				text := fmt.Sprintf("%s %#x 0x2000\n%s %#x 0x2000\n", disk, diskSize-0x4000, disk, diskSize-0x2000)
				if err := os.WriteFile(toolsCfg, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			fw := newFwTools(t, toolsCfg)
			assertVars(t, fw.printenv(), map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "n": "2"})
			fw.setenv("BOOT_A_LEFT", "2")
			assertVars(t, mustLoad(t, u), map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "n": "2"})
		})
	}
}
