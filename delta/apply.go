package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// copyChunk is how much of the base Apply reads at a time.
const copyChunk = 256 << 10

// Apply rebuilds the result image from base and the delta read from d, and
// writes it sequentially to out. It reads the base only through base.ReadAt,
// hashes the result as it goes and checks the header's result length and
// sha256 at the end; it also hashes the base (concurrently) and reports a
// wrong base as ErrBaseMismatch.
//
// On any error the bytes already written to out must be discarded. Memory use
// is bounded by the block size (at most MaxBlockSize), independent of the
// image sizes. Errors wrap ErrCorrupt, ErrUnsupported, ErrBaseMismatch or
// ErrResultMismatch where they apply; I/O errors from base, d or out are
// wrapped as they are.
func Apply(ctx context.Context, base io.ReaderAt, baseLen int64, d io.Reader, out io.Writer) (Header, error) {
	br := bufio.NewReaderSize(d, 64<<10)
	h, err := ReadHeader(br)
	if err != nil {
		return h, err
	}
	if baseLen != h.BaseLen {
		return h, fmt.Errorf("%w: base is %d bytes, delta needs %d bytes", ErrBaseMismatch, baseLen, h.BaseLen)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Hash the base alongside decoding: a wrong base is reported as such
	// rather than as a result mismatch, and early when it is found first.
	baseErr := make(chan error, 1)
	go func() {
		err := checkBase(ctx, base, h)
		if err != nil {
			cancel()
		}
		baseErr <- err
	}()
	decErr := decodeBlocks(ctx, base, h, br, out)
	bErr := <-baseErr
	if errors.Is(bErr, ErrBaseMismatch) {
		return h, bErr
	}
	if decErr != nil {
		return h, decErr
	}
	if bErr != nil {
		return h, bErr
	}
	return h, nil
}

func checkBase(ctx context.Context, base io.ReaderAt, h Header) error {
	hs := sha256.New()
	if err := hashSection(ctx, hs, base, h.BaseLen); err != nil {
		return fmt.Errorf("delta: hash base: %w", err)
	}
	if !bytes.Equal(hs.Sum(nil), h.BaseSHA256[:]) {
		return fmt.Errorf("%w: base sha256 %x, delta needs %x", ErrBaseMismatch, hs.Sum(nil), h.BaseSHA256)
	}
	return nil
}

func hashSection(ctx context.Context, w io.Writer, r io.ReaderAt, n int64) error {
	buf := make([]byte, min(max(n, 1), 1<<20))
	for off := int64(0); off < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := int64(len(buf))
		if n-off < c {
			c = n - off
		}
		m, err := r.ReadAt(buf[:c], off)
		if int64(m) < c {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		w.Write(buf[:m])
		off += int64(m)
	}
	return nil
}

// decoderPool holds zstd decoders: they are costly to build and Apply may be
// called often in tests and servers.
var decoderPool = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(2*MaxBlockSize+maxCtrlSlack),
		zstd.WithDecoderMaxWindow(2*MaxBlockSize+maxCtrlSlack))
	if err != nil {
		panic(err) // static options; cannot fail
	}
	return d
}}

// blockReader holds the buffers reused across blocks.
type blockReader struct {
	base    io.ReaderAt
	baseLen int64
	comp    []byte
	raw     []byte
	w       *asyncWriter
	// Version 3: block flags and the executable transforms.
	flags     bool
	blockSize int64
	xbase     *xformReader  // the base converted forward
	xres      xform         // the result's regions
	rtab      *resultTables // the result's table regions (version 5), nil if none
	conv      blockBuf      // a converted block's output, converted back when complete
	src       io.ReaderAt   // base or xbase, for the current block
	dst       sink          // w or &conv, for the current block
}

// sink takes a block's output: asyncWriter, or blockBuf for a block whose
// output is converted back before it is written.
type sink interface {
	space() ([]byte, error)
	commit(n int)
	Write(p []byte) (int, error)
}

// blockBuf holds one block's output.
type blockBuf struct{ b []byte }

func (s *blockBuf) space() ([]byte, error) { return s.b[len(s.b):cap(s.b)], nil }
func (s *blockBuf) commit(n int)           { s.b = s.b[:len(s.b)+n] }
func (s *blockBuf) Write(p []byte) (int, error) {
	if len(p) > cap(s.b)-len(s.b) {
		return 0, fmt.Errorf("%w: block output overruns its length", ErrCorrupt)
	}
	s.b = append(s.b, p...)
	return len(p), nil
}

func decodeBlocks(ctx context.Context, base io.ReaderAt, h Header, r *bufio.Reader, out io.Writer) error {
	zd := decoderPool.Get().(*zstd.Decoder)
	defer decoderPool.Put(zd)
	hs := sha256.New()
	aw := newAsyncWriter(out, hs, int(min(max(h.ResultLen, 4096), copyChunk)))
	closed := false
	defer func() {
		if !closed {
			aw.Close()
		}
	}()
	b := &blockReader{base: base, baseLen: h.BaseLen, w: aw, blockSize: int64(h.BlockSize)}
	if h.Version >= 3 {
		xb, err := readXform(r, h.BaseLen, h.Version)
		if err != nil {
			return fmt.Errorf("base transforms: %w", err)
		}
		if b.xres, err = readXform(r, h.ResultLen, h.Version); err != nil {
			return fmt.Errorf("result transforms: %w", err)
		}
		b.flags, b.xbase = true, &xformReader{r: base, size: h.BaseLen, x: xb}
		if h.Version >= 6 {
			if b.xbase.m, err = readMap(r); err != nil {
				return fmt.Errorf("address map: %w", err)
			}
			if b.xbase.m != nil {
				b.xbase.m.arm64 = h.Version >= 7
			}
		}
		b.rtab = newResultTables(b.xres)
		btab, err := newTables(base, xb)
		if err != nil {
			return err
		}
		if (btab != nil || b.rtab != nil) && b.blockSize%granule != 0 {
			return fmt.Errorf("%w: table transforms with block size %d", ErrCorrupt, b.blockSize)
		}
		b.xbase.tab = btab.cursor()
	}
	var total int64
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		outLen, err := b.block(r, zd, total, h.ResultLen-total)
		if err != nil {
			return fmt.Errorf("block %d: %w", n, err)
		}
		if outLen == 0 {
			break
		}
		total += outLen
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: data after end of delta", ErrCorrupt)
	}
	closed = true
	if err := aw.Close(); err != nil {
		return fmt.Errorf("delta: write result: %w", err)
	}
	if total != h.ResultLen {
		return fmt.Errorf("%w: rebuilt %d bytes, header says %d", ErrResultMismatch, total, h.ResultLen)
	}
	if sum := hs.Sum(nil); !bytes.Equal(sum, h.ResultSHA256[:]) {
		return fmt.Errorf("%w: result sha256 %x, header says %x", ErrResultMismatch, sum, h.ResultSHA256)
	}
	return nil
}

func readUvarint(r io.ByteReader, limit uint64, what string) (uint64, error) {
	v, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
	}
	if v > limit {
		return 0, fmt.Errorf("%w: %s %d above limit %d", ErrCorrupt, what, v, limit)
	}
	return v, nil
}

// block decodes one block and returns the number of result bytes it wrote;
// 0 means the end marker.
func (b *blockReader) block(r *bufio.Reader, zd *zstd.Decoder, at, remaining int64) (int64, error) {
	outLen, err := readUvarint(r, uint64(b.blockSize), "block length")
	if err != nil || outLen == 0 {
		return 0, err
	}
	if int64(outLen) > remaining {
		return 0, fmt.Errorf("%w: block of %d bytes overruns result length", ErrCorrupt, outLen)
	}
	b.src, b.dst = b.base, sink(b.w)
	converted := false
	// A block that meets the result's tables is kept whole, converted or
	// not: their walk sees every word of the result in order.
	tab := b.rtab.overlaps(at, at+int64(outLen))
	if b.flags {
		fl, err := r.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("%w: block flags: %v", ErrCorrupt, err)
		}
		switch {
		case fl == blockConverted && b.blockSize%granule == 0:
			converted = true
			b.src = b.xbase
		case fl != 0:
			return 0, fmt.Errorf("%w: block flags %#02x", ErrCorrupt, fl)
		}
	}
	if converted || tab {
		if cap(b.conv.b) < int(outLen)+fieldLen {
			b.conv.b = make([]byte, 0, int(outLen)+fieldLen)
		}
		b.conv.b = b.conv.b[: 0 : int(outLen)+fieldLen]
		b.dst = &b.conv
	}
	limit := maxRaw(int(outLen))
	if cap(b.raw) < limit {
		b.raw = make([]byte, 0, limit)
	}
	used := 0
	var secs [numSections][]byte
	for i := range secs {
		rawLen, err := readUvarint(r, uint64(limit-used), "section length")
		if err != nil {
			return 0, err
		}
		compLen, err := readUvarint(r, rawLen, "compressed section length")
		if err != nil {
			return 0, err
		}
		if uint64(cap(b.comp)) < compLen {
			b.comp = make([]byte, compLen)
		}
		comp := b.comp[:compLen]
		if _, err := io.ReadFull(r, comp); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			return 0, err
		}
		dst := b.raw[used : used : used+int(rawLen)]
		if compLen == rawLen {
			dst = append(dst, comp...) // stored
		} else if dst, err = zd.DecodeAll(comp, dst); err != nil {
			return 0, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		if len(dst) != int(rawLen) {
			return 0, fmt.Errorf("%w: section decompressed to %d bytes, expected %d", ErrCorrupt, len(dst), rawLen)
		}
		secs[i] = dst
		used += len(dst)
	}
	if len(secs[secCtrl]) > max(int(outLen), maxCtrlSlack) {
		return 0, fmt.Errorf("%w: control section of %d bytes for %d result bytes", ErrCorrupt, len(secs[secCtrl]), outLen)
	}
	ops, _, err := checkCtrl(secs[secCtrl], int64(outLen), len(secs[secExtra]))
	if err != nil {
		return 0, err
	}
	f := &fields{gaps: secs[secGaps], sizes: secs[secSizes], vals: secs[secVals], sized: len(secs[secSizes]) > 0}
	if err := f.advance(0); err != nil {
		return 0, err
	}
	if err := b.run(secs[secCtrl], ops, f, secs[secExtra]); err != nil {
		return 0, err
	}
	if f.next >= 0 {
		return 0, fmt.Errorf("%w: patched field beyond the diff data", ErrCorrupt)
	}
	if converted || tab {
		out := b.conv.b[:outLen]
		if converted {
			b.xres.convert(out, at, false)
		}
		if tab {
			b.rtab.block(out, at, converted)
		}
		if _, err := b.w.Write(out); err != nil {
			return 0, fmt.Errorf("delta: write result: %w", err)
		}
	}
	return int64(outLen), nil
}

// checkCtrl validates the control section and returns the number of ops and
// the diff length they need.
func checkCtrl(ctrl []byte, outLen int64, extraLen int) (ops, diffLen int, err error) {
	var nd, ne int64
	for len(ctrl) > 0 {
		var v [3]uint64
		for k := range v {
			x, n := binary.Uvarint(ctrl)
			if n <= 0 {
				return 0, 0, fmt.Errorf("%w: truncated control op", ErrCorrupt)
			}
			v[k], ctrl = x, ctrl[n:]
		}
		if v[1]+v[2] == 0 || v[1] > uint64(outLen) || v[2] > uint64(outLen) {
			return 0, 0, fmt.Errorf("%w: bad op lengths %d, %d", ErrCorrupt, v[1], v[2])
		}
		nd, ne = nd+int64(v[1]), ne+int64(v[2])
		if nd+ne > outLen {
			return 0, 0, fmt.Errorf("%w: ops produce more than %d bytes", ErrCorrupt, outLen)
		}
		ops++
	}
	if nd+ne != outLen || ne != int64(extraLen) {
		return 0, 0, fmt.Errorf("%w: ops produce %d+%d bytes, block has %d with %d literal", ErrCorrupt, nd, ne, outLen, extraLen)
	}
	return ops, int(nd), nil
}

// fields walks a block's patched fields: each is fieldLen bytes (fewer at
// the end of an op's copy) whose little-endian value gets a difference
// added.
type fields struct {
	gaps, sizes, vals []byte
	sized             bool  // values are sized by the sizes section, not varints
	next              int64 // diff-stream position of the next field; -1 when none is left
	val               int64
}

// advance reads the next field, which starts gap bytes after from.
func (f *fields) advance(from int64) error {
	if len(f.gaps) == 0 && len(f.sizes) == 0 && len(f.vals) == 0 {
		f.next = -1
		return nil
	}
	g, n := binary.Uvarint(f.gaps)
	if n <= 0 || g > MaxBlockSize {
		return fmt.Errorf("%w: bad field gap", ErrCorrupt)
	}
	f.gaps = f.gaps[n:]
	var v int64
	if !f.sized {
		if v, n = binary.Varint(f.vals); n <= 0 {
			return fmt.Errorf("%w: bad field value", ErrCorrupt)
		}
		f.vals = f.vals[n:]
	} else {
		if len(f.sizes) == 0 || f.sizes[0] >= 8 || len(f.vals) <= int(f.sizes[0]) {
			return fmt.Errorf("%w: bad field size", ErrCorrupt)
		}
		nb := int(f.sizes[0]) + 1
		f.sizes = f.sizes[1:]
		var z uint64
		for q := nb - 1; q >= 0; q-- {
			z = z<<8 | uint64(f.vals[q])
		}
		f.vals = f.vals[nb:]
		v = int64(z>>1) ^ -int64(z&1)
	}
	f.next, f.val = from+int64(g), v
	return nil
}

// run executes a block's control ops, already checked by checkCtrl.
func (b *blockReader) run(ctrl []byte, ops int, f *fields, extra []byte) error {
	var pos, dpos int64 // base position, diff-stream position
	for range ops {
		seek, n := binary.Varint(ctrl)
		ctrl = ctrl[n:]
		dl, n := binary.Uvarint(ctrl)
		ctrl = ctrl[n:]
		el, n := binary.Uvarint(ctrl)
		ctrl = ctrl[n:]
		if seek < -b.baseLen || seek > b.baseLen {
			return fmt.Errorf("%w: seek %d outside base", ErrCorrupt, seek)
		}
		pos += seek
		if pos < 0 || pos > b.baseLen-int64(dl) {
			return fmt.Errorf("%w: copy of %d bytes at %d outside base of %d bytes", ErrCorrupt, dl, pos, b.baseLen)
		}
		if err := b.copyPatched(pos, dpos, int64(dl), f); err != nil {
			return err
		}
		pos += int64(dl)
		dpos += int64(dl)
		if _, err := b.dst.Write(extra[:el]); err != nil {
			return fmt.Errorf("delta: write result: %w", err)
		}
		extra = extra[el:]
	}
	return nil
}

// copyPatched writes base[pos:pos+n] with the fields that fall in diff-stream
// positions [dpos, dpos+n) added.
func (b *blockReader) copyPatched(pos, dpos, n int64, f *fields) error {
	end := dpos + n
	for dpos < end {
		space, err := b.dst.space()
		if err != nil {
			return fmt.Errorf("delta: write result: %w", err)
		}
		c := min(end-dpos, int64(len(space)))
		buf := space[:c]
		m, err := b.src.ReadAt(buf, pos)
		if int64(m) < c {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("delta: read base at %d: %w", pos, err)
		}
		for f.next >= 0 && f.next < dpos+c {
			if f.next < dpos {
				return fmt.Errorf("%w: overlapping patched fields", ErrCorrupt)
			}
			rel := f.next - dpos
			w := min(int64(fieldLen), end-f.next)
			if rel+w > c {
				// Patch it in the next buffer; rel > 0 because space
				// holds at least fieldLen bytes.
				c = rel
				break
			}
			addField(buf[rel:rel+w], f.val)
			if err := f.advance(f.next + w); err != nil {
				return err
			}
		}
		b.dst.commit(int(c))
		pos += c
		dpos += c
	}
	return nil
}

// addField adds d to the little-endian number in p, modulo its width.
func addField(p []byte, d int64) {
	var v uint64
	for q := len(p) - 1; q >= 0; q-- {
		v = v<<8 | uint64(p[q])
	}
	v += uint64(d)
	for q := range p {
		p[q] = byte(v)
		v >>= 8
	}
}
