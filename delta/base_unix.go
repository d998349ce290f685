//go:build unix

package delta

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func mapFile(f *os.File, n int64) ([]byte, error) {
	// A mapping past the file's end would fault (SIGBUS) when read.
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() < n || int64(int(n)) != n {
		return nil, unix.EINVAL
	}
	return unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
}

func unmapFile(b []byte) { unix.Munmap(b) }

// dropPages unmaps b's pages from the process; b stays valid and its pages
// fault back in from the page cache (a read-only file mapping).
func dropPages(b []byte) { unix.Madvise(b, unix.MADV_DONTNEED) }

// allocTable returns n zeroed bytes outside the Go heap, on huge pages
// where the kernel gives them, and frees them with free; below 8 MiB, or
// if that fails, bytes on the Go heap and a nil free. A 32 MiB index
// table on 4 KiB pages took 8,192 page faults, a tenth of a small image's
// encode time.
func allocTable(n int) (mem []byte, free func()) {
	const huge = 2 << 20
	if n < 4*huge {
		return make([]byte, n), nil
	}
	m, err := unix.Mmap(-1, 0, n+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return make([]byte, n), nil
	}
	// Huge pages need a 2 MiB aligned start.
	off := int(-uintptr(unsafe.Pointer(&m[0])) & (huge - 1))
	mem = m[off : off+n : off+n]
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE) // a hint; 4 KiB pages otherwise
	return mem, func() { unix.Munmap(m) }
}
