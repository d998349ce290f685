package delta

import (
	"io"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
)

// The encoder needs random access to the whole base: every target block may
// copy from anywhere in it. Reading it into the heap made the encoder's
// memory grow with the base (a 2 GiB image needed over 2.3 GiB). Where the
// base is a file, it is mapped instead; the pages the matcher touches then
// count towards the process's resident set like heap pages do, so above
// residentBase the encoder drops them again (madvise MADV_DONTNEED, which
// for a read-only file mapping only unmaps them: they stay in the page
// cache and fault back in when a block needs them) whenever more than
// residentBudget of the file is resident.

const (
	// residentBase is the largest base that stays resident as a whole
	// (its pages are never dropped): below it the base costs at most its
	// size, as much as reading it into memory did.
	residentBase = 256 << 20
	// residentBudget is how much of a larger base may be resident before
	// the encoder drops its pages.
	residentBudget = 96 << 20
)

// baseImage is the base as the encoder reads it.
type baseImage struct {
	b      []byte
	mapped bool     // b is a file mapping (unmap when done)
	file   *os.File // the mapped file

	mu       sync.Mutex
	resident func() (int64, bool) // resident file-backed bytes of the process
	baseline int64                // resident file bytes before the base was touched
	blocks   int                  // blocks since the last drop, when resident is unknown
}

// afterMap, if set (by tests), is called with the base's file once it is
// mapped.
var afterMap func(*os.File)

// loadBase maps r if it is a file that can be mapped, else reads it.
func loadBase(r io.ReaderAt, n int64) (*baseImage, error) {
	if f, ok := r.(*os.File); ok && n > 0 {
		if b, err := mapFile(f, n); err == nil {
			if afterMap != nil {
				afterMap(f)
			}
			bi := &baseImage{b: b, mapped: true, file: f, resident: residentFile}
			bi.baseline, _ = residentFile()
			return bi, nil
		}
	}
	b, err := readAll(r, n)
	if err != nil {
		return nil, err
	}
	return &baseImage{b: b}, nil
}

func readAll(r io.ReaderAt, n int64) ([]byte, error) {
	buf := make([]byte, n)
	m, err := r.ReadAt(buf, 0)
	if int64(m) == n {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, err
}

// close unmaps the base; nothing may read it after.
func (bi *baseImage) close() {
	if bi.mapped {
		unmapFile(bi.b)
	}
	bi.b = nil
}

// blockDone is called after each block: above residentBase it drops the
// base's pages once more than residentBudget of it is resident. Where the
// resident size cannot be read, it drops them every residentBudget/(4 ×
// blockSize) blocks (a block touches about its own size of the base, a few
// times that when it copies from several places).
func (bi *baseImage) blockDone(blockSize int) {
	if !bi.mapped || len(bi.b) <= residentBase {
		return
	}
	bi.mu.Lock()
	defer bi.mu.Unlock()
	if n, ok := bi.resident(); ok {
		if n-bi.baseline <= residentBudget {
			return
		}
	} else if bi.blocks++; bi.blocks < max(1, residentBudget/(4*blockSize)) {
		return
	}
	bi.blocks = 0
	dropPages(bi.b)
}

// indexed is buildIndex's done: above residentBase, the part of the base
// an index worker has read is dropped at once (the index reads all of the
// base, the blocks mostly parts of it).
func (bi *baseImage) indexed(lo, hi int) {
	if bi.mapped && len(bi.b) > residentBase {
		dropPages(bi.b[lo:min(hi, len(bi.b))])
	}
}

// residentFile returns the process's resident file-backed bytes (Linux:
// the third field of /proc/self/statm, RssFile+RssShmem in pages).
func residentFile() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// The Go heap of an encode is its index, the converted copy of the base
// (up to 128 MiB) and, per worker, a zstd encoder's tables and a few
// blocks' sections; per-block garbage would add as much again under the
// default GOGC. Encode therefore sets a soft memory limit just above that
// while it runs, unless the program has set one (debug.SetMemoryLimit or
// GOMEMLIMIT): several Encodes at once add up their limits, and the last
// one to finish removes it.
var heapLimit struct {
	sync.Mutex
	users int
	sum   int64
	owned bool
}

// heapPerWorker is the heap allowance per encode worker: the pure-Go zstd
// encoder's tables and a few blocks' sections.
const heapPerWorker = 32 << 20

// limitHeap adds n bytes to the soft memory limit Encode sets, and returns
// the function that takes them off again.
func limitHeap(n int64) (undo func()) {
	l := &heapLimit
	l.Lock()
	defer l.Unlock()
	if l.users == 0 {
		if debug.SetMemoryLimit(-1) != math.MaxInt64 {
			return func() {} // the program's own limit
		}
		l.owned = true
	} else if !l.owned {
		return func() {}
	}
	l.users++
	l.sum += n
	debug.SetMemoryLimit(l.sum)
	return func() {
		l.Lock()
		defer l.Unlock()
		l.users--
		l.sum -= n
		if l.users == 0 {
			l.owned = false
			debug.SetMemoryLimit(math.MaxInt64)
		} else {
			debug.SetMemoryLimit(l.sum)
		}
	}
}
