package director

import (
	"os"

	"golang.org/x/sys/unix"
)

const canSync = true

// syncAll flushes the file system holding dir (syncfs(2)).
func syncAll(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
