//go:build unix

package delta

import (
	"os"

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
