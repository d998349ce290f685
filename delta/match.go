package delta

import (
	"context"
	"encoding/binary"
	"math/bits"
	"sync"
	"unsafe"
)

// The matcher follows bsdiff's idea with a hash index instead of a suffix
// array: find exact seed matches between target and base, then extend each
// alignment approximately (keep going while more than half the bytes agree)
// so that code whose embedded addresses moved costs a few non-zero bytes in
// the diff stream instead of a new match every few bytes.

const (
	seedLen  = 8       // bytes hashed per index entry; shortest exact match found
	ways     = 4       // candidates kept per hash bucket
	maxSeeds = 1 << 25 // index entries before the base is sampled more sparsely

	margin = 16 // a new alignment must beat the current one by this much
)

// Tuning knobs, measured on the benchmark corpus (scripts/bench-delta.sh).
// They are variables only so that TestStats can try other values; nothing
// changes them at run time.
var (
	// An alignment is extended approximately while more than
	// extendDen/extendNum of the bytes agree. bsdiff uses one half; a
	// quarter is better here because xDrop (below) already stops an
	// extension at a stretch of unrelated bytes, which is what the
	// stricter ratio protected against.
	extendNum, extendDen = 4, 1
	// minSwitch is the shortest exact match that starts a new alignment:
	// shorter ones are mostly coincidences that cost more ops than they save.
	minSwitch = 24
	// xDrop stops an approximate extension once its score has fallen this
	// far below its best (BLAST's X-drop): a stretch of unrelated bytes
	// between two matching parts becomes literal data and a new op instead
	// of a costly run of patched fields.
	xDrop = 256
)

// index maps seedLen-byte strings of the base to positions. Positions are
// sampled every step bytes so that the table stays near maxSeeds entries;
// target positions are probed at every byte, so every match of at least
// seedLen+step-1 bytes is found (collisions aside).
type index struct {
	base  []byte
	shift uint
	step  int
	// Buckets of `ways` entries, newest first. An entry is
	// (position/step+1)<<checkBits | check, where check is more bits of the
	// seed's hash, so most false candidates are rejected without touching
	// the base (a cache miss). 0 is empty.
	table []uint32
	// check2 holds, above residentBase, 16 bits of the hash of the
	// longSeed-seedLen bytes after each seed, so that a probe touches the
	// base only where the match is at least longSeed bytes long. There a
	// touch is not only a cache miss but a page brought back into the
	// resident set: a block of a 2 GiB image made of rootfs images
	// brought back 350 MiB of it, mostly for true 8-byte matches too
	// short to use (common byte strings), and the 6 check bits alone
	// would let one probe in 16 touch a random page.
	check2 []uint16
	// guard catches faults reading a mapped base in the index's
	// goroutines (nil: none).
	guard *faultGuard
	// free releases table and check2 (allocTable); nil if they are on
	// the Go heap. Nothing may use the index after it.
	free func()
}

// release frees the index's memory, which the garbage collector does not
// manage; the index must not be used after it.
func (ix *index) release() {
	if ix.free != nil {
		ix.free()
		ix.table, ix.check2, ix.free = nil, nil, nil
	}
}

// halfIndexBase is the base size above which the index has half the seeds.
const halfIndexBase = 64 << 20

// largeSeeds is the number of seeds above residentBase: 6 bytes per entry
// (with check2), so the index stays under 48 MiB whatever the base size.
const largeSeeds = 1 << 23

const checkBits = 6 // 32 bits minus the 26 that maxSeeds+1 needs

// hashSeed returns the bucket and check bits of a seed.
func hashSeed(v uint64, shift uint) (bucket int, check uint32) {
	h := v * 0x9E3779B97F4A7C15
	return int(h >> shift), uint32(h>>(shift-checkBits)) & (1<<checkBits - 1)
}

// longSeed is how many bytes check2 covers, the seed included: shorter
// than minSwitch, so that every match the scanner can use at a seed is
// still found (a match of step+longSeed-1 bytes or more always holds a
// sampled seed that longSeed bytes match from).
const longSeed = 24

// hashCheck2 returns the check2 bits of a seed from the 16 bytes after it
// (at b[i+seedLen:]).
func hashCheck2(b []byte, i int) uint16 {
	h := (load64(b, i+seedLen)*0xC2B2AE3D27D4EB4F ^ load64(b, i+seedLen+8)) * 0x165667B19E3779F9
	return uint16(h >> 48)
}

func load64(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// newIndex indexes base.
func newIndex(ctx context.Context, base []byte, workers int) *index {
	return buildIndex(ctx, base, workers, nil, nil)
}

// indexChunk is how much of the base an index worker reads between calls
// of buildIndex's done.
const indexChunk = 32 << 20

// indexLayout is the index's shape for a base of n bytes (more than
// seedLen): a seed every step bytes, 2^b buckets of ways entries, and
// whether each entry has a check2 (above residentBase). Its memory,
// (4 + 2 with check2) bytes times ways<<b, is bounded whatever the base's
// size (TestIndexLayout).
func indexLayout(n int) (step, b int, check2 bool) {
	positions := n - seedLen + 1
	seeds := maxSeeds
	switch {
	case n > residentBase:
		// Sparser seeds for larger bases: the index's size is bounded
		// whatever the base's (every match of seedLen+step-1 bytes is
		// still found, 263 bytes at 2 GiB).
		seeds = largeSeeds
	case n > halfIndexBase:
		// For large bases half the index (at most 64 MiB instead of 128)
		// keeps the encoder under 512 MiB up to a 224 MiB image, for
		// deltas 0.5-0.7 % larger (every match of seedLen+step-1 bytes is
		// still found; minSwitch is longer than that up to 256 MiB).
		seeds /= 2
	}
	step = (positions + seeds - 1) / seeds
	b = max(bits.Len(uint(positions/step))-2, 4)
	return step, b, n > residentBase
}

// indexBytes is the memory of the index indexLayout gives for n bytes.
func indexBytes(n int) int {
	if n < seedLen {
		return 0
	}
	_, b, check2 := indexLayout(n)
	per := 4
	if check2 {
		per += 2
	}
	return per * ways << b
}

// buildIndex is newIndex; if done is set, each worker calls it with every
// indexChunk of the base it has read (so that a mapped base's pages can be
// dropped as the index is built). A fault reading the base stops the
// build and is recorded in g (the index is then incomplete).
func buildIndex(ctx context.Context, base []byte, workers int, done func(lo, hi int), g *faultGuard) *index {
	ix := &index{base: base, guard: g}
	n := len(base) - seedLen + 1
	if n <= 0 {
		return ix
	}
	step, b, check2 := indexLayout(len(base))
	ix.step = step
	ix.shift = uint(64 - b)
	slots := (1 << b) * ways
	per := 4
	if check2 {
		per += 2
	}
	mem, free := allocTable(per * slots)
	ix.free = free
	ix.table = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(mem))), slots)
	if check2 {
		ix.check2 = unsafe.Slice((*uint16)(unsafe.Pointer(&mem[4*slots])), slots)
	}
	ix.fill(ctx, workers, n, done, func(bt *batch, lo, hi int) {
		for p := lo; p < hi; p += step {
			if ix.check2 != nil && p+longSeed > len(base) {
				break // no check2 for the last seeds
			}
			v := load64(base, p)
			if p > 0 && v == load64(base, p-step) {
				continue // runs (zeros, padding) would flood a bucket; keep the first
			}
			bt.add(v, p)
		}
	})
	return ix
}

// addConverted adds the seeds of conv, the base converted (same length,
// and not above residentBase: no check2), where they differ from the
// base's, so that blocks matched against either find their seeds. They go
// in as the newest entries of their buckets.
func (ix *index) addConverted(ctx context.Context, conv []byte, workers int) {
	n := len(ix.base) - seedLen + 1
	if n <= 0 || ix.check2 != nil {
		return
	}
	ix.fill(ctx, workers, n, nil, func(bt *batch, lo, hi int) {
		for p := lo; p < hi; p += ix.step {
			v := load64(conv, p)
			if v == load64(ix.base, p) || p > 0 && v == load64(conv, p-ix.step) {
				continue // unchanged, or a run
			}
			bt.add(v, p)
		}
	})
}

// roundSeeds is how many positions an index round samples at most.
const roundSeeds = 1 << 19

// partBits is how many top bits of a bucket number choose its partition.
// Inserts are written partition by partition, so that the part of the
// table being written stays in the cache and the TLB (inserting in the
// seeds' order, every insert missed both: 38 ns each on a 32 MiB table).
const partBits = 8

// fill inserts seeds into the table, positions 0 to n (multiples of the
// step). It goes through them in rounds of at most roundSeeds positions
// and indexChunk of the base. In a round, each of workers goroutines
// queues, with seeds, the seeds of its share of the round's positions in
// their order, sorted by partition of buckets; then each writes the
// partitions it owns from all the queues in position order. So every
// bucket gets its seeds in position order whatever the number of workers,
// and the workers write disjoint memory. If done is set, it is called
// with each indexChunk of the base the rounds have passed.
func (ix *index) fill(ctx context.Context, workers, n int, done func(lo, hi int), seeds func(bt *batch, lo, hi int)) {
	bts := make([]*batch, workers)
	round := max(ix.step, min(roundSeeds*ix.step, indexChunk)/ix.step*ix.step)
	share := (round/ix.step + workers - 1) / workers * ix.step
	for w := range bts {
		bts[w] = &batch{ix: ix, ents: make([]uint64, 0, share/ix.step)}
		if ix.check2 != nil {
			bts[w].c2 = make([]uint16, 0, share/ix.step)
		}
	}
	shift := uint(max(64-int(ix.shift)-partBits, 0)) // 64-shift bucket bits
	parts := len(ix.table) / ways >> shift
	var wg sync.WaitGroup
	doneTo := 0
	for lo := 0; lo < n; lo += round {
		if ctx.Err() != nil {
			return
		}
		hi := min(lo+round, n)
		for w, bt := range bts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer ix.guard.watch()()
				defer func() { ix.guard.caught(recover()) }()
				bt.ents, bt.c2 = bt.ents[:0], bt.c2[:0]
				seeds(bt, min(lo+w*share, hi), min(lo+(w+1)*share, hi))
				bt.sort(shift, parts)
			}()
		}
		wg.Wait()
		if ix.guard.Err() != nil {
			return // a worker faulted reading the base: its share is not sorted
		}
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for q := parts * w / workers; q < parts*(w+1)/workers; q++ {
					for _, bt := range bts {
						bt.write(q)
					}
				}
			}()
		}
		wg.Wait()
		for ; done != nil && doneTo+indexChunk <= hi; doneTo += indexChunk {
			done(doneTo, doneTo+indexChunk)
		}
	}
}

// batch is one worker's share of a round's inserts.
type batch struct {
	ix        *index
	ents, tmp []uint64 // bucket<<32 | entry; tmp: sorted by partition
	c2, c2tmp []uint16 // the entries' check2, if the index has them
	start     []int    // partition q's entries are tmp[start[q]:start[q+1]]
}

// add queues base position p with seed v.
func (bt *batch) add(v uint64, p int) {
	ix := bt.ix
	h, check := hashSeed(v, ix.shift)
	bt.ents = append(bt.ents, uint64(h)<<32|uint64(uint32(p/ix.step+1)<<checkBits|check))
	if ix.check2 != nil {
		bt.c2 = append(bt.c2, hashCheck2(ix.base, p))
	}
}

// sort orders the queued entries by partition (bucket>>shift), keeping
// their order within each (a counting sort).
func (bt *batch) sort(shift uint, parts int) {
	if bt.start == nil {
		bt.start = make([]int, parts+1)
	}
	clear(bt.start)
	sh := shift + 32
	for _, e := range bt.ents {
		bt.start[e>>sh+1]++
	}
	for q := 1; q <= parts; q++ {
		bt.start[q] += bt.start[q-1]
	}
	if len(bt.tmp) < len(bt.ents) {
		bt.tmp = make([]uint64, cap(bt.ents))
		if bt.ix.check2 != nil {
			bt.c2tmp = make([]uint16, cap(bt.ents))
		}
	}
	next := append([]int(nil), bt.start[:parts]...)
	for k, e := range bt.ents {
		q := e >> sh
		bt.tmp[next[q]] = e
		if bt.c2tmp != nil {
			bt.c2tmp[next[q]] = bt.c2[k]
		}
		next[q]++
	}
}

// write inserts partition q's queued entries, newest first in each bucket.
func (bt *batch) write(q int) {
	ix := bt.ix
	for k := bt.start[q]; k < bt.start[q+1]; k++ {
		e := bt.tmp[k]
		h := int(e >> 32)
		bk := ix.table[h*ways : h*ways+ways : h*ways+ways]
		bk[3], bk[2], bk[1], bk[0] = bk[2], bk[1], bk[0], uint32(e)
		if bt.c2tmp != nil {
			c := ix.check2[h*ways : h*ways+ways : h*ways+ways]
			c[3], c[2], c[1], c[0] = c[2], c[1], c[0], bt.c2tmp[k]
		}
	}
}

// op is one control op: copy diffLen bytes from base at pos adding the diff
// stream, then extraLen literal bytes.
type op struct {
	pos      int
	diffLen  int
	extraLen int
}

// scanner finds ops for one window of the target.
type scanner struct {
	ix *index
	b  []byte
	// t holds the target from position t0 on: at least the window being
	// scanned (all of the target when t0 is 0). Positions are the target's.
	t   []byte
	t0  int
	we  int
	ops []op
	// align is the alignment of patched fields' result positions (1: none).
	align int
}

// matchFwd counts equal leading bytes of a and b.
func matchFwd(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if x := load64(a, i) ^ load64(b, i); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// matchBack counts equal trailing bytes of a and b.
func matchBack(a, b []byte) int {
	i, j := len(a), len(b)
	for i > 0 && j > 0 && a[i-1] == b[j-1] {
		i--
		j--
	}
	return len(a) - i
}

// probe looks up target position i and returns the best candidate: base
// position of the match start and the exact match's length, extended backward
// no further than lo.
func (s *scanner) probe(i, lo int) (bpos, tpos, n int) {
	if len(s.ix.table) == 0 || i+seedLen > s.we {
		return 0, 0, 0
	}
	v := load64(s.t, i-s.t0)
	h, check := hashSeed(v, s.ix.shift)
	c2 := -1 // check2 of the target at i, once needed
	for k, e := range s.ix.table[h*ways : h*ways+ways] {
		if e == 0 {
			break
		}
		if e&(1<<checkBits-1) != check {
			continue
		}
		if s.ix.check2 != nil {
			if c2 < 0 {
				if i+longSeed > s.we {
					break // too close to the window's end for a long match
				}
				c2 = int(hashCheck2(s.t, i-s.t0))
			}
			if int(s.ix.check2[h*ways+k]) != c2 {
				continue
			}
		}
		p := (int(e>>checkBits) - 1) * s.ix.step
		if load64(s.b, p) != v {
			continue
		}
		f := seedLen + matchFwd(s.t[i+seedLen-s.t0:s.we-s.t0], s.b[p+seedLen:])
		bk := matchBack(s.t[max(lo, i-p)-s.t0:i-s.t0], s.b[max(0, p-(i-lo)):p])
		if bk+f > n {
			bpos, tpos, n = p-bk, i-bk, bk+f
		}
	}
	return bpos, tpos, n
}

// score counts target bytes in [from, to) equal to the base under offset off.
func (s *scanner) score(from, to, off int) int {
	lo, hi := max(from, -off), min(to, len(s.b)-off)
	c := 0
	for k := lo; k < hi; k++ {
		if s.t[k-s.t0] == s.b[k+off] {
			c++
		}
	}
	return c
}

// scan fills s.ops for target window [ws, we).
func (s *scanner) scan(ws, we int) {
	s.we, s.ops = we, s.ops[:0]
	t, b := s.t[:we-s.t0], s.b
	t0 := s.t0
	last, off, have := ws, 0, false // region start and alignment of the current anchor
	runEnd := ws                    // end of the current alignment's last exact run of seedLen or more
	for i := ws; i < we; {
		if have {
			if j := i + off; j >= 0 && j < len(b) {
				if n := matchFwd(t[i-t0:], b[j:]); n > 0 {
					if n >= seedLen {
						// The current alignment matches again after a stretch
						// that it does not cover (an inserted or rewritten
						// part, such as a recompressed file): start a new
						// region here, or emit's extension from the old start
						// would stop at the stretch and lose this match.
						if start := i - matchBack(t[runEnd-t0:i-t0], b[max(0, runEnd+off):j]); start-runEnd >= minSwitch &&
							n+i-start >= minSwitch && 2*s.score(runEnd, start, off) < start-runEnd {
							last = s.emit(last, off, have, start, off)
						}
						runEnd = i + n
					}
					i += n
					continue
				}
			}
		}
		bpos, tpos, n := s.probe(i, last)
		if n >= minSwitch {
			noff := bpos - tpos
			if !have || n > s.score(tpos, tpos+n, off)+margin {
				last = s.emit(last, off, have, tpos, noff)
				off, have = noff, true
				i = tpos + n
				runEnd = i
				continue
			}
		}
		// Probe every byte, also in data that matches nothing (new or
		// compressed content): short matches there, such as the headers
		// that compressed blocks share, pay for their op. Skipping ahead
		// like LZ4's acceleration made squashfs deltas larger.
		i++
	}
	s.emit(last, off, have, we, 0)
}

// emit closes the region [last, next) that the anchor with offset off (if
// have) starts, given that the next anchor starts at next with offset noff.
// Like bsdiff it extends the old alignment forward and the new one backward
// while more than half the bytes agree; whatever lies between is literal.
// It returns where the next anchor's region starts.
func (s *scanner) emit(last, off int, have bool, next, noff int) int {
	t, b, t0 := s.t, s.b, s.t0
	lenf := 0
	if have {
		sc, best := 0, 0
		for k := 0; last+k < next && last+k+off < len(b); {
			if t[last+k-t0] == b[last+k+off] {
				sc++
			}
			k++
			if v, top := extendNum*sc-extendDen*k, extendNum*best-extendDen*lenf; v > top {
				best, lenf = sc, k
			} else if v < top-xDrop {
				break
			}
		}
	}
	lenb := 0
	if next < s.we {
		sc, best := 0, 0
		for k := 1; next-k >= last && next-k+noff >= 0; k++ {
			if t[next-k-t0] == b[next-k+noff] {
				sc++
			}
			if v, top := extendNum*sc-extendDen*k, extendNum*best-extendDen*lenb; v > top {
				best, lenb = sc, k
			} else if v < top-xDrop {
				break
			}
		}
	}
	if over := last + lenf - (next - lenb); over > 0 {
		// Split the overlap where the forward alignment stops winning.
		sc, best, split := 0, 0, 0
		for k := range over {
			p := last + lenf - over + k
			if t[p-t0] == b[p+off] {
				sc++
			}
			if t[p-t0] == b[p+noff] {
				sc--
			}
			if sc > best {
				best, split = sc, k+1
			}
		}
		lenf += split - over
		lenb -= split
	}
	extra := next - lenb - (last + lenf)
	if lenf > 0 || extra > 0 {
		pos := 0
		if have {
			pos = last + off
		}
		if lenf == 0 && len(s.ops) > 0 {
			prev := &s.ops[len(s.ops)-1]
			pos = prev.pos + prev.diffLen
		}
		s.ops = append(s.ops, op{pos: pos, diffLen: lenf, extraLen: extra})
	}
	return next - lenb
}
