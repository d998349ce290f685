//go:build unix

package blob

import (
	"os"

	"golang.org/x/sys/unix"
)

// flock takes an exclusive advisory lock on f, released when f is closed.
func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}
