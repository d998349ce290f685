//go:build unix

package repo

import (
	"os"
	"syscall"
)

// openNonBlocking opens path without waiting for a writer: a FIFO given
// as an image must be refused, not hang the open.
func openNonBlocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
