package delta

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Executable transforms (format versions 3 to 5, FORMAT.md "Transforms";
// the table transforms of version 5 are in xtable.go).
//
// A relative branch or address operand changes wherever the code around it
// moved, although its target did not: every call from a shifted function is
// a patched field. Converting such operands from relative (target - pc) to
// absolute (target) before matching makes them equal again in base and
// result; the device converts them back as it writes. The conversion is a
// bijection on the bytes of a region, computed granule by granule so that a
// decoder can redo it on any span it reads.

// Architectures of a transform region. Values are part of the format.
const (
	archX86   = 1 // x86-64: CALL rel32 (E8)
	archARM64 = 2 // arm64: BL imm26, ADRP imm21
	archARM   = 3 // 32-bit ARM state: BL imm24 (cond AL)
	archThumb = 4 // Thumb-2: BL imm24 (halfword pair)
	archRISCV = 5 // riscv64: JAL with a link register, AUIPC + ADDI/JALR/load pairs
	archRVC   = 6 // riscv64 with compressed (16-bit) instructions; version 4
	numArch   = 7
)

// archsOf is, per format version, the number of architecture values a
// delta may use (1..n-1): version 4 added archRVC, version 5 the table
// kinds (xtable.go).
func archsOf(version uint16) byte {
	switch {
	case version < 4:
		return archRVC
	case version < 5:
		return numArch
	}
	return numKinds
}

// granule is the span every conversion stays inside: an instruction (or
// pair) is converted only if it lies within one granule-aligned span of the
// image and within its region, so any span is converted alone from the
// granule-aligned bytes around it.
const granule = 256

// maxRegions caps the regions of one image, so a hostile delta cannot make
// the decoder allocate without bound (24 bytes each).
const maxRegions = 1 << 16

// region is [start, end) of an image holding code of one architecture.
type region struct {
	arch       byte
	start, end int64
}

// xform is the sorted, disjoint regions of one image; nil converts nothing.
type xform []region

// convert converts buf, the image bytes at [off, off+len(buf)), forward
// (relative to absolute) or back. buf must cover whole granules: off is
// granule-aligned and len(buf) a multiple of granule unless buf ends the
// image.
func (x xform) convert(buf []byte, off int64, fwd bool) {
	end := off + int64(len(buf))
	i := sort.Search(len(x), func(i int) bool { return x[i].end > off })
	for ; i < len(x) && x[i].start < end; i++ {
		r := x[i]
		lo, hi := max(r.start, off), min(r.end, end)
		for g := lo &^ (granule - 1); g < hi; g += granule {
			a, b := max(g, lo), min(g+granule, hi)
			convertSpan(r.arch, buf[a-off:b-off], a, fwd)
		}
	}
}

// overlaps reports whether any region meets [lo, hi).
func (x xform) overlaps(lo, hi int64) bool {
	i := sort.Search(len(x), func(i int) bool { return x[i].end > lo })
	return i < len(x) && x[i].start < hi
}

func convertSpan(arch byte, b []byte, pos int64, fwd bool) {
	switch arch {
	case archX86:
		convX86(b, pos, fwd)
	case archARM64:
		convARM64(b, pos, fwd)
	case archARM:
		convARM(b, pos, fwd)
	case archThumb:
		convThumb(b, pos, fwd)
	case archRISCV, archRVC:
		convRISCV(b, pos, fwd, arch == archRVC)
	}
}

var le = binary.LittleEndian

// align4 is the first index of b at a 4-aligned image position.
func align4(pos int64) int { return int(-pos & 3) }

// convX86 converts CALL rel32 whose displacement is within ±16 MiB; the
// set of such 32-bit values is closed under the conversion (arithmetic
// modulo 2^25, sign-extended), so the decoder finds the same calls.
func convX86(b []byte, pos int64, fwd bool) {
	for i := 0; i+5 <= len(b); {
		if b[i] != 0xE8 {
			i++
			continue
		}
		// Whether converted or not, the four bytes after an E8 are
		// skipped: only this E8's conversion ever changes them, so the
		// decoder decides as the encoder did.
		if v := le.Uint32(b[i+1:]); v+1<<24 < 1<<25 {
			pc := uint32(pos) + uint32(i) + 5
			if !fwd {
				pc = -pc
			}
			le.PutUint32(b[i+1:], uint32(int32((v+pc)<<7)>>7))
		}
		i += 5
	}
}

func convARM64(b []byte, pos int64, fwd bool) {
	for i := align4(pos); i+4 <= len(b); i += 4 {
		w := le.Uint32(b[i:])
		pc := uint32(pos+int64(i)) >> 2
		switch {
		case w&0xFC000000 == 0x94000000: // BL
			if !fwd {
				pc = -pc
			}
			w = w&0xFC000000 | (w+pc)&0x03FFFFFF
		case w&0x9F000000 == 0x90000000: // ADRP: page = immhi:immlo
			page := uint32(pos+int64(i)) >> 12
			if fwd {
				imm := w>>29&3 | (w>>5&0x7FFFF)<<2
				a := (imm + page) & 0x1FFFFF
				// Low bits of the absolute page first, so that a moved
				// target is a small arithmetic difference of the word.
				w = w&0x9F00001F | (a&0x7FFFF)<<5 | (a>>19)<<29
			} else {
				a := w>>5&0x7FFFF | (w>>29&3)<<19
				imm := (a - page) & 0x1FFFFF
				w = w&0x9F00001F | (imm&3)<<29 | (imm>>2)<<5
			}
		default:
			continue
		}
		le.PutUint32(b[i:], w)
	}
}

func convARM(b []byte, pos int64, fwd bool) {
	for i := align4(pos); i+4 <= len(b); i += 4 {
		w := le.Uint32(b[i:])
		if w>>24 != 0xEB {
			continue
		}
		pc := uint32(pos+int64(i)) >> 2
		if !fwd {
			pc = -pc
		}
		le.PutUint32(b[i:], 0xEB000000|(w+pc)&0xFFFFFF)
	}
}

// convThumb converts BL (F000 D000 pattern) at halfword positions. The
// 24-bit halfword offset S:I1:I2:imm10:imm11 is stored absolute, low bits
// in the second halfword.
func convThumb(b []byte, pos int64, fwd bool) {
	for i := int(pos & 1); i+4 <= len(b); {
		h1, h2 := uint32(le.Uint16(b[i:])), uint32(le.Uint16(b[i+2:]))
		if h1&0xF800 != 0xF000 || h2&0xD000 != 0xD000 {
			i += 2
			continue
		}
		pc := uint32(pos+int64(i)) >> 1
		var v uint32
		if fwd {
			s := h1 >> 10 & 1
			i1, i2 := ^(h2>>13^s)&1, ^(h2>>11^s)&1
			v = s<<23 | i1<<22 | i2<<21 | (h1&0x3FF)<<11 | h2&0x7FF
			v = (v + pc) & 0xFFFFFF
			h1 = 0xF000 | v>>13
			h2 = h2&0xD000 | (v>>12&1)<<13 | (v>>11&1)<<11 | v&0x7FF
		} else {
			v = (h1&0x7FF)<<13 | (h2>>13&1)<<12 | (h2>>11&1)<<11 | h2&0x7FF
			v = (v - pc) & 0xFFFFFF
			s := v >> 23
			j1, j2 := ^(v>>22^s)&1, ^(v>>21^s)&1
			h1 = 0xF000 | s<<10 | v>>11&0x3FF
			h2 = h2&0xD000 | j1<<13 | j2<<11 | v&0x7FF
		}
		le.PutUint16(b[i:], uint16(h1))
		le.PutUint16(b[i+2:], uint16(h2))
		i += 4
	}
}

// convRISCV converts, at 4-byte positions, JAL with rd != x0 (calls) and
// AUIPC rd followed by an I-type use of rd (ADDI, JALR, loads): the pair's
// 32-bit offset becomes an absolute address, upper 20 bits in the AUIPC,
// lower 12 in the partner. Only opcode and register fields, which the
// conversion leaves alone, decide what is converted. With rvc (archRVC),
// it walks instructions from the span's first even position instead: a
// halfword whose low two bits are not 11 is a 16-bit instruction, skipped.
// The walk reads only bytes that no conversion has changed yet, so both
// directions take the same steps. archRVC leaves JAL alone: it reaches
// only ±1 MiB, so caller and callee mostly move together and the relative
// form is the one that stays equal (converting JAL made the delta of
// cosign for riscv64 11 % larger).
func convRISCV(b []byte, pos int64, fwd, rvc bool) {
	i := align4(pos)
	if rvc {
		i = int(pos & 1)
	}
	for ; i+4 <= len(b); i += 4 {
		w := le.Uint32(b[i:])
		if rvc && w&3 != 3 {
			i -= 2 // a 16-bit instruction: the next one starts 2 bytes on
			continue
		}
		pc := uint32(pos + int64(i))
		switch {
		case !rvc && w&0x7F == 0x6F && w>>7&0x1F != 0: // JAL rd, imm21
			if fwd {
				off := (w>>31)<<20 | (w>>12&0xFF)<<12 | (w>>20&1)<<11 | (w>>21&0x3FF)<<1
				a := (off + pc) & 0x1FFFFF
				w = w&0xFFF | (a>>1)<<12
			} else {
				off := ((w>>12)<<1 - pc) & 0x1FFFFF
				w = w&0xFFF | (off>>20)<<31 | (off>>1&0x3FF)<<21 | (off>>11&1)<<20 | (off>>12&0xFF)<<12
			}
			le.PutUint32(b[i:], w)
		case w&0x7F == 0x17 && i+8 <= len(b): // AUIPC rd
			rd := w >> 7 & 0x1F
			w2 := le.Uint32(b[i+4:])
			op, f3 := w2&0x7F, w2>>12&7
			if rd == 0 || w2>>15&0x1F != rd || !(op == 0x03 || (op == 0x13 || op == 0x67) && f3 == 0) {
				continue
			}
			if fwd {
				a := w&0xFFFFF000 + uint32(int32(w2)>>20) + pc
				w = w&0xFFF | a&0xFFFFF000
				w2 = w2&0xFFFFF | a<<20
			} else {
				off := w&0xFFFFF000 | w2>>20 - pc
				lo := uint32(int32(off<<20) >> 20)
				w = w&0xFFF | (off-lo)&0xFFFFF000
				w2 = w2&0xFFFFF | lo<<20
			}
			le.PutUint32(b[i:], w)
			le.PutUint32(b[i+4:], w2)
			i += 4
		}
	}
}

// appendXform writes x (FORMAT.md "Transforms"): count, then per region
// arch, gap from the previous region's end, length.
func appendXform(dst []byte, x xform) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(x)))
	var prev int64
	for _, r := range x {
		dst = append(dst, r.arch)
		dst = binary.AppendUvarint(dst, uint64(r.start-prev))
		dst = binary.AppendUvarint(dst, uint64(r.end-r.start))
		prev = r.end
	}
	return dst
}

// readXform reads a region list for an image of size bytes, in a delta of
// the given format version.
func readXform(r io.ByteReader, size int64, version uint16) (xform, error) {
	n, err := readUvarint(r, maxRegions, "transform region count")
	if err != nil {
		return nil, err
	}
	var x xform
	var prev, tabBytes int64
	ntab := 0
	for range n {
		a, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: transform region: %v", ErrCorrupt, err)
		}
		if a == 0 || a >= archsOf(version) {
			return nil, fmt.Errorf("%w: unknown transform architecture %d", ErrCorrupt, a)
		}
		gap, err := readUvarint(r, uint64(size-prev), "transform region gap")
		if err != nil {
			return nil, err
		}
		start := prev + int64(gap)
		l, err := readUvarint(r, uint64(size-start), "transform region length")
		if err != nil {
			return nil, err
		}
		if l == 0 {
			return nil, fmt.Errorf("%w: empty transform region", ErrCorrupt)
		}
		if isTable(a) {
			ntab++
			tabBytes += int64(l)
			if start&3 != 0 || ntab > maxTableRegions || tabBytes > maxTableBytes {
				return nil, fmt.Errorf("%w: table region at %d (%d regions, %d bytes) outside the limits", ErrCorrupt, start, ntab, tabBytes)
			}
		}
		x = append(x, region{a, start, start + int64(l)})
		prev = start + int64(l)
	}
	return x, nil
}

// xformReader reads an image converted forward by its regions.
type xformReader struct {
	r    io.ReaderAt
	size int64
	x    xform
	tab  *tableCursor // the table regions of x, nil if none
	m    *addrMap     // version 6: the address map, nil if none
	buf  []byte
}

// xformChunk is the most xformReader converts at once.
const xformChunk = 64 << 10

func (x *xformReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		lo := off + int64(done)
		n := min(len(p)-done, xformChunk)
		hi := lo + int64(n)
		if !x.x.overlaps(lo, hi) {
			m, err := x.r.ReadAt(p[done:done+n], lo)
			done += m
			if m < n {
				return done, err
			}
			continue
		}
		glo, ghi := lo&^(granule-1), min((hi+granule-1)&^(granule-1), x.size)
		if x.buf == nil {
			x.buf = make([]byte, xformChunk+2*granule)
		}
		buf := x.buf[:ghi-glo]
		if m, err := x.r.ReadAt(buf, glo); m < len(buf) {
			return done, err
		}
		x.x.convert(buf, glo, true)
		x.m.apply(x.x, buf, glo)
		if err := x.tab.convert(buf, glo); err != nil {
			return done, err
		}
		done += copy(p[done:done+n], buf[lo-glo:])
	}
	return done, nil
}

// ELF detection (encoder side).

// elfRegions finds the executable sections of the ELF files in img: one
// starting at offset 0, or any starting at a 4 KiB boundary (files in a
// filesystem image). Little-endian x86-64, arm64, 32-bit ARM and riscv64
// files are recognised; a section that does not fit in img is ignored.
func elfRegions(img io.ReaderAt, size int64) xform {
	var x xform
	var hdr [64]byte
	for off := int64(0); off+64 <= size && len(x) < maxRegions/2; off += 4096 {
		if n, _ := img.ReadAt(hdr[:], off); n < len(hdr) || string(hdr[:4]) != "\x7fELF" {
			continue
		}
		x = append(x, elfFile(io.NewSectionReader(img, off, size-off), hdr[:], off, size-off)...)
	}
	sort.Slice(x, func(i, j int) bool { return x[i].start < x[j].start })
	// Merge touching regions of one architecture (code only: a table's
	// walk starts at its region's start); drop overlaps.
	var out xform
	for _, r := range x {
		if n := len(out); n > 0 && r.start < out[n-1].end {
			continue
		}
		if n := len(out); n > 0 && out[n-1].arch == r.arch && !isTable(r.arch) && r.start-out[n-1].end < granule {
			out[n-1].end = r.end
			continue
		}
		out = append(out, r)
	}
	if len(out) > maxRegions {
		out = out[:maxRegions]
	}
	// Keep the table regions within the decoder's limits.
	ntab, tabBytes := 0, int64(0)
	kept := out[:0]
	for _, r := range out {
		if isTable(r.arch) {
			if ntab+1 > maxTableRegions || tabBytes+r.end-r.start > maxTableBytes {
				continue
			}
			ntab, tabBytes = ntab+1, tabBytes+r.end-r.start
		}
		kept = append(kept, r)
	}
	return kept
}

// elfFile returns the executable sections of the ELF file f (size bytes,
// starting with hdr) at offset base of the image.
func elfFile(r io.ReaderAt, f []byte, base, size int64) xform {
	if f[5] != 1 { // little-endian only
		return nil
	}
	is64 := f[4] == 2
	mach := le.Uint16(f[18:])
	var shoff uint64
	var shentsize, shnum int
	if is64 {
		shoff, shentsize, shnum = le.Uint64(f[0x28:]), int(le.Uint16(f[0x3A:])), int(le.Uint16(f[0x3C:]))
	} else {
		shoff, shentsize, shnum = uint64(le.Uint32(f[0x20:])), int(le.Uint16(f[0x2E:])), int(le.Uint16(f[0x30:]))
	}
	var arch byte
	switch {
	case mach == 62 && is64:
		arch = archX86
	case mach == 183 && is64:
		arch = archARM64
	case mach == 40 && !is64:
		arch = archARM // or Thumb: decided below by counting
	case mach == 243 && is64:
		// Compressed instructions are the norm (Debian's riscv64, Go
		// since 1.26), and the instruction walk also converts code
		// without them.
		arch = archRVC
	default:
		return nil
	}
	minEnt := 40
	if is64 {
		minEnt = 64
	}
	if shentsize < minEnt || shoff >= uint64(size) || uint64(shnum)*uint64(shentsize) > uint64(size)-shoff {
		return nil
	}
	sh := make([]byte, shnum*shentsize)
	if n, _ := r.ReadAt(sh, int64(shoff)); n < len(sh) {
		return nil
	}
	var x xform
	for k := range shnum {
		s := sh[k*shentsize:]
		var flags, o, n uint64
		if is64 {
			flags, o, n = le.Uint64(s[8:]), le.Uint64(s[0x18:]), le.Uint64(s[0x20:])
		} else {
			flags, o, n = uint64(le.Uint32(s[8:])), uint64(le.Uint32(s[0x10:])), uint64(le.Uint32(s[0x14:]))
		}
		const progbits, execinstr = 1, 4
		if le.Uint32(s[4:]) != progbits || flags&execinstr == 0 || n == 0 || o >= uint64(size) || n > uint64(size)-o {
			continue
		}
		a := arch
		if arch == archARM && thumbLikely(io.NewSectionReader(r, int64(o), int64(n))) {
			a = archThumb
		}
		x = append(x, region{a, base + int64(o), base + int64(o+n)})
	}
	return append(x, elfTables(r, f, sh, shentsize, base, size)...)
}

// thumbLikely reports whether 32-bit ARM code has more Thumb-2 BL patterns
// than ARM-state BL words (Debian's armhf is Thumb-2, Go's GOARM=7 is ARM).
func thumbLikely(r *io.SectionReader) bool {
	code := make([]byte, min(r.Size(), 1<<20)) // a sample is enough
	if n, _ := r.ReadAt(code, 0); n < len(code) {
		return false
	}
	arm, thumb := 0, 0
	for i := 0; i+4 <= len(code); i += 2 {
		if i%4 == 0 && code[i+3] == 0xEB {
			arm++
		}
		if le.Uint16(code[i:])&0xF800 == 0xF000 && le.Uint16(code[i+2:])&0xD000 == 0xD000 {
			thumb++
		}
	}
	return thumb > arm
}
