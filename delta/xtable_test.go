package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

var tableKinds = []byte{tabPairs, tabFunc4, tabFunc8, tabRela64}

// fakeFuncs returns n Go _func records (Go 1.20 layout) laid out as the
// linker does, aligned to align, with pctab offsets, names and funcdata
// that mostly grow, and the functab (entryoff, funcoff pairs and the end
// entry) that indexes them.
func fakeFuncs(r *rand.Rand, n, align int, grow func(i int) int) (functab, funcs []byte) {
	tabLen := n*8 + 4
	start := (tabLen + align - 1) &^ (align - 1)
	var entry, name, pc uint32
	fd := [maxFuncdata]uint32{}
	for i := range n {
		off := start + len(funcs)
		functab = binary.LittleEndian.AppendUint32(functab, entry)
		functab = binary.LittleEndian.AppendUint32(functab, uint32(off))
		npc, nfd := r.IntN(5), r.IntN(9)
		rec := make([]uint32, funcWords+npc+nfd)
		rec[0], rec[1], rec[2], rec[3] = entry, name, uint32(r.IntN(64)), 0
		for _, k := range []int{4, 5, 6} {
			rec[k] = pc
			pc += uint32(1 + r.IntN(40))
		}
		rec[7], rec[8], rec[9], rec[10] = uint32(npc), 1, uint32(100+i), uint32(nfd)<<24
		for k := range npc {
			if r.IntN(4) > 0 {
				rec[funcWords+k] = pc
				pc += uint32(1 + r.IntN(20))
			}
		}
		for k := range nfd {
			rec[funcWords+npc+k] = ^uint32(0)
			if r.IntN(3) > 0 {
				fd[k] += uint32(8 + r.IntN(64))
				rec[funcWords+npc+k] = fd[k]
			}
		}
		for _, w := range rec {
			funcs = binary.LittleEndian.AppendUint32(funcs, w)
		}
		for len(funcs)%align != 0 && i < n-1 {
			funcs = append(funcs, 0)
		}
		entry += uint32(16 + 4*r.IntN(200) + grow(i))
		name += uint32(5 + r.IntN(30))
	}
	functab = binary.LittleEndian.AppendUint32(functab, entry)
	return functab, funcs
}

// fakeTable returns table-like bytes of kind: structured mostly, random
// words at times.
func fakeTable(r *rand.Rand, kind byte, n int) []byte {
	var b []byte
	switch kind {
	case tabFunc4, tabFunc8:
		align := 4
		if kind == tabFunc8 {
			align = 8
		}
		_, b = fakeFuncs(r, 1+n/60, align, func(int) int { return 0 })
	default:
		var v uint32
		for len(b) < n {
			v += uint32(r.IntN(100))
			b = binary.LittleEndian.AppendUint32(b, v)
		}
	}
	for range r.IntN(4) {
		if len(b) > 0 {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
	}
	return b[:min(len(b), n)]
}

// tableRoundTrip converts img (regions x) forward as the encoder does,
// then back block by block as the decoder does, with blocks of blockSize
// converted or not at random, and reports whether the original came back.
func tableRoundTrip(r *rand.Rand, img []byte, x xform, blockSize int) bool {
	conv := bytes.Clone(img)
	convertTables(conv, x)
	rt := newResultTables(x)
	var out []byte
	for lo := 0; lo < len(img); lo += blockSize {
		hi := min(lo+blockSize, len(img))
		converted := r.IntN(2) == 0
		blk := bytes.Clone(img[lo:hi])
		if converted {
			blk = bytes.Clone(conv[lo:hi])
		}
		if rt.overlaps(int64(lo), int64(hi)) {
			rt.block(blk, int64(lo), converted)
		}
		out = append(out, blk...)
	}
	return bytes.Equal(out, img)
}

// TestTableInverse: converting a table forward, then back in blocks as the
// decoder does (some blocks converted, some not), restores any bytes, and
// the forward conversion changes structured tables.
func TestTableInverse(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 30))
	for _, kind := range tableKinds {
		for k := range 40 {
			n := 4 + r.IntN(40000)
			img := fakeTable(r, kind, n)
			if k%3 == 0 {
				img = randBytes(r, n)
			}
			lo := int64(4 * r.IntN(len(img)/8+1))
			x := xform{{kind, lo, int64(len(img)) - int64(r.IntN(4))}}
			if x[0].end <= x[0].start {
				continue
			}
			if k == 1 {
				conv := bytes.Clone(img)
				convertTables(conv, x)
				if bytes.Equal(conv, img) {
					t.Fatalf("kind %d: forward conversion changed nothing", kind)
				}
			}
			if !tableRoundTrip(r, img, x, 256*(1+r.IntN(20))) {
				t.Fatalf("kind %d: round trip of %d bytes differs", kind, len(img))
			}
		}
	}
}

// TestTableSpans: a span converted from the walk's checkpoints (the
// decoder's base, the encoder's target blocks) equals the same span of the
// whole image converted, wherever it starts, in any order.
func TestTableSpans(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 31))
	for _, kind := range tableKinds {
		img := fakeTable(r, kind, 400_000)
		x := xform{{archARM64, 0, 1000}, {kind, 1004, 200_000}, {kind, 200_000, 399_999}}
		whole := bytes.Clone(img)
		x.convert(whole, 0, true)
		convertTables(whole, x)
		tab, err := newTables(bytes.NewReader(img), x)
		if err != nil {
			t.Fatal(err)
		}
		xr := &xformReader{r: bytes.NewReader(img), size: int64(len(img)), x: x, tab: tab.cursor()}
		for k := range 300 {
			lo := r.IntN(len(img))
			if k%2 == 0 && k > 0 {
				lo = min(len(img)-1, lo/3+r.IntN(100)) // in order, near each other
			}
			hi := lo + r.IntN(min(len(img)-lo, 150_000)+1)
			buf := make([]byte, hi-lo)
			if n, err := xr.ReadAt(buf, int64(lo)); n != len(buf) {
				t.Fatalf("kind %d: ReadAt: %d, %v", kind, n, err)
			}
			if !bytes.Equal(buf, whole[lo:hi]) {
				t.Fatalf("kind %d: span [%d,%d) converted alone differs", kind, lo, hi)
			}
		}
	}
}

// TestTableVersions: table kinds are refused before version 5, and a
// table region must start 4-aligned.
func TestTableVersions(t *testing.T) {
	regions := []byte{1, tabFunc8, 8, 100}
	if _, err := readXform(bytes.NewReader(regions), 1000, 4); !errors.Is(err, ErrCorrupt) {
		t.Errorf("version 4 with a table kind: %v, want ErrCorrupt", err)
	}
	if x, err := readXform(bytes.NewReader(regions), 1000, 5); err != nil || len(x) != 1 || x[0] != (region{tabFunc8, 8, 108}) {
		t.Errorf("version 5 with a table kind: %v, %v", x, err)
	}
	if _, err := readXform(bytes.NewReader([]byte{1, tabPairs, 6, 100}), 1000, 5); !errors.Is(err, ErrCorrupt) {
		t.Errorf("table region at 6: %v, want ErrCorrupt", err)
	}
}

// FuzzConvertTables: any bytes in a table region of any kind convert back
// to themselves block by block, and spans converted alone match.
func FuzzConvertTables(f *testing.F) {
	r := rand.New(rand.NewPCG(20, 32))
	for _, kind := range tableKinds {
		f.Add(fakeTable(r, kind, 3000), kind, uint16(8), uint64(1))
	}
	f.Fuzz(func(t *testing.T, img []byte, kind byte, start uint16, seed uint64) {
		kind = tabPairs + kind%(numKinds-tabPairs)
		s := int64(start) % int64(len(img)+1) &^ 3
		if s >= int64(len(img)) {
			return
		}
		x := xform{{kind, s, int64(len(img))}}
		r := rand.New(rand.NewPCG(seed, 1))
		if !tableRoundTrip(r, img, x, 256) {
			t.Fatal("round trip differs")
		}
		whole := bytes.Clone(img)
		convertTables(whole, x)
		tab, err := newTables(bytes.NewReader(img), x)
		if err != nil {
			t.Fatal(err)
		}
		c := tab.cursor()
		lo := int64(r.IntN(len(img))) &^ (granule - 1)
		buf := bytes.Clone(img[lo:])
		if err := c.convert(buf, lo); err != nil || !bytes.Equal(buf, whole[lo:]) {
			t.Fatalf("span at %d converted alone differs (%v)", lo, err)
		}
	})
}

// fakeGoELF returns a little-endian 64-bit arm64 ELF file with code, a Go
// pclntab (header, functab, _func records), a .rela.dyn and an
// .eh_frame_hdr whose entries follow the functions, as a linker lays them
// out; grow(i) bytes are added to function i.
func fakeGoELF(seed uint64, nfunc int, grow func(i int) int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	ftab, funcs := fakeFuncs(r, nfunc, 8, grow)
	var pcln []byte
	pcln = binary.LittleEndian.AppendUint32(pcln, 0xFFFFFFF1)
	pcln = append(pcln, 0, 0, 4, 8)
	hdr := []uint64{uint64(nfunc), 1, 0, 72, 72, 72, 72, 72}
	for _, v := range hdr {
		pcln = binary.LittleEndian.AppendUint64(pcln, v)
	}
	pcln = append(append(pcln, ftab...), make([]byte, (-len(ftab))&7)...)
	pcln = append(pcln, funcs...)
	var rela, ehh []byte
	ehh = append(ehh, 1, 0x1b, 0x03, 0x3b)
	ehh = binary.LittleEndian.AppendUint32(ehh, 0x100)
	ehh = binary.LittleEndian.AppendUint32(ehh, uint32(nfunc))
	for i := range nfunc {
		entry := binary.LittleEndian.Uint32(ftab[8*i:])
		rela = binary.LittleEndian.AppendUint64(rela, uint64(0x20000+8*i))
		rela = binary.LittleEndian.AppendUint64(rela, 1027)
		rela = binary.LittleEndian.AppendUint64(rela, uint64(0x1000+entry))
		ehh = binary.LittleEndian.AppendUint32(ehh, 0x1000+entry)
		ehh = binary.LittleEndian.AppendUint32(ehh, uint32(0x9000+40*i))
	}
	code := fakeCode(r, archARM64, 4096)
	strtab := []byte("\x00.text\x00.gopclntab\x00.rela.dyn\x00.eh_frame_hdr\x00.shstrtab\x00")
	type sec struct {
		name, typ uint32
		flags     uint64
		data      []byte
		ent       uint64
	}
	secs := []sec{{}, {1, 1, 6, code, 0}, {7, 1, 2, pcln, 0}, {18, 4, 2, rela, 24}, {28, 1, 2, ehh, 0}, {42, 3, 0, strtab, 0}}
	f := make([]byte, 0x1000)
	copy(f, "\x7fELF")
	f[4], f[5] = 2, 1
	le.PutUint16(f[18:], 183)
	le.PutUint64(f[0x28:], 0x100)
	le.PutUint16(f[0x3A:], 64)
	le.PutUint16(f[0x3C:], uint16(len(secs)))
	le.PutUint16(f[0x3E:], uint16(len(secs)-1))
	for k, s := range secs {
		if k == 0 {
			continue
		}
		for len(f)%16 != 0 {
			f = append(f, 0)
		}
		h := f[0x100+64*k:]
		le.PutUint32(h, s.name)
		le.PutUint32(h[4:], s.typ)
		le.PutUint64(h[8:], s.flags)
		le.PutUint64(h[0x18:], uint64(len(f)))
		le.PutUint64(h[0x20:], uint64(len(s.data)))
		le.PutUint64(h[0x38:], s.ent)
		f = append(f, s.data...)
	}
	return f
}

// goPair returns a Go-like ELF and the same program with a few functions
// grown, so that every later functab, _func, relocation and eh_frame_hdr
// entry moved.
func goPair(seed uint64, nfunc int) (base, target []byte) {
	base = fakeGoELF(seed, nfunc, func(int) int { return 0 })
	target = fakeGoELF(seed, nfunc, func(i int) int {
		if i%(nfunc/5+1) == 3 {
			return 64
		}
		return 0
	})
	return base, target
}

// TestTablesELF: the tables of a Go ELF are found (functab, _func records,
// Rela, eh_frame_hdr), the delta applies and is much smaller than with the
// code transforms alone.
func TestTablesELF(t *testing.T) {
	base, target := goPair(7, 3000)
	var kinds []byte
	for _, g := range elfRegions(bytes.NewReader(target), int64(len(target))) {
		kinds = append(kinds, g.arch)
	}
	if want := []byte{archARM64, tabPairs, tabFunc8, tabRela64, tabPairs}; !bytes.Equal(kinds, want) {
		t.Fatalf("regions of kinds %v, want %v", kinds, want)
	}
	with := roundTrip(t, base, target, &EncodeOptions{BlockSize: 16384})
	code := roundTrip(t, base, target, &EncodeOptions{BlockSize: 16384, noTables: true})
	t.Logf("Go-like pair of %d bytes: %d bytes with table transforms, %d without", len(target), len(with), len(code))
	if len(with)*2 > len(code) {
		t.Errorf("table transforms: %d bytes, want under half of %d", len(with), len(code))
	}
}

// FuzzApplyTables: hostile version-5 deltas with table regions (any kind,
// any place, converted blocks or not) are an error, never a panic or an
// unbounded allocation.
func FuzzApplyTables(f *testing.F) {
	base, target := goPair(2026, 200)
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 4096}))
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 256}))
	f.Fuzz(func(t *testing.T, d []byte) {
		h, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), io.Discard)
		if err == nil && h.BaseLen != int64(len(base)) {
			t.Fatalf("accepted a delta for a %d-byte base", h.BaseLen)
		}
	})
}
