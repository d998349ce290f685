package delta

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Address maps (format versions 6 and 7, FORMAT.md "Address map").
//
// A riscv64 AUIPC pair or an arm64 ADRP pair addresses data and code
// through an offset, and a dependency upgrade moves most of the data it
// addresses: strings, type descriptors and variables shift by different
// amounts, so even the absolute form of the pair (versions 3 and 4)
// changes in every reference to moved data. A version-6 or -7 delta
// carries a map from base positions to the positions they moved to in the
// result, piecewise constant, and the decoder applies it to the base's
// converted references (riscv64 pairs and JAL offsets; in version 7 also
// arm64 BL targets and ADRP pairs): each reference then names where its
// target lies in the result, which is what the result's own reference
// holds when the target only moved. The map is applied to the base only
// (the result is converted as in version 5), so it need not be
// invertible; a wrong map makes a delta larger, never wrong.

// maxMapEntries caps a delta's address map (16 bytes each in memory).
const maxMapEntries = 1 << 16

// addrMap is the sorted breakpoints of a map: a base position p moves by
// shift[i] for the last i with at[i] <= p, by 0 before the first.
type addrMap struct {
	at    []int64
	shift []int64
	arm64 bool // version 7: also arm64 regions
}

// move returns p moved by the map.
func (m *addrMap) move(p int64) int64 {
	i := sort.Search(len(m.at), func(i int) bool { return m.at[i] > p }) - 1
	if i < 0 {
		return p
	}
	return p + m.shift[i]
}

// appendMap writes m: count, then per entry the gap from the previous
// entry's position (from 0 for the first) and the shift.
func appendMap(dst []byte, m *addrMap) []byte {
	if m == nil {
		return binary.AppendUvarint(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.at)))
	var prev int64
	for i, a := range m.at {
		dst = binary.AppendUvarint(dst, uint64(a-prev))
		dst = binary.AppendVarint(dst, m.shift[i])
		prev = a
	}
	return dst
}

// readMap reads an address map: at most maxMapEntries entries, positions
// strictly ascending below 2^32 and shifts of magnitude below 2^32.
func readMap(r io.ByteReader) (*addrMap, error) {
	n, err := readUvarint(r, maxMapEntries, "address map count")
	if err != nil || n == 0 {
		return nil, err
	}
	m := &addrMap{at: make([]int64, 0, n), shift: make([]int64, 0, n)}
	var prev int64
	for i := range n {
		gap, err := readUvarint(r, 1<<32-1-uint64(prev), "address map gap")
		if err != nil {
			return nil, err
		}
		if gap == 0 && i > 0 {
			return nil, fmt.Errorf("%w: address map positions not ascending", ErrCorrupt)
		}
		s, err := binary.ReadVarint(r)
		if err != nil || s <= -1<<32 || s >= 1<<32 {
			return nil, fmt.Errorf("%w: address map shift", ErrCorrupt)
		}
		prev += int64(gap)
		m.at, m.shift = append(m.at, prev), append(m.shift, s)
	}
	return m, nil
}

// apply moves the references in buf, the base's bytes at off already
// converted forward by x (granule-aligned as for x.convert), by the map:
// in archRVC regions, the absolute address of each AUIPC pair and the
// target of each JAL (kept relative, from the moved JAL's position, when
// it still fits).
func (m *addrMap) apply(x xform, buf []byte, off int64) {
	if m == nil {
		return
	}
	end := off + int64(len(buf))
	i := sort.Search(len(x), func(i int) bool { return x[i].end > off })
	for ; i < len(x) && x[i].start < end; i++ {
		r := x[i]
		if r.arch != archRVC && (r.arch != archARM64 || !m.arm64) {
			continue
		}
		lo, hi := max(r.start, off), min(r.end, end)
		for g := lo &^ (granule - 1); g < hi; g += granule {
			a, b := max(g, lo), min(g+granule, hi)
			if r.arch == archARM64 {
				m.spanARM64(buf[a-off:b-off], a)
			} else {
				m.span(buf[a-off:b-off], a)
			}
		}
	}
}

// span walks one span as convRISCV does for archRVC (it takes the same
// steps: only opcode and register bits decide them).
func (m *addrMap) span(b []byte, pos int64) {
	for i := int(pos & 1); i+4 <= len(b); i += 4 {
		w := le.Uint32(b[i:])
		if w&3 != 3 {
			i -= 2
			continue
		}
		pc := pos + int64(i)
		switch {
		case w&0x7F == 0x6F: // JAL
			off := int64(int32((w>>31)<<20|(w>>12&0xFF)<<12|(w>>20&1)<<11|(w>>21&0x3FF)<<1) << 11 >> 11)
			d := m.move(pc+off) - m.move(pc)
			if d < -1<<20 || d >= 1<<20 || d&1 != 0 {
				continue
			}
			o := uint32(d)
			le.PutUint32(b[i:], w&0xFFF|(o>>20&1)<<31|(o>>1&0x3FF)<<21|(o>>11&1)<<20|(o>>12&0xFF)<<12)
		case w&0x7F == 0x17 && i+8 <= len(b): // AUIPC rd
			rd := w >> 7 & 0x1F
			w2 := le.Uint32(b[i+4:])
			op, f3 := w2&0x7F, w2>>12&7
			if rd == 0 || w2>>15&0x1F != rd || !(op == 0x03 || (op == 0x13 || op == 0x67) && f3 == 0) {
				continue
			}
			a := uint32(m.move(int64(w&0xFFFFF000 | w2>>20)))
			le.PutUint32(b[i:], w&0xFFF|a&0xFFFFF000)
			le.PutUint32(b[i+4:], w2&0xFFFFF|a<<20)
			i += 4
		}
	}
}

// spanARM64 moves, in one span of converted arm64 code (4-aligned words),
// the absolute target of each BL and the address of each ADRP followed by
// an ADD (immediate, 64-bit) or a load or store (unsigned offset) on the
// ADRP's register, when the moved value still fits the instruction.
func (m *addrMap) spanARM64(b []byte, pos int64) {
	for i := align4(pos); i+4 <= len(b); i += 4 {
		w := le.Uint32(b[i:])
		switch {
		case w&0xFC000000 == 0x94000000: // BL: imm26 = absolute target / 4
			a := int64(w&0x03FFFFFF) << 2
			if d := m.move(a) - a; d&3 == 0 {
				le.PutUint32(b[i:], w&0xFC000000|uint32((a+d)>>2)&0x03FFFFFF)
			}
		case w&0x9F000000 == 0x90000000 && i+8 <= len(b): // ADRP: absolute page
			w2 := le.Uint32(b[i+4:])
			if w2>>5&0x1F != w&0x1F {
				continue
			}
			var lo, scale uint32
			switch {
			case w2&0xFFC00000 == 0x91000000: // ADD Xd, Xn, #imm12
				lo = w2 >> 10 & 0xFFF
			case w2&0x3BC00000 == 0x39000000 || w2&0x3BC00000 == 0x39400000: // STR/LDR (unsigned offset)
				scale = w2 >> 30
				lo = (w2 >> 10 & 0xFFF) << scale
				if lo > 0xFFF {
					continue
				}
			default:
				continue
			}
			a := int64(w>>5&0x7FFFF|(w>>29&3)<<19)<<12 | int64(lo)
			n := m.move(a)
			if n < 0 || n&(1<<scale-1) != 0 {
				continue
			}
			page, nlo := uint32(n>>12)&0x1FFFFF, uint32(n&0xFFF)
			le.PutUint32(b[i:], w&0x9F00001F|(page&0x7FFFF)<<5|(page>>19)<<29)
			le.PutUint32(b[i+4:], w2&^(0xFFF<<10)|(nlo>>scale)<<10)
			i += 4
		}
	}
}

// Encoder side.

// mapGranule is the finest unit of an encoder's map, in bytes of the base.
const mapGranule = 16

// moveSpan is a part of the base that a result span was copied from:
// positions [lo, hi) moved by shift.
type moveSpan struct{ lo, hi, shift int64 }

// hasArch reports whether x has a region of architecture a.
func (x xform) hasArch(a byte) bool {
	for _, r := range x {
		if r.arch == a {
			return true
		}
	}
	return false
}

// scanMoves matches every block of the target against the plain base
// (the encoder's plain jobs, without fields or compression) and returns
// the base spans its copies of at least 16 bytes come from.
func scanMoves(ix *index, b []byte, target io.ReaderAt, tlen, blockSize, workers int) ([]moveSpan, error) {
	nblk := (tlen + blockSize - 1) / blockSize
	res := make([][]moveSpan, nblk)
	errs := make([]error, workers)
	next := make(chan int, nblk)
	for k := range nblk {
		next <- k
	}
	close(next)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			defer ix.guard.watch()()
			defer func() { ix.guard.caught(recover()) }()
			tb := make([]byte, min(blockSize, tlen))
			s := &scanner{ix: ix, b: b}
			for k := range next {
				lo := k * blockSize
				hi := min(lo+blockSize, tlen)
				if m, err := target.ReadAt(tb[:hi-lo], int64(lo)); m < hi-lo {
					if err == nil || err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					errs[w] = err
					continue
				}
				s.t, s.t0 = tb[:hi-lo], lo
				s.scan(lo, hi)
				at := lo
				for _, o := range s.ops {
					if o.diffLen >= 16 {
						res[k] = append(res[k], moveSpan{int64(o.pos), int64(o.pos + o.diffLen), int64(at - o.pos)})
					}
					at += o.diffLen + o.extraLen
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	if err := ix.guard.Err(); err != nil {
		return nil, err
	}
	var all []moveSpan
	for w := range workers {
		if errs[w] != nil {
			return nil, errs[w]
		}
	}
	for _, r := range res {
		all = append(all, r...)
	}
	return all, nil
}

// buildMap makes an address map from the spans the result's copies came
// from (the longest span covering a base position decides its shift) and,
// where no copy says, from the sections of the same name in both ELF
// files (.bss and other sections with no bytes in the file included).
// It returns nil if the map would move nothing.
func buildMap(moves, sections []moveSpan, baseLen int64) *addrMap {
	n := baseLen
	for _, s := range sections {
		n = max(n, s.hi)
	}
	if n > 1<<32 {
		return nil
	}
	sort.SliceStable(moves, func(i, j int) bool { return moves[i].hi-moves[i].lo > moves[j].hi-moves[j].lo })
	for g := int64(mapGranule); ; g *= 2 {
		const unset = -1 << 31
		sh := make([]int32, n/g+1)
		for i := range sh {
			sh[i] = unset
		}
		paint := func(spans []moveSpan, inner bool) {
			for _, v := range spans {
				if v.shift <= unset || v.shift >= 1<<31 {
					continue
				}
				lo, hi := (v.lo+g-1)/g, v.hi/g
				if !inner {
					lo, hi = v.lo/g, (v.hi+g-1)/g
				}
				for c := lo; c < min(hi, int64(len(sh))); c++ {
					if sh[c] == unset {
						sh[c] = int32(v.shift)
					}
				}
			}
		}
		paint(moves, true)
		paint(sections, false)
		m := &addrMap{}
		cur := int32(0)
		for c, s := range sh {
			if s != unset && s != cur {
				cur = s
				m.at, m.shift = append(m.at, int64(c)*g), append(m.shift, int64(s))
			}
		}
		if len(m.at) == 0 {
			return nil
		}
		if len(m.at) <= maxMapEntries {
			return m
		}
	}
}

// elfMoves returns, for the allocated sections of the ELF files at offset
// 0 of both images that have the same name, the base's section (as image
// positions: addresses less the difference between address and offset of
// the first allocated section with bytes) and how far it moved.
func elfMoves(b []byte, target io.ReaderAt, tlen int64) []moveSpan {
	type sec struct{ pos, size int64 }
	read := func(r io.ReaderAt, size int64) map[string]sec {
		var f [64]byte
		if m, _ := r.ReadAt(f[:], 0); m < len(f) || string(f[:4]) != "\x7fELF" || f[4] != 2 || f[5] != 1 {
			return nil
		}
		shoff, shentsize, shnum, strndx := int64(le.Uint64(f[0x28:])), int64(le.Uint16(f[0x3A:])), int64(le.Uint16(f[0x3C:])), int64(le.Uint16(f[0x3E:]))
		if shentsize < 64 || shoff < 0 || shoff >= size || shnum*shentsize > size-shoff || strndx >= shnum {
			return nil
		}
		sh := make([]byte, shnum*shentsize)
		if m, _ := r.ReadAt(sh, shoff); m < len(sh) {
			return nil
		}
		s := sh[strndx*shentsize:]
		stro, stn := int64(le.Uint64(s[0x18:])), int64(le.Uint64(s[0x20:]))
		if stro < 0 || stro >= size || stn > size-stro || stn > 1<<20 {
			return nil
		}
		strtab := make([]byte, stn)
		if m, _ := r.ReadAt(strtab, stro); m < len(strtab) {
			return nil
		}
		out := map[string]sec{}
		bias, haveBias := int64(0), false
		for k := range shnum {
			s := sh[k*shentsize:]
			name, typ, flags := int64(le.Uint32(s)), le.Uint32(s[4:]), le.Uint64(s[8:])
			addr, off, n := int64(le.Uint64(s[0x10:])), int64(le.Uint64(s[0x18:])), int64(le.Uint64(s[0x20:]))
			const alloc, progbits = 2, 1
			if flags&alloc == 0 || name >= stn || addr < 0 || n <= 0 || n > 1<<32 {
				continue
			}
			if !haveBias && typ == progbits {
				bias, haveBias = addr-off, true
			}
			nm := strtab[name:]
			for i, c := range nm {
				if c == 0 {
					nm = nm[:i]
					break
				}
			}
			out[string(nm)] = sec{addr, n}
		}
		for k, s := range out {
			s.pos -= bias
			out[k] = s
		}
		return out
	}
	bs, ts := read(bytesReaderAt(b), int64(len(b))), read(target, tlen)
	var mv []moveSpan
	for name, s := range bs {
		if t, ok := ts[name]; ok && s.pos >= 0 {
			mv = append(mv, moveSpan{s.pos, s.pos + s.size, t.pos - s.pos})
		}
	}
	sort.Slice(mv, func(i, j int) bool { return mv[i].lo < mv[j].lo })
	return mv
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
