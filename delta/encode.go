package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// DefaultBlockSize is the result span of one block when EncodeOptions does
// not say otherwise. Apply's memory is about twice the block size.
const DefaultBlockSize = 4 << 20

// EncodeOptions tunes Encode. The zero value (or nil) is a good default.
type EncodeOptions struct {
	// BlockSize is how many result bytes each block covers, at most
	// MaxBlockSize; 0 means DefaultBlockSize. Blocks are encoded in
	// parallel; larger blocks compress a little better and cost the
	// device more memory.
	BlockSize int
	// Workers is the number of blocks encoded at once; 0 means GOMAXPROCS.
	Workers int
	// Progress, if set, is called from Encode's goroutine after each block
	// is written, with the result bytes covered so far and the total.
	Progress func(done, total int64)
	// Compressor, if set, compresses again the sections that the built-in
	// pure-Go zstd encoder could compress, and the smaller frame is kept;
	// the built-in encoder then runs at a fast level, to choose a block's
	// encoding, and Compressor only on the chosen one.
	// Package delta/zstdref provides one backed by the reference zstd
	// library, which makes the field streams of executables' deltas about
	// 15 % smaller.
	Compressor Compressor

	// noXform disables executable transforms, noTables the table
	// transforms, noMap the address map (tests compare with them).
	noXform, noTables, noMap bool
}

// Compressor compresses one section of a block into a single zstd frame
// whose window is at most the section's length (any conforming zstd encoder
// does this for input of known size). Compress appends the frame to dst and
// returns it, or returns nil if it cannot compress src, in which case the
// section is stored. Encode calls it from several goroutines at once.
type Compressor interface {
	Compress(dst, src []byte) []byte
}

// Encode writes to w a delta that rebuilds target from base. The base is
// indexed (at most 128 MiB, 48 MiB above a 256 MiB base) and blocks of the
// target are then read, matched and compressed in parallel and written in
// order. The matcher needs random access to the base: an *os.File is
// mapped (and above 256 MiB at most about 160 MiB of it is kept resident),
// any other base is read into memory. The base must not change while
// Encode runs. The output is deterministic: it does not depend on Workers,
// timing or how the base is read.
func Encode(ctx context.Context, base io.ReaderAt, baseLen int64, target io.ReaderAt, targetLen int64, w io.Writer, opts *EncodeOptions) error {
	var o EncodeOptions
	if opts != nil {
		o = *opts
	}
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.BlockSize < 1 || o.BlockSize > MaxBlockSize {
		return fmt.Errorf("delta: block size %d outside 1..%d", o.BlockSize, MaxBlockSize)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if baseLen < 0 || baseLen > MaxImageSize || targetLen < 0 || targetLen > MaxImageSize ||
		int64(int(baseLen)) != baseLen || int64(int(targetLen)) != targetLen {
		return fmt.Errorf("delta: image sizes %d, %d outside 0..%d", baseLen, targetLen, int64(MaxImageSize))
	}
	bi, err := loadBase(base, baseLen)
	if err != nil {
		return fmt.Errorf("delta: read base: %w", err)
	}
	defer bi.close()
	return encodeImages(ctx, bi, base, target, int(targetLen), w, &o)
}

// xformBase is the largest base for which the encoder tries executable
// transforms: it keeps a converted copy of the base in memory.
const xformBase = 128 << 20

// encodeImages encodes with the base mapped or in memory (bi; base is the
// same bytes, read to hash them) and the target read block by block, so
// that the encoder holds the base's index, a few blocks and the part of the
// base the blocks touch.
func encodeImages(ctx context.Context, bi *baseImage, base io.ReaderAt, target io.ReaderAt, tlen int, w io.Writer, o *EncodeOptions) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := bi.b
	// A mapped base faults (SIGBUS) where its file was truncated after it
	// was mapped: every goroutine that reads it watches for that.
	var g *faultGuard
	if bi.mapped {
		g = newFaultGuard(cancel, bi.file, int64(len(b)))
		defer g.watch()()
		defer func() {
			if g.caught(recover()) {
				err = g.Err()
			}
		}()
	}
	h := Header{Version: Version, BlockSize: uint32(o.BlockSize), BaseLen: int64(len(b)), ResultLen: int64(tlen)}
	hashed := make(chan error, 2)
	go func() {
		hs := sha256.New()
		err := hashSection(ctx, hs, target, int64(tlen))
		copy(h.ResultSHA256[:], hs.Sum(nil))
		if err != nil {
			err = fmt.Errorf("delta: read target: %w", err)
		}
		hashed <- err
	}()
	go func() {
		// Read, not the mapping: hashing a mapped base would make all of
		// it resident.
		hs := sha256.New()
		err := hashSection(ctx, hs, base, int64(len(b)))
		copy(h.BaseSHA256[:], hs.Sum(nil))
		if err != nil {
			err = fmt.Errorf("delta: read base: %w", err)
		}
		hashed <- err
	}()
	// Executable transforms (FORMAT.md "Transforms"): when both images hold
	// code, blocks that meet the result's code are also tried against
	// converted copies of both images, and the smaller encoding is kept.
	// Not above 128 MiB: every block would then copy from the base
	// converted in place (memory), with no choice per block, and that
	// made the ext4 rootfs deltas larger (TestStatsTransform: amd64
	// 2,879,617 B with transforms, 2,564,060 without; arm64 7,645,234 and
	// 7,450,938).
	var xb, xt xform
	bx := b
	if !o.noXform && o.BlockSize%granule == 0 && len(b) <= xformBase {
		xb, xt = elfRegions(bytes.NewReader(b), int64(len(b))), elfRegions(target, int64(tlen))
		if o.noTables {
			xb, xt = xb.code(), xt.code()
		}
	}
	if len(xb) > 0 && len(xt) > 0 {
		bx = bytes.Clone(b)
		xb.convert(bx, 0, true)
		convertTables(bx, xb)
	} else {
		xb, xt = nil, nil
	}
	ttab, err := newTables(target, xt) // converts target blocks' tables
	if err != nil {
		return fmt.Errorf("delta: read target: %w", err)
	}
	conv := 0 // the converted copy's bytes
	if len(xb) > 0 {
		conv = len(bx)
	}
	// Capped before the index is built, whose workers and buffers it
	// also bounds (before the cap, 16 index workers took the 2 GiB pair
	// to 558 MiB even with the blocks capped, each holding up to
	// indexChunk of the mapped base resident).
	indexMem := indexBytes(len(b))
	o.Workers = encodeWorkers(o.Workers, memUse{base: len(b), index: indexMem, converted: conv})
	// The index holds the plain base's seeds and then the converted
	// base's where they differ.
	ix := buildIndex(ctx, b, o.Workers, bi.indexed, g)
	defer ix.release() // after the workers stop (deferred below)
	if err := g.Err(); err != nil {
		return err
	}
	// Address map (versions 6 and 7, xmap.go): for riscv64 and arm64 code, where the
	// referenced data and code went in the result, from a first match of
	// every block against the plain base; the base's converted references
	// are then moved by it before their seeds go in the index.
	var amap *addrMap
	if !o.noMap && (xb.hasArch(archRVC) && xt.hasArch(archRVC) || xb.hasArch(archARM64) && xt.hasArch(archARM64)) {
		moves, err := scanMoves(ix, b, target, tlen, o.BlockSize, o.Workers)
		if err != nil {
			return g.errOr(fmt.Errorf("delta: read target: %w", err))
		}
		if amap = buildMap(moves, elfMoves(b, target, int64(tlen)), int64(len(b))); amap != nil {
			amap.arm64 = true
			amap.apply(xb, bx, 0)
		}
	}
	if len(xb) > 0 {
		ix.addConverted(ctx, bx, o.Workers)
		if err := g.Err(); err != nil {
			return err
		}
	}
	live := 96<<20 + heapPerWorker*o.Workers + conv
	if ix.free == nil {
		live += indexMem // on the Go heap
	}
	if !bi.mapped {
		live += len(b)
	}
	defer limitHeap(int64(live))()
	var herr error
	for range 2 {
		if err := <-hashed; err != nil && herr == nil {
			herr = err
		}
	}
	if herr != nil {
		return herr
	}
	if err := ctx.Err(); err != nil {
		return g.errOr(err)
	}
	// A delta without an address map is written as version 5, byte for
	// byte as before version 6, so that devices with a version-5 decoder
	// keep applying every delta that does not need the map.
	if amap == nil {
		h.Version = 5
	}
	hdr := appendXform(appendXform(h.marshal(), xb), xt)
	if amap != nil {
		hdr = appendMap(hdr, amap)
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("delta: write: %w", err)
	}

	// A block that meets the result's code is encoded twice, plain and
	// converted, as two jobs (so that the two halves of a small image's
	// only big block run on two cores). The job that finishes last keeps
	// the encoding the fast compressor made smaller and spends the better
	// compressor on that one only.
	type job struct {
		blk       *blockWork
		converted bool
	}
	// Block k covers result bytes [k*BlockSize, min((k+1)*BlockSize, len(t))).
	nblk := (tlen + o.BlockSize - 1) / o.BlockSize
	jobs := make(chan job)
	order := make(chan *blockWork, 2*o.Workers) // bounds blocks in flight
	go func() {
		defer close(jobs)
		defer close(order)
		for k := range nblk {
			lo := k * o.BlockSize
			bw := &blockWork{k: k, left: 1, out: make(chan []byte, 1)}
			if xt.overlaps(int64(lo), int64(min(lo+o.BlockSize, tlen))) {
				bw.left = 2
			}
			select {
			case order <- bw:
			case <-ctx.Done():
				return
			}
			for c := range bw.left {
				select {
				case jobs <- job{bw, c == 1}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var readErr error
	var readOnce sync.Once
	fail := func(err error) {
		readOnce.Do(func() { readErr = err })
		cancel()
	}
	// The workers read the base, which Encode unmaps when this returns.
	var workers sync.WaitGroup
	defer func() {
		cancel()
		workers.Wait()
	}()
	fastLevel := zstd.SpeedBestCompression
	if o.Compressor != nil {
		fastLevel = estimateLevel
	}
	for range o.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			defer g.watch()()
			defer func() { g.caught(recover()) }()
			enc := getEncoder(windowFor(o.BlockSize), fastLevel)
			defer putEncoder(enc)
			tb := make([]byte, min(o.BlockSize, tlen))
			tc := ttab.cursor()
			s := &scanner{ix: ix, b: b}
			sx := &scanner{ix: ix, b: bx}
			for j := range jobs {
				lo := j.blk.k * o.BlockSize
				hi := min(lo+o.BlockSize, tlen)
				var c *candidate
				if m, err := target.ReadAt(tb[:hi-lo], int64(lo)); m < hi-lo {
					if err == nil || err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					fail(err)
				} else if !j.converted {
					c = s.candidate(enc, lo, hi, fieldAlign(xt, int64(lo), int64(hi)), tb[:hi-lo])
				} else {
					xt.convert(tb[:hi-lo], int64(lo), true)
					if err := tc.convert(tb[:hi-lo], int64(lo)); err != nil {
						fail(err)
					} else {
						c = sx.candidate(enc, lo, hi, fieldAlign(xt, int64(lo), int64(hi)), tb[:hi-lo])
					}
				}
				bi.blockDone(o.BlockSize)
				j.blk.done(c, j.converted, o.Compressor)
			}
		}()
	}
	for bw := range order {
		lo := bw.k * o.BlockSize
		hi := min(lo+o.BlockSize, tlen)
		var blk []byte
		select {
		case blk = <-bw.out:
		case <-ctx.Done():
			return g.errOr(ctx.Err())
		}
		if blk == nil {
			<-ctx.Done()
			return fmt.Errorf("delta: read target: %w", readErr)
		}
		out := binary.AppendUvarint(make([]byte, 0, len(blk)+10), uint64(hi-lo))
		if _, err := w.Write(append(out, blk...)); err != nil {
			return fmt.Errorf("delta: write: %w", err)
		}
		if o.Progress != nil {
			o.Progress(int64(hi), int64(tlen))
		}
	}
	if err := ctx.Err(); err != nil {
		return g.errOr(err)
	}
	if _, err := w.Write([]byte{0}); err != nil {
		return fmt.Errorf("delta: write: %w", err)
	}
	return nil
}

// encoders keeps zstd encoders by window size: building one costs far more
// than encoding a small block. A free list, not a sync.Pool, for the
// reason zstdref gives: a sync.Pool's per-P slots made the number of
// encoders grow with GOMAXPROCS, not with the workers.
var encoders struct {
	sync.Mutex
	free map[encoderKind][]*zstd.Encoder
}

// encoderKind is a zstd encoder's window and level.
type encoderKind struct {
	window int
	level  zstd.EncoderLevel
}

type pooledEncoder struct {
	*zstd.Encoder
	kind encoderKind
}

func getEncoder(window int, level zstd.EncoderLevel) pooledEncoder {
	encoders.Lock()
	defer encoders.Unlock()
	k := encoderKind{window, level}
	if l := encoders.free[k]; len(l) > 0 {
		encoders.free[k] = l[:len(l)-1]
		return pooledEncoder{l[len(l)-1], k}
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(window),
		zstd.WithEncoderCRC(false))
	if err != nil {
		panic(err) // static options; cannot fail
	}
	return pooledEncoder{enc, k}
}

// Compress implements Compressor.
func (e pooledEncoder) Compress(dst, src []byte) []byte { return e.EncodeAll(src, dst) }

func putEncoder(e pooledEncoder) {
	encoders.Lock()
	defer encoders.Unlock()
	if encoders.free == nil {
		encoders.free = map[encoderKind][]*zstd.Encoder{}
	}
	encoders.free[e.kind] = append(encoders.free[e.kind], e.Encoder)
}

// windowFor returns the zstd window that holds a whole block's raw data.
func windowFor(blockSize int) int {
	w := 1 << 10
	for w < 2*blockSize+maxCtrlSlack && w < 2*MaxBlockSize {
		w <<= 1
	}
	return w
}

// estimateLevel is the built-in encoder's level when a better Compressor
// is set: its frames then only choose between a block's encodings and find
// what does not compress, and the better compressor makes the frames that
// are kept. Its tables are a few MiB instead of the 34 MiB of the best
// level's, which made a 4.5 MB library's encode spend a third of its time
// in page faults.
const estimateLevel = zstd.SpeedBetterCompression

// blockWork is one block being encoded: plainly and, where the block meets
// the result's code, converted; the last of them to finish chooses.
type blockWork struct {
	k           int
	mu          sync.Mutex
	left        int         // encodings not finished
	plain, conv *candidate  // nil until finished, or if the target could not be read
	failed      bool        // the target could not be read
	out         chan []byte // the block's flags and sections; nil if failed
}

// done records encoding c (converted or not; nil if the target could not
// be read). The last one sends the block: the smaller encoding by the fast
// frames (the plain one if equal), its sections compressed again with
// better if set.
func (bw *blockWork) done(c *candidate, converted bool, better Compressor) {
	bw.mu.Lock()
	if c == nil {
		bw.failed = true
	} else if converted {
		bw.conv = c
	} else {
		bw.plain = c
	}
	bw.left--
	last := bw.left == 0
	bw.mu.Unlock()
	if !last {
		return
	}
	if bw.failed {
		bw.out <- nil
		return
	}
	win, flags := bw.plain, byte(0)
	if bw.conv != nil && bw.conv.size < win.size {
		win, flags = bw.conv, blockConverted
	}
	bw.plain, bw.conv = nil, nil
	bw.out <- win.finish(append(make([]byte, 0, 64), flags), better)
}

// candidate is one encoding of a block: its sections and their frames
// from the fast compressor, and the frames' total size.
type candidate struct {
	raw, comp [numSections][]byte
	size      int
}

// candidate encodes t, the target's bytes [lo, hi) (converted if s.b is
// the converted base), with fields aligned to align. Field values can be
// written two ways (varints suit small address shifts, sized values random
// changes); both layouts' differing sections are compressed with fast, and
// the smaller layout is kept.
func (s *scanner) candidate(fast Compressor, lo, hi, align int, t []byte) *candidate {
	s.t, s.t0, s.align = t, lo, align
	s.scan(lo, hi)
	c := &candidate{size: -1}
	for _, sized := range []bool{false, true} {
		secs, ok := s.sections(lo, hi, sized)
		if !ok {
			if sized {
				continue
			}
			// Pathological input: fall back to all-literal, which always fits.
			s.ops = append(s.ops[:0], op{extraLen: hi - lo})
			secs, _ = s.sections(lo, hi, false)
		}
		comp, n := c.comp, 0
		for i, sec := range secs {
			if c.size < 0 || i == secSizes || i == secVals {
				// The layouts differ only in these two.
				comp[i] = compressSection(fast, sec)
			}
			n += len(comp[i])
		}
		if c.size < 0 || n < c.size {
			c.raw, c.comp, c.size = secs, comp, n
		}
		if len(secs[secGaps]) == 0 {
			break // no fields: both ways are the same
		}
	}
	return c
}

// finish appends the candidate's sections to out. If better is set, the
// compressible sections are compressed again with it, keeping the smaller
// frame: a slow encoder is spent once per section, and not on data that
// does not compress at all.
func (c *candidate) finish(out []byte, better Compressor) []byte {
	comp := c.comp
	if better != nil {
		for i, sec := range c.raw {
			if len(comp[i]) >= len(sec)-len(sec)/64 {
				continue // (nearly) incompressible
			}
			if f := compressSection(better, sec); len(f) < len(comp[i]) {
				comp[i] = f
			}
		}
	}
	for i, sec := range c.raw {
		out = binary.AppendUvarint(out, uint64(len(sec)))
		out = binary.AppendUvarint(out, uint64(len(comp[i])))
		out = append(out, comp[i]...)
	}
	return out
}

// alignFields starts patched fields at aligned result positions (see
// sections and fieldAlign). A variable only so that TestStats can compare.
var alignFields = true

// fieldAlign is the alignment of patched fields for result bytes [lo, hi)
// given the result's code regions: 4 (words, fixed-width instructions),
// 2 where the block meets Thumb-2 or compressed riscv64 code, and 1 where
// it meets x86 code, whose instructions have any length. Measured on the
// benchmark corpus: aligned fields make arm64 deltas 2-7 % smaller, but
// 4-aligned ones made riscv64 (compressed) deltas 11 % larger.
func fieldAlign(x xform, lo, hi int64) int {
	if !alignFields {
		return 1
	}
	a := 4
	i := sort.Search(len(x), func(i int) bool { return x[i].end > lo })
	for ; i < len(x) && x[i].start < hi; i++ {
		switch x[i].arch {
		case archX86:
			return 1
		case archThumb, archRVC:
			a = 2
		}
	}
	return a
}

// compressSection returns sec's frame, or sec itself (stored) when
// compressing does not make it smaller.
func compressSection(c Compressor, sec []byte) []byte {
	if len(sec) == 0 {
		return sec
	}
	if comp := c.Compress(nil, sec); comp != nil && len(comp) < len(sec) {
		return comp
	}
	return sec
}

// sections lays out the block's sections (see FORMAT.md) for s.ops over
// target[lo:hi], with field values as varints or, if sized, as sized
// little-endian numbers. It reports false if they would exceed the
// decoder's limit.
func (s *scanner) sections(lo, hi int, sized bool) (secs [numSections][]byte, ok bool) {
	var ctrl, gaps, sizes, vals, extra []byte
	pos, at := 0, lo
	zeros := 0 // unchanged diff bytes since the last field
	for _, o := range s.ops {
		ctrl = binary.AppendVarint(ctrl, int64(o.pos-pos))
		ctrl = binary.AppendUvarint(ctrl, uint64(o.diffLen))
		ctrl = binary.AppendUvarint(ctrl, uint64(o.extraLen))
		t, b := s.t[at-s.t0:at-s.t0+o.diffLen], s.b[o.pos:o.pos+o.diffLen]
		fend := 0 // end of the previous field in this op's copy
		for k := 0; k < len(t); {
			if n := matchFwd(t[k:], b[k:]); n > 0 {
				zeros += n
				k += n
				continue
			}
			if s.align > 1 {
				// Start the field at the aligned result position at or
				// before the first differing byte, so that it holds a
				// whole instruction or word: a moved target then gives
				// the same value in every reference to it.
				if a := max(k-(at+k)&(s.align-1), fend); a < k {
					zeros -= k - a
					k = a
				}
			}
			w := min(fieldLen, len(t)-k)
			d := fieldDiff(t[k:k+w], b[k:k+w])
			gaps = binary.AppendUvarint(gaps, uint64(zeros))
			if sized {
				z := uint64(d<<1) ^ uint64(d>>63) // zig-zag
				n := max(1, (bits.Len64(z)+7)/8)
				sizes = append(sizes, byte(n-1))
				for ; n > 0; n-- {
					vals = append(vals, byte(z))
					z >>= 8
				}
			} else {
				vals = binary.AppendVarint(vals, d)
			}
			zeros = 0
			k += w
			fend = k
		}
		pos = o.pos + o.diffLen
		at += o.diffLen
		extra = append(extra, s.t[at-s.t0:at-s.t0+o.extraLen]...)
		at += o.extraLen
	}
	secs = [numSections][]byte{ctrl, gaps, sizes, vals, extra}
	total := 0
	for _, sec := range secs {
		total += len(sec)
	}
	return secs, len(ctrl) <= max(hi-lo, maxCtrlSlack) && total <= maxRaw(hi-lo)
}

// fieldDiff returns new-old for little-endian fields of len(t) bytes, as a
// signed number of that width.
func fieldDiff(t, b []byte) int64 {
	var nv, ov uint64
	for q := len(t) - 1; q >= 0; q-- {
		nv = nv<<8 | uint64(t[q])
		ov = ov<<8 | uint64(b[q])
	}
	bits := uint(8 * len(t))
	d := (nv - ov) << (64 - bits)
	return int64(d) >> (64 - bits) // sign-extend
}
