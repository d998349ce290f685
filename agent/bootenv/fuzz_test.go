package bootenv

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets for every parser of bytes the agent does not control: the
// environments on disk (written by the bootloader, or corrupted) and the
// fw_env.config. Seeds come from testdata.

func seed(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzUBootParse(f *testing.F) {
	seed(f, "uboot-single.bin", "uboot-redundant.bin", "uboot-fwsetenv-0.bin")
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, redundant := range []bool{false, true} {
			// Also try b with a correct CRC, or the fuzzer would rarely get
			// past the checksum into the variable parser.
			fixed := append([]byte(nil), b...)
			if h := headerLen(redundant); len(fixed) > h {
				copy(fixed, crcOf(fixed[h:]))
			}
			fuzzUBootRoundTrip(t, b, redundant)
			fuzzUBootRoundTrip(t, fixed, redundant)
		}
	})
}

func fuzzUBootRoundTrip(t *testing.T, b []byte, redundant bool) {
	vars, flags, err := parseUBootEnv(b, redundant)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		return
	}
	// What we read, we can write back and read again. One byte more: the
	// parser accepts a full data area without the final empty string.
	enc, err := encodeUBootEnv(vars, len(b)+1, redundant, flags)
	if err != nil {
		t.Fatalf("re-encode %q: %v", vars, err)
	}
	again, flags2, err := parseUBootEnv(enc, redundant)
	if err != nil || flags2 != flags || !maps.Equal(again, vars) {
		t.Fatalf("round trip: %q -> %q (%v)", vars, again, err)
	}
}

func FuzzGrubParse(f *testing.F) {
	seed(f, "grubenv", "grubenv-fwctl")
	f.Add([]byte(grubSignature + "a=\\\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		vars, err := parseGrubEnv(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		enc, err := encodeGrubEnv(vars)
		if err != nil {
			return // names GRUB reads but we refuse to write, or too large
		}
		again, err := parseGrubEnv(enc)
		if err != nil || !maps.Equal(again, vars) {
			t.Fatalf("round trip: %q -> %q (%v)", vars, again, err)
		}
	})
}

func FuzzFwEnvConfig(f *testing.F) {
	f.Add([]byte("# dev offset size sector sectors\n/dev/mmcblk0 0x3f0000 0x10000 0x10000 1\n/dev/mmcblk0 0x400000 0x10000\n"))
	f.Add([]byte("/boot/uboot.env -010 4000 # c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseFwEnvConfig(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if n := len(cfg.Copies); n < 1 || n > 2 {
			t.Fatalf("%d copies", n)
		}
		for _, c := range cfg.Copies {
			if c.Size < minEnvSize || c.Path == "" {
				t.Fatalf("bad copy accepted: %+v", c)
			}
		}
	})
}
