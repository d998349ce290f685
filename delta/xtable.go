package delta

import (
	"fmt"
	"io"
	"sort"
)

// Data-table transforms (format version 5, FORMAT.md "Table transforms").
//
// Tables of offsets sorted by address (Go's functab and _func records,
// ELF relocations, .eh_frame_hdr's search table) change in every entry
// after a point where code or data grew, although each entry's own
// function or target did not change. Converting such a word to its
// difference from the previous entry's makes it equal again in base and
// result. Unlike the code transforms, the conversion depends on the words
// before it in the table, so it is a walk: a decoder converts its result
// back sequentially, as it writes it, and converts a span of its base
// from a checkpoint of the walk's state.

// Table kinds, in the same value space as the code architectures.
const (
	tabPairs  = 7  // pairs of 32-bit words, each the difference from the pair before (Go functab, .eh_frame_hdr table)
	tabFunc4  = 8  // Go _func records aligned to 4 bytes (32-bit targets)
	tabFunc8  = 9  // Go _func records aligned to 8 bytes
	tabRela64 = 10 // ELF64 Rela entries: r_offset and r_addend as differences
	numKinds  = 11
)

func isTable(kind byte) bool { return kind >= tabPairs }

// code returns the code regions of x.
func (x xform) code() xform {
	var c xform
	for _, r := range x {
		if !isTable(r.arch) {
			c = append(c, r)
		}
	}
	return c
}

// Limits on a delta's table regions, so that a hostile delta cannot make the
// decoder allocate without bound: every table region of the base gets a
// checkpoint per tableCheckpoint bytes.
const (
	maxTableRegions = 1 << 14
	maxTableBytes   = 1 << 30
	tableCheckpoint = 64 << 10
)

// funcWords is the fixed part of a Go _func record, in 32-bit words
// (entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata,
// cuOffset, startLine, funcID/flag/pad/nfuncdata); npcdata pcdata offsets
// and nfuncdata funcdata offsets follow.
const funcWords = 11

// maxFuncdata is how many funcdata slots are converted (Go uses 8).
const maxFuncdata = 8

// walker is the state of a table walk: everything the conversion of the
// next word depends on. It is a value; a copy is a checkpoint.
type walker struct {
	kind  byte
	start int64 // region start
	pos   int64 // image position of the next word
	j     int64 // word index in the current pair, entry or record
	rlen  int64 // _func: record length in words, once known (0 before)
	npc   int64 // _func: npcdata of the current record
	pad   bool  // _func: the next word is alignment padding
	prev  [6]uint32
	fd    [maxFuncdata]uint32
}

func newWalker(r region) walker { return walker{kind: r.arch, start: r.start, pos: r.start} }

// Modes of walker.word.
const (
	walkFwd     = iota // original to converted
	walkBack           // converted to original
	walkObserve        // original, unchanged: only advance the state
)

// delta converts v by its difference from p.
func delta(v, p uint32, mode int) uint32 {
	switch mode {
	case walkFwd:
		return v - p
	case walkBack:
		return v + p
	}
	return v
}

// sentinel converts v by its difference from p, except that the sentinel
// s stays s (and the one value whose difference is s takes s-p's place),
// which keeps the mapping a bijection.
func sentinel(v, p, s uint32, mode int) uint32 {
	switch mode {
	case walkFwd:
		switch {
		case v == s:
			return s
		case v-p == s:
			return s - p
		}
		return v - p
	case walkBack:
		switch {
		case v == s:
			return s
		case v == s-p:
			return s + p
		}
		return v + p
	}
	return v
}

// word converts the word v at w.pos in the given mode, returns the result
// and advances the walk. The state is updated with the original word.
func (w *walker) word(v uint32, mode int) uint32 {
	var c, orig uint32
	switch w.kind {
	case tabPairs:
		k := w.j & 1
		c = delta(v, w.prev[k], mode)
		orig = v
		if mode == walkBack {
			orig = c
		}
		w.prev[k] = orig
		w.j++
	case tabRela64:
		k := w.j % 6
		c = v
		if k != 2 && k != 3 { // r_info stays
			c = delta(v, w.prev[k], mode)
			orig = v
			if mode == walkBack {
				orig = c
			}
			w.prev[k] = orig
		}
		w.j++
	case tabFunc4, tabFunc8:
		c = w.funcWord(v, mode)
	default:
		c = v
	}
	w.pos += 4
	return c
}

// funcWord converts one word of a Go _func table.
func (w *walker) funcWord(v uint32, mode int) uint32 {
	if w.pad {
		w.pad = false
		return v
	}
	orig := func(c uint32) uint32 {
		if mode == walkBack {
			return c
		}
		return v
	}
	c := v
	switch j := w.j; {
	case j == 0 || j == 1: // entryOff, nameOff
		c = delta(v, w.prev[j], mode)
		w.prev[j] = orig(c)
	case j >= 4 && j <= 6 || j >= funcWords && j < funcWords+w.npc: // pctab offsets
		c = sentinel(v, w.prev[2], 0, mode)
		if o := orig(c); o != 0 {
			w.prev[2] = o
		}
	case j == 7:
		w.npc = int64(v)
	case j == 10:
		w.rlen = funcWords + w.npc + int64(v>>24)
	case j >= funcWords+w.npc && j-funcWords-w.npc < maxFuncdata: // funcdata
		k := j - funcWords - w.npc
		c = sentinel(v, w.fd[k], ^uint32(0), mode)
		if o := orig(c); o != ^uint32(0) {
			w.fd[k] = o
		}
	}
	w.j++
	if w.j >= funcWords && w.j == w.rlen {
		w.j, w.rlen, w.npc = 0, 0, 0
		w.pad = w.kind == tabFunc8 && (w.pos+4-w.start)&7 != 0
	}
	return c
}

// walk converts the whole words of buf, the image bytes at off, that lie
// in [w.pos, end) and after w.pos, in order; bytes before w.pos are left
// alone. w.pos must be at or after off.
func (w *walker) walk(buf []byte, off, end int64, mode int) {
	end = min(end, off+int64(len(buf)))
	for w.pos+4 <= end {
		i := w.pos - off
		v := w.word(le.Uint32(buf[i:]), mode)
		if mode != walkObserve {
			le.PutUint32(buf[i:], v)
		}
	}
}

// tables converts spans of one image's table regions forward, from
// checkpoints of each region's walk: the decoder's base, the encoder's
// target. The checkpoints are shared; a tableCursor is one reader's.
type tables struct {
	x   xform       // the table regions only
	cps [][]walker  // per region, the walk's state every tableCheckpoint bytes
	r   io.ReaderAt // the original image
}

// newTables walks the table regions of x over r once and keeps checkpoints.
func newTables(r io.ReaderAt, x xform) (*tables, error) {
	t := &tables{r: r}
	for _, g := range x {
		if isTable(g.arch) {
			t.x = append(t.x, g)
		}
	}
	if len(t.x) == 0 {
		return nil, nil
	}
	buf := make([]byte, tableCheckpoint)
	for _, g := range t.x {
		w := newWalker(g)
		var cps []walker
		for w.pos+4 <= g.end {
			cps = append(cps, w)
			n := min(int64(len(buf)), (g.end-w.pos)&^3)
			if m, err := r.ReadAt(buf[:n], w.pos); int64(m) < n {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, fmt.Errorf("delta: read table at %d: %w", w.pos, err)
			}
			w.walk(buf[:n], w.pos, g.end, walkObserve)
		}
		t.cps = append(t.cps, cps)
	}
	return t, nil
}

// tableCursor converts spans for one reader; it remembers where the last
// conversion ended, so that spans read in order cost no extra reads.
type tableCursor struct {
	t    *tables
	last walker
	reg  int // region of last, -1 if none
	buf  []byte
}

func (t *tables) cursor() *tableCursor {
	if t == nil {
		return nil
	}
	return &tableCursor{t: t, reg: -1}
}

// convert converts forward the table words of buf, the image bytes at off
// (off 4-aligned relative to every region start it meets, as any
// granule-aligned off is).
func (c *tableCursor) convert(buf []byte, off int64) error {
	if c == nil {
		return nil
	}
	end := off + int64(len(buf))
	x := c.t.x
	i := sort.Search(len(x), func(i int) bool { return x[i].end > off })
	for ; i < len(x) && x[i].start < end; i++ {
		lo := max(off, x[i].start)
		if (lo-x[i].start)&3 != 0 {
			lo += 4 - (lo-x[i].start)&3
		}
		if lo+4 > min(end, x[i].end) {
			continue // no whole word of the region in buf
		}
		var w walker
		if c.reg == i && c.last.pos <= lo && lo-c.last.pos <= 2*tableCheckpoint {
			w = c.last
		} else {
			cps := c.t.cps[i]
			k := sort.Search(len(cps), func(k int) bool { return cps[k].pos > lo }) - 1
			if k < 0 {
				continue // lo is in the region's last partial word
			}
			w = cps[k]
		}
		// Advance to lo over the original bytes before it.
		for w.pos < lo {
			if c.buf == nil {
				c.buf = make([]byte, tableCheckpoint)
			}
			n := min(int64(len(c.buf)), lo-w.pos)
			if m, err := c.t.r.ReadAt(c.buf[:n], w.pos); int64(m) < n {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("delta: read table at %d: %w", w.pos, err)
			}
			w.walk(c.buf[:n], w.pos, lo, walkObserve)
		}
		w.walk(buf, off, x[i].end, walkFwd)
		c.last, c.reg = w, i
	}
	return nil
}

// convertTables converts the table regions of x in img (the whole image)
// forward, in place.
func convertTables(img []byte, x xform) {
	for _, g := range x {
		if isTable(g.arch) {
			w := newWalker(g)
			w.walk(img, 0, g.end, walkFwd)
		}
	}
}

// resultTables converts a result's table regions back as its blocks are
// written in order: the decoder's side.
type resultTables struct {
	x  xform
	w  []walker
	at int // first region not yet walked to its end
}

func newResultTables(x xform) *resultTables {
	rt := &resultTables{}
	for _, g := range x {
		if isTable(g.arch) {
			rt.x = append(rt.x, g)
			rt.w = append(rt.w, newWalker(g))
		}
	}
	if len(rt.x) == 0 {
		return nil
	}
	return rt
}

// overlaps reports whether [lo, hi) meets a table region.
func (rt *resultTables) overlaps(lo, hi int64) bool { return rt != nil && rt.x.overlaps(lo, hi) }

// block converts back (or, if !converted, only observes) buf, the result
// bytes at off; blocks come in order and cover the result.
func (rt *resultTables) block(buf []byte, off int64, converted bool) {
	mode := walkObserve
	if converted {
		mode = walkBack
	}
	end := off + int64(len(buf))
	for i := rt.at; i < len(rt.x) && rt.x[i].start < end; i++ {
		w := &rt.w[i]
		if w.pos < off {
			// Only a region's last partial word is never walked, and
			// the walk does not reach back before this block.
			if i == rt.at {
				rt.at++
			}
			continue
		}
		w.walk(buf, off, rt.x[i].end, mode)
	}
}

// ELF detection of tables (encoder side). A region is only a hint: a wrong
// one makes a delta larger, never wrong.

// elfTables returns the table regions of the ELF file f (header f, section
// headers sh) at offset base of the image: Go's functab and _func records
// (.gopclntab, Go 1.20 and later), ELF64 Rela sections and .eh_frame_hdr's
// search table.
func elfTables(r io.ReaderAt, f, sh []byte, shentsize int, base, size int64) xform {
	is64 := f[4] == 2
	shnum := len(sh) / shentsize
	strndx := int(le.Uint16(f[0x32:]))
	if is64 {
		strndx = int(le.Uint16(f[0x3E:]))
	}
	sec := func(k int) (name uint32, typ uint32, off, n, ent uint64) {
		s := sh[k*shentsize:]
		if is64 {
			return le.Uint32(s), le.Uint32(s[4:]), le.Uint64(s[0x18:]), le.Uint64(s[0x20:]), le.Uint64(s[0x38:])
		}
		return le.Uint32(s), le.Uint32(s[4:]), uint64(le.Uint32(s[0x10:])), uint64(le.Uint32(s[0x14:])), uint64(le.Uint32(s[0x24:]))
	}
	if strndx >= shnum {
		return nil
	}
	_, _, stro, stn, _ := sec(strndx)
	if stro >= uint64(size) || stn > uint64(size)-stro || stn > 1<<20 {
		return nil
	}
	strtab := make([]byte, stn)
	if m, _ := r.ReadAt(strtab, int64(stro)); m < len(strtab) {
		return nil
	}
	nameOf := func(o uint32) string {
		if uint64(o) >= stn {
			return ""
		}
		s := strtab[o:]
		for i, c := range s {
			if c == 0 {
				return string(s[:i])
			}
		}
		return ""
	}
	var x xform
	add := func(kind byte, lo, hi int64) {
		if lo < hi && lo&3 == 0 && hi <= size {
			x = append(x, region{kind, base + lo, base + hi})
		}
	}
	for k := range shnum {
		name, typ, o, n, ent := sec(k)
		if o >= uint64(size) || n > uint64(size)-o || n < 16 {
			continue
		}
		const shtRela = 4
		switch nm := nameOf(name); {
		case typ == shtRela && is64 && ent == 24:
			add(tabRela64, int64(o), int64(o+n/24*24))
		case nm == ".gopclntab":
			x = append(x, goTables(io.NewSectionReader(r, int64(o), int64(n)), base+int64(o))...)
		case nm == ".eh_frame_hdr":
			var h [12]byte
			if m, _ := r.ReadAt(h[:], int64(o)); m < len(h) {
				continue
			}
			// version 1, a 4-byte eh_frame_ptr, udata4 count, datarel sdata4 table
			if h[0] != 1 || h[1]&7 != 3 || h[2] != 0x03 || h[3] != 0x3b {
				continue
			}
			cnt := uint64(le.Uint32(h[8:]))
			if cnt*8 <= n-12 {
				add(tabPairs, int64(o)+12, int64(o+12+cnt*8))
			}
		}
	}
	return x
}

// goTables returns the functab and _func regions of a Go pclntab (Go 1.20
// and later: magic 0xFFFFFFF1) read from r, at offset base of the image.
// The _func region is given only if walking it finds every record where
// the functab says it is.
func goTables(r *io.SectionReader, base int64) xform {
	var h [72]byte
	if m, _ := r.ReadAt(h[:], 0); m < len(h) || le.Uint32(h[:]) != 0xFFFFFFF1 || h[4] != 0 || h[5] != 0 {
		return nil
	}
	ptr := int64(h[7])
	word := func(i int) int64 {
		if ptr == 8 {
			return int64(le.Uint64(h[8+8*i:]))
		}
		return int64(le.Uint32(h[8+4*i:]))
	}
	if ptr != 4 && ptr != 8 {
		return nil
	}
	nfunc, ftab := word(0), word(7)
	size := r.Size()
	if nfunc <= 0 || ftab <= 0 || ftab&3 != 0 || ftab >= size || nfunc > (size-ftab)/8 {
		return nil
	}
	tabLen := nfunc*8 + 4
	if tabLen > size-ftab || (base+ftab)&3 != 0 {
		return nil
	}
	x := xform{{tabPairs, base + ftab, base + ftab + tabLen}}
	ft := make([]byte, tabLen)
	if m, _ := r.ReadAt(ft, ftab); m < len(ft) {
		return x
	}
	kind := byte(tabFunc4)
	if ptr == 8 {
		kind = tabFunc8
	}
	start := (tabLen + ptr - 1) &^ (ptr - 1)
	at := start
	var rec [44]byte
	for i := range nfunc {
		if int64(le.Uint32(ft[8*i+4:])) != at {
			return x
		}
		if m, _ := r.ReadAt(rec[:], ftab+at); m < len(rec) {
			return x
		}
		at += 44 + 4*(int64(le.Uint32(rec[28:]))+int64(rec[43]))
		if at > size-ftab {
			return x
		}
		if i < nfunc-1 {
			at = (at + ptr - 1) &^ (ptr - 1)
		}
	}
	return append(x, region{kind, base + ftab + start, base + ftab + at})
}
