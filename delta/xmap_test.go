package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
)

// rvItem is one instruction of a synthetic riscv64 function: a 16- or
// 32-bit filler, an AUIPC pair addressing data object obj, or a JAL
// calling function fn.
type rvItem struct {
	kind    int // 0 filler16, 1 filler32, 2 AUIPC pair, 3 JAL
	rnd     uint32
	obj, fn int
}

// rvProgram returns nfunc functions referencing nobj data objects, and
// each object's bytes (up to 160).
func rvProgram(r *rand.Rand, nfunc, nobj int) (funcs [][]rvItem, objs [][]byte) {
	for range nobj {
		objs = append(objs, randBytes(r, 160))
	}
	for range nfunc {
		var f []rvItem
		for range 8 + r.IntN(40) {
			f = append(f, rvItem{kind: r.IntN(4), rnd: r.Uint32(), obj: r.IntN(nobj), fn: r.IntN(nfunc)})
		}
		funcs = append(funcs, f)
	}
	return funcs, objs
}

// isa is how linkELF writes one instruction set's items: the ELF machine,
// each item's length, the item's bytes at pc (start holds each function's
// address, addr each object's) and function i's grow filler.
type isa struct {
	machine uint16
	itemLen func(rvItem) int
	emit    func(img []byte, pc int, it rvItem, start, addr []int)
	filler  func(i int) uint32
}

// linkELF lays out funcs (function i with grow[i] more fillers) in .text
// at 0x1000 and the objects (object k with its first size[k] bytes) in a
// data section after it, resolves the references as a linker does, and
// returns the ELF file (addresses equal file offsets).
func linkELF(set isa, funcs [][]rvItem, objs [][]byte, size, grow []int) []byte {
	start := make([]int, len(funcs))
	pc := 0x1000
	for i, f := range funcs {
		start[i] = pc
		for _, it := range f {
			pc += set.itemLen(it)
		}
		pc += 4 * grow[i]
	}
	textEnd := pc
	data := (textEnd + 0xFFF) &^ 0xFFF
	addr := make([]int, len(objs))
	at := data
	for k := range objs {
		addr[k] = at
		at += (size[k] + 7) &^ 7
	}
	img := make([]byte, at)
	copy(img, "\x7fELF")
	img[4], img[5] = 2, 1
	le.PutUint16(img[18:], set.machine)
	le.PutUint64(img[0x28:], 0x100)
	le.PutUint16(img[0x3A:], 64)
	le.PutUint16(img[0x3C:], 3)
	for k, s := range [][3]int{{6, 0x1000, textEnd - 0x1000}, {2, data, at - data}} {
		h := img[0x100+64*(k+1):]
		le.PutUint32(h[4:], 1)
		le.PutUint64(h[8:], uint64(s[0]))
		le.PutUint64(h[0x10:], uint64(s[1]))
		le.PutUint64(h[0x18:], uint64(s[1]))
		le.PutUint64(h[0x20:], uint64(s[2]))
	}
	pc = 0x1000
	for i, f := range funcs {
		for _, it := range f {
			set.emit(img, pc, it, start, addr)
			pc += set.itemLen(it)
		}
		for range grow[i] {
			le.PutUint32(img[pc:], set.filler(i))
			pc += 4
		}
	}
	for k, o := range objs {
		copy(img[addr[k]:], o[:size[k]])
	}
	return img
}

// isaRISCV64 is linkELF's riscv64: 16- and 32-bit fillers, AUIPC + ADDI
// pairs and JALs.
var isaRISCV64 = isa{
	machine: 243,
	itemLen: func(it rvItem) int {
		switch it.kind {
		case 0:
			return 2
		case 2:
			return 8
		}
		return 4
	},
	emit: func(img []byte, pc int, it rvItem, start, addr []int) {
		switch it.kind {
		case 0:
			le.PutUint16(img[pc:], uint16(it.rnd)&^3|uint16(it.rnd>>16)%3)
		case 1:
			le.PutUint32(img[pc:], it.rnd&^0x7F|0x33)
		case 2:
			off := uint32(addr[it.obj] - pc)
			lo := uint32(int32(off<<20) >> 20)
			rd := 5 + it.rnd%10
			le.PutUint32(img[pc:], (off-lo)&0xFFFFF000|rd<<7|0x17)
			le.PutUint32(img[pc+4:], lo<<20|rd<<15|rd<<7|0x13)
		case 3:
			o := uint32(start[it.fn] - pc)
			le.PutUint32(img[pc:], (o>>20&1)<<31|(o>>1&0x3FF)<<21|(o>>11&1)<<20|(o>>12&0xFF)<<12|1<<7|0x6F)
		}
	},
	filler: func(i int) uint32 { return 0x33 | uint32(i)<<7 },
}

// isaARM64 is linkELF's arm64: fillers are 32-bit words, an AUIPC pair
// becomes ADRP + ADD or ADRP + LDR (64-bit) and a JAL a BL.
var isaARM64 = isa{
	machine: 183,
	itemLen: func(it rvItem) int {
		if it.kind == 2 {
			return 8
		}
		return 4
	},
	emit: func(img []byte, pc int, it rvItem, start, addr []int) {
		switch it.kind {
		case 0, 1:
			le.PutUint32(img[pc:], it.rnd&0x00FFFFFF|0x8B000000) // ADD (shifted register)
		case 2:
			a := addr[it.obj]
			page := uint32(a>>12 - pc>>12)
			rd := it.rnd % 29
			le.PutUint32(img[pc:], 0x90000000|(page&3)<<29|(page>>2&0x7FFFF)<<5|rd)
			if it.rnd>>8&1 == 0 {
				le.PutUint32(img[pc+4:], 0x91000000|uint32(a&0xFFF)<<10|rd<<5|rd)
			} else {
				le.PutUint32(img[pc+4:], 0xF9400000|uint32(a&0xFFF)>>3<<10|rd<<5|(rd+1)%29)
			}
		case 3:
			le.PutUint32(img[pc:], 0x94000000|uint32(start[it.fn]-pc)>>2&0x03FFFFFF)
		}
	},
	filler: func(i int) uint32 { return 0x8B000000 | uint32(i) },
}

// rvPair is mapPair for riscv64.
func rvPair(seed uint64, nfunc, nobj int) (base, target []byte) {
	return mapPair(seed, nfunc, nobj, isaRISCV64)
}

// mapPair returns a pair for set (riscv64 or arm64) in which
// a tenth of the data objects grew and one function in 20 grew, so that
// most references' targets moved.
func mapPair(seed uint64, nfunc, nobj int, set isa) (base, target []byte) {
	r := rand.New(rand.NewPCG(seed, 6))
	funcs, objs := rvProgram(r, nfunc, nobj)
	bs, ts := make([]int, nobj), make([]int, nobj)
	for k := range objs {
		bs[k] = 16 + r.IntN(100)
		ts[k] = bs[k]
		if r.IntN(10) == 0 {
			ts[k] += 8 + r.IntN(40)
		}
	}
	bg, tg := make([]int, nfunc), make([]int, nfunc)
	for i := range funcs {
		if r.IntN(20) == 0 {
			tg[i] = 1 + r.IntN(6)
		}
	}
	return linkELF(set, funcs, objs, bs, bg), linkELF(set, funcs, objs, ts, tg)
}

// TestMapARM64: as TestMapRISCV for arm64 code (version 7).
func TestMapARM64(t *testing.T) {
	base, target := mapPair(2026, 400, 2000, isaARM64)
	if x := elfRegions(bytes.NewReader(base), int64(len(base))); len(x) != 1 || x[0].arch != archARM64 {
		t.Fatalf("regions %v", x)
	}
	with := roundTrip(t, base, target, &EncodeOptions{BlockSize: 16384})
	without := encode(t, base, target, &EncodeOptions{BlockSize: 16384, noMap: true})
	if h, err := ReadHeader(bytes.NewReader(with)); err != nil || h.Version != 7 {
		t.Fatalf("delta with a map: version %d (%v), want 7", h.Version, err)
	}
	t.Logf("with the map %d bytes, without %d (%.3f)", len(with), len(without), float64(len(with))/float64(len(without)))
	if 10*len(with) > 6*len(without) {
		t.Errorf("with the map %d bytes, without %d: want below 0.6", len(with), len(without))
	}
	// A version-6 decoder moves riscv64 references only: the same delta
	// as version 6 does not rebuild the target.
	v6 := bytes.Clone(with)
	binary.BigEndian.PutUint16(v6[len(Magic):], 6)
	crcFix(v6)
	if got, _, err := apply(base, v6); err == nil && bytes.Equal(got, target) {
		t.Error("version 6 moved arm64 references")
	}
}

// TestMapRISCV: on riscv64 code whose data moved, the address map makes
// the delta much smaller; the delta is version 6 and applies. Without a
// map (other architectures) the encoder still writes version 5.
func TestMapRISCV(t *testing.T) {
	base, target := rvPair(2026, 400, 2000)
	with := roundTrip(t, base, target, &EncodeOptions{BlockSize: 16384})
	without := encode(t, base, target, &EncodeOptions{BlockSize: 16384, noMap: true})
	h, err := ReadHeader(bytes.NewReader(with))
	if err != nil || h.Version != Version {
		t.Fatalf("delta with a map: version %d (%v), want %d", h.Version, err, Version)
	}
	t.Logf("with the map %d bytes, without %d (%.3f)", len(with), len(without), float64(len(with))/float64(len(without)))
	if 10*len(with) > 6*len(without) {
		t.Errorf("with the map %d bytes, without %d: want below 0.6", len(with), len(without))
	}
	if one := encode(t, base, target, &EncodeOptions{BlockSize: 16384, Workers: 1}); !bytes.Equal(one, with) {
		t.Error("the delta with a map depends on the number of workers")
	}
	if h, _ := ReadHeader(bytes.NewReader(without)); h.Version != 5 {
		t.Errorf("delta without a map: version %d, want 5", h.Version)
	}
	r := rand.New(rand.NewPCG(2026, 21))
	xb := fakeELF(62, true, fakeCode(r, archX86, 30000))
	xt := fakeELF(62, true, append(fakeCode(r, archX86, 500), xb[0x1000:]...))
	if h, _ := ReadHeader(bytes.NewReader(encode(t, xb, xt, nil))); h.Version != 5 {
		t.Errorf("x86-64 delta: version %d, want 5", h.Version)
	}
}

// TestMapLimits: an address map over the limits or out of order is
// corrupt; a valid one moves positions by the last entry at or before
// them.
func TestMapLimits(t *testing.T) {
	entries := func(n uint64, e ...int64) []byte {
		b := binary.AppendUvarint(nil, n)
		for i := 0; i+1 < len(e); i += 2 {
			b = binary.AppendUvarint(b, uint64(e[i]))
			b = binary.AppendVarint(b, e[i+1])
		}
		return b
	}
	for name, b := range map[string][]byte{
		"count":         entries(maxMapEntries + 1),
		"truncated":     entries(2, 5, 1),
		"not ascending": entries(2, 5, 1, 0, 2),
		"position":      entries(1, 1<<32, 1),
		"positions":     entries(2, 1<<31, 1, 1<<31, 1),
		"shift":         entries(1, 5, 1<<32),
		"negative":      entries(1, 5, -1<<32),
	} {
		if _, err := readMap(bytes.NewReader(b)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	m, err := readMap(bytes.NewReader(entries(3, 0, 7, 100, -3, 1, 1<<32-1)))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int64]int64{0: 7, 99: 106, 100: 97, 101: 101 + 1<<32 - 1} {
		if got := m.move(p); got != want {
			t.Errorf("move(%d) = %d, want %d", p, got, want)
		}
	}
	if m, err := readMap(bytes.NewReader(entries(0))); m != nil || err != nil {
		t.Errorf("empty map: %v, %v", m, err)
	}
}

// TestMapSpans: a span of the base converted alone (xformReader, as the
// decoder reads it) equals the same span of the whole image converted and
// moved, as the encoder does it.
func TestMapSpans(t *testing.T) {
	base, target := rvPair(7, 100, 500)
	x := elfRegions(bytes.NewReader(base), int64(len(base)))
	moves, err := scanMoves(newIndex(context.Background(), base, 1), base, bytes.NewReader(target), len(target), 4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := buildMap(moves, nil, int64(len(base)))
	if m == nil {
		t.Fatal("no map")
	}
	whole := bytes.Clone(base)
	x.convert(whole, 0, true)
	m.apply(x, whole, 0)
	if bytes.Equal(whole, base) {
		t.Fatal("nothing converted")
	}
	xr := &xformReader{r: bytes.NewReader(base), size: int64(len(base)), x: x, m: m}
	r := rand.New(rand.NewPCG(7, 7))
	for range 200 {
		lo := r.IntN(len(base))
		buf := make([]byte, min(1+r.IntN(3000), len(base)-lo))
		if _, err := xr.ReadAt(buf, int64(lo)); err != nil || !bytes.Equal(buf, whole[lo:lo+len(buf)]) {
			t.Fatalf("span at %d (%d bytes) differs (%v)", lo, len(buf), err)
		}
	}
}

// FuzzApplyMap: hostile version-6 and -7 deltas (address maps, converted blocks)
// are an error, never a panic or an unbounded allocation.
func FuzzApplyMap(f *testing.F) {
	base, target := rvPair(2026, 100, 500)
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 4096}))
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 256}))
	// An arm64 delta applied to the riscv64 base: other regions, same map.
	ab, at := mapPair(2026, 100, 500, isaARM64)
	f.Add(encode(f, ab, at, &EncodeOptions{BlockSize: 4096}))
	f.Fuzz(func(t *testing.T, d []byte) {
		h, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), io.Discard)
		if err == nil && h.BaseLen != int64(len(base)) {
			t.Fatalf("accepted a delta for a %d-byte base", h.BaseLen)
		}
	})
}

// FuzzMapSpan: moving any bytes by any map never panics and changes no
// byte outside the archRVC or arm64 region.
func FuzzMapSpan(f *testing.F) {
	r := rand.New(rand.NewPCG(20, 66))
	f.Add(fakeCode(r, archRVC, 600), uint32(0x1234500), int64(3), int64(-70000), false)
	f.Add(fakeCode(r, archARM64, 600), uint32(0x1234500), int64(0x1234700), int64(4096), true)
	f.Fuzz(func(t *testing.T, img []byte, off uint32, a, s int64, arm bool) {
		o := int64(off) &^ (granule - 1)
		if len(img) < 8 {
			return
		}
		arch := byte(archRVC)
		if arm {
			arch = archARM64
		}
		x := xform{{arch, o + 4, o + int64(len(img)) - 4}}
		m := &addrMap{at: []int64{0, a & 0xFFFFFFFF}, shift: []int64{s % (1 << 32), -s % (1 << 32)}, arm64: true}
		if m.at[1] == 0 {
			m.at = m.at[1:]
			m.shift = m.shift[1:]
		}
		got := bytes.Clone(img)
		m.apply(x, got, o)
		if !bytes.Equal(got[:4], img[:4]) || !bytes.Equal(got[len(got)-4:], img[len(img)-4:]) {
			t.Fatal("changed bytes outside the region")
		}
	})
}

// crcFix recomputes the header CRC of delta d after an edit.
func crcFix(d []byte) {
	binary.BigEndian.PutUint32(d[HeaderSize-4:], crc32.Checksum(d[:HeaderSize-4], castagnoli))
}
