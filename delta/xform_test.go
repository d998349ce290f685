package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var archNames = map[byte]string{archX86: "x86-64", archARM64: "arm64", archARM: "arm", archThumb: "thumb", archRISCV: "riscv64", archRVC: "riscv64-rvc"}

// TestConvertInverse: converting forward then back restores any bytes, for
// every architecture, at any offset, and the forward conversion does change
// code (so the test is not vacuous).
func TestConvertInverse(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 3))
	for arch := byte(1); arch < numArch; arch++ {
		t.Run(archNames[arch], func(t *testing.T) {
			for k := range 50 {
				n := 1 + r.IntN(3000)
				off := int64(r.IntN(1<<20)) &^ (granule - 1)
				img := fakeCode(r, arch, n)
				if k%2 == 0 {
					img = randBytes(r, n)
				}
				x := xform{{arch, off + int64(r.IntN(n)), off + int64(n)}}
				got := bytes.Clone(img)
				x.convert(got, off, true)
				if k == 1 && bytes.Equal(got, img) {
					t.Fatal("forward conversion changed nothing in code")
				}
				x.convert(got, off, false)
				if !bytes.Equal(got, img) {
					t.Fatalf("round trip at offset %d of %d bytes differs", off, n)
				}
			}
		})
	}
}

// TestConvertSpans: converting a span alone, from the granule-aligned bytes
// around it (as xformReader does), gives the bytes of converting the whole
// image.
func TestConvertSpans(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 4))
	for arch := byte(1); arch < numArch; arch++ {
		img := fakeCode(r, arch, 20000)
		x := xform{{arch, 100, 9000}, {arch, 9001, 19999}}
		whole := bytes.Clone(img)
		x.convert(whole, 0, true)
		xr := &xformReader{r: bytes.NewReader(img), size: int64(len(img)), x: x}
		for range 200 {
			lo := r.IntN(len(img))
			hi := lo + r.IntN(len(img)-lo+1)
			buf := make([]byte, hi-lo)
			if n, err := xr.ReadAt(buf, int64(lo)); n != len(buf) {
				t.Fatalf("%s: ReadAt: %d, %v", archNames[arch], n, err)
			}
			if !bytes.Equal(buf, whole[lo:hi]) {
				t.Fatalf("%s: span [%d,%d) converted alone differs", archNames[arch], lo, hi)
			}
		}
	}
}

// fakeCode returns instruction-like words with calls and address forms of
// arch at random.
func fakeCode(r *rand.Rand, arch byte, n int) []byte {
	b := make([]byte, 0, n+8)
	for len(b) < n {
		w := r.Uint32()
		switch r.IntN(4) {
		case 0:
			switch arch {
			case archX86:
				b = append(b, 0xE8)
				w = uint32(int32(w) >> 10)
			case archARM64:
				w = 0x94000000 | w&0x03FFFFFF
			case archARM:
				w = 0xEB000000 | w&0xFFFFFF
			case archThumb:
				w = (0xF000|w&0x7FF)&0xFFFF | (0xD000|w>>16&0x2FFF)<<16
			case archRISCV, archRVC:
				w = w&^0x7F | 0x6F
			}
		case 1:
			switch arch {
			case archARM64:
				w = w&0x60FFFFFF | 0x90000000
			case archRISCV, archRVC: // AUIPC t1 + ADDI t1, t1
				b = binary.LittleEndian.AppendUint32(b, w&0xFFFFF000|6<<7|0x17)
				w = w&0xFFF00000 | 6<<15 | 6<<7 | 0x13
			}
		}
		if arch == archRVC {
			if r.IntN(3) == 0 { // a 16-bit instruction
				b = binary.LittleEndian.AppendUint16(b, uint16(w)&^3|uint16(r.IntN(3)))
				continue
			}
			w |= 3 // a 32-bit one (JAL and AUIPC pairs above already are)
		}
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b[:n]
}

// fakeELF returns a little-endian ELF file of machine mach whose one
// executable section (at offset 0x1000) is code.
func fakeELF(mach uint16, is64 bool, code []byte) []byte {
	f := make([]byte, 0x1000)
	copy(f, "\x7fELF")
	f[5] = 1
	le.PutUint16(f[18:], mach)
	sh := 0x100
	if is64 {
		f[4] = 2
		le.PutUint64(f[0x28:], uint64(sh))
		le.PutUint16(f[0x3A:], 64)
		le.PutUint16(f[0x3C:], 2)
		s := f[sh+64:]
		le.PutUint32(s[4:], 1)
		le.PutUint64(s[8:], 6)
		le.PutUint64(s[0x18:], 0x1000)
		le.PutUint64(s[0x20:], uint64(len(code)))
	} else {
		f[4] = 1
		le.PutUint32(f[0x20:], uint32(sh))
		le.PutUint16(f[0x2E:], 40)
		le.PutUint16(f[0x30:], 2)
		s := f[sh+40:]
		le.PutUint32(s[4:], 1)
		le.PutUint32(s[8:], 6)
		le.PutUint32(s[0x10:], 0x1000)
		le.PutUint32(s[0x14:], uint32(len(code)))
	}
	return append(f, code...)
}

// linkARM64 lays out functions (each a list of words, where a word
// 0x94000000|k is "BL function k" and 0x90000000|k<<5 "ADRP to function
// k's page") and resolves the references, as a linker does.
func linkARM64(funcs [][]uint32) []byte {
	start := make([]int, len(funcs))
	pos := 0
	for i, f := range funcs {
		start[i] = pos
		pos += 4 * len(f)
	}
	code := make([]byte, 0, pos)
	for i, f := range funcs {
		for j, w := range f {
			pc := 0x1000 + start[i] + 4*j
			switch {
			case w&0xFC000000 == 0x94000000:
				tgt := 0x1000 + start[w&0xFFFF]
				w = 0x94000000 | uint32((tgt-pc)>>2)&0x03FFFFFF
			case w&0x9F000000 == 0x90000000:
				tgt := 0x1000 + start[w>>5&0xFFFF]
				imm := uint32(tgt>>12-pc>>12) & 0x1FFFFF
				w = 0x90000000 | (imm&3)<<29 | (imm>>2)<<5 | 1
			}
			code = binary.LittleEndian.AppendUint32(code, w)
		}
	}
	return code
}

// arm64Pair returns an arm64 ELF and the same program with a few functions
// grown, so that most calls' relative offsets change.
func arm64Pair(r *rand.Rand, nfunc int) (base, target []byte) {
	funcs := make([][]uint32, nfunc)
	for i := range funcs {
		f := make([]uint32, 8+r.IntN(120))
		for j := range f {
			switch r.IntN(6) {
			case 0:
				f[j] = 0x94000000 | uint32(r.IntN(nfunc))
			case 1:
				f[j] = 0x90000000 | uint32(r.IntN(nfunc))<<5
			default:
				f[j] = r.Uint32()&0x0FFFFFFF | 0x0B000000 // not BL/ADRP
			}
		}
		funcs[i] = f
	}
	base = fakeELF(183, true, linkARM64(funcs))
	for range 6 {
		k := r.IntN(nfunc)
		funcs[k] = append(funcs[k], make([]uint32, 1+r.IntN(40))...)
	}
	return base, fakeELF(183, true, linkARM64(funcs))
}

// TestTransformSmaller: on an arm64 executable whose functions moved, the
// transform makes the delta smaller than without (the encoder picks it
// per block), and the delta still applies.
func TestTransformSmaller(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 5))
	base, target := arm64Pair(r, 3000)
	if x := elfRegions(bytes.NewReader(base), int64(len(base))); len(x) != 1 || x[0].arch != archARM64 || x[0].start != 0x1000 {
		t.Fatalf("elfRegions = %v, want one arm64 region at 0x1000", x)
	}
	with := roundTrip(t, base, target, nil)
	without := roundTrip(t, base, target, &EncodeOptions{noXform: true})
	t.Logf("arm64 pair %d bytes: %d bytes with transforms, %d without", len(target), len(with), len(without))
	if len(with)*10 > len(without)*9 {
		t.Errorf("transform delta %d bytes, want under 0.9x of %d", len(with), len(without))
	}
	// Never worse: non-executable data gets the same size as without.
	rnd := randBytes(r, 200_000)
	a := roundTrip(t, rnd, mutate(r, rnd, 5), nil)
	if b := encode(t, rnd, mutate(rand.New(rand.NewPCG(1, 1)), rnd, 0), nil); len(b) == 0 || len(a) == 0 {
		t.Fatal("empty delta")
	}
}

// TestTransformELFKinds: each machine's ELF is recognised with its
// architecture and round-trips through Encode and Apply.
func TestTransformELFKinds(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 6))
	for _, tt := range []struct {
		mach uint16
		is64 bool
		arch byte
	}{{62, true, archX86}, {183, true, archARM64}, {40, false, archARM}, {40, false, archThumb}, {243, true, archRVC}} {
		t.Run(archNames[tt.arch], func(t *testing.T) {
			code := fakeCode(r, tt.arch, 100_000)
			base := fakeELF(tt.mach, tt.is64, code)
			if x := elfRegions(bytes.NewReader(base), int64(len(base))); len(x) != 1 || x[0].arch != tt.arch {
				t.Fatalf("elfRegions = %v, want one %s region", x, archNames[tt.arch])
			}
			target := fakeELF(tt.mach, tt.is64, append(append(fakeCode(r, tt.arch, 1000), code[:50_000]...), code[50_004:]...))
			roundTrip(t, base, target, &EncodeOptions{BlockSize: 8192})
		})
	}
}

// The transform vectors: an arm64 pair whose blocks are converted
// (versions 3 on) and a Go-like pair whose tables are (versions 5 on).
const (
	xformGolden = "testdata/golden/xform-arm64"
	tableGolden = "testdata/golden/xform-go"
	mapGolden   = "testdata/golden/xform-riscv64" // an address map (version 6 on)
)

// TestGoldenTransform applies every transform vector (v<version>-<n>) of
// each pair and checks the encoder still writes the newest (-update adds
// the next v<Version>-<n>; vectors are never rewritten).
func TestGoldenTransform(t *testing.T) {
	base, target := arm64Pair(rand.New(rand.NewPCG(2026, 20)), 200)
	goldenPair(t, xformGolden, 3, base, target)
	base, target = goPair(2026, 400)
	goldenPair(t, tableGolden, 5, base, target)
	base, target = rvPair(2026, 120, 500)
	goldenPair(t, mapGolden, 6, base, target)
}

func goldenPair(t *testing.T, dir string, first uint16, base, target []byte) {
	d := encode(t, base, target, &EncodeOptions{BlockSize: 16384})
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for n, b := range map[string][]byte{"base.elf": base, "target.elf": target} {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	rel := strings.TrimPrefix(dir, goldenDir+"/")
	gb, gt := readGolden(t, rel+"/base.elf"), readGolden(t, rel+"/target.elf")
	if !bytes.Equal(gb, base) || !bytes.Equal(gt, target) {
		t.Fatal("golden inputs changed: the generator must stay fixed")
	}
	var newest []byte
	for v := first; v <= Version; v++ {
		for n := 1; ; n++ {
			name := fmt.Sprintf("v%d-%d.fwdelta", v, n)
			gd, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				if n == 1 && v == first && !*update {
					t.Fatal(err)
				}
				break
			}
			got, h, err := apply(gb, gd)
			if err != nil || !bytes.Equal(got, gt) || h.Version != v {
				t.Fatalf("Apply %s/%s: %v (version %d)", dir, name, err, h.Version)
			}
			newest = gd
		}
	}
	if !bytes.Equal(newest, d) {
		// The next vector of the version the encoder wrote (5 without
		// an address map).
		h, _ := ReadHeader(bytes.NewReader(d))
		seq := 1
		for ; ; seq++ {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("v%d-%d.fwdelta", h.Version, seq))); err != nil {
				break
			}
		}
		name := fmt.Sprintf("v%d-%d.fwdelta", h.Version, seq)
		if !*update {
			t.Fatalf("encoder output differs from the newest vector in %s; if intended, add %s with go test -run Golden -update", dir, name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), d, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("added %s/%s", dir, name)
	}
}

// TestTransformArchVersions: an architecture is refused in a delta of a
// version before it existed (archRVC came with version 4).
func TestTransformArchVersions(t *testing.T) {
	regions := []byte{1, archRVC, 0, 10}
	if _, err := readXform(bytes.NewReader(regions), 100, 3); !errors.Is(err, ErrCorrupt) {
		t.Errorf("version 3 with archRVC: %v, want ErrCorrupt", err)
	}
	if x, err := readXform(bytes.NewReader(regions), 100, 4); err != nil || len(x) != 1 || x[0] != (region{archRVC, 0, 10}) {
		t.Errorf("version 4 with archRVC: %v, %v", x, err)
	}
}

// FuzzConvert: any bytes at any offset convert back to themselves.
func FuzzConvert(f *testing.F) {
	r := rand.New(rand.NewPCG(20, 7))
	for arch := byte(1); arch < numArch; arch++ {
		f.Add(fakeCode(r, arch, 600), arch, uint32(0x12345600))
	}
	f.Fuzz(func(t *testing.T, img []byte, arch byte, off uint32) {
		arch = 1 + arch%(numArch-1)
		o := int64(off) &^ (granule - 1)
		x := xform{{arch, o, o + int64(len(img))}}
		got := bytes.Clone(img)
		x.convert(got, o, true)
		x.convert(got, o, false)
		if !bytes.Equal(got, img) {
			t.Fatal("round trip differs")
		}
	})
}

// FuzzApplyTransform: hostile version-3 deltas (region lists, converted
// blocks) are an error, never a panic or an unbounded allocation.
func FuzzApplyTransform(f *testing.F) {
	base, target := arm64Pair(rand.New(rand.NewPCG(2026, 21)), 60)
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 4096}))
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 256}))
	f.Fuzz(func(t *testing.T, d []byte) {
		h, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), io.Discard)
		if err == nil && h.BaseLen != int64(len(base)) {
			t.Fatalf("accepted a delta for a %d-byte base", h.BaseLen)
		}
	})
}
