package server

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// watcher counts changes to one directory (inotify): a file renamed into
// it, written, created or removed bumps gen, so a cached file replaced in
// place is read again at once, without a stat per request.
type watcher struct {
	f   *os.File
	gen atomic.Uint64
}

func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	w := &watcher{f: os.NewFile(uintptr(fd), "inotify")}
	go func() {
		buf := make([]byte, 16<<10)
		for {
			if _, err := w.f.Read(buf); err != nil {
				return
			}
			// Any event, an overflow included: all cached files may have
			// changed.
			w.gen.Add(1)
		}
	}()
	return w, nil
}

// add watches dir (again, after it was replaced).
func (w *watcher) add(dir string) error {
	_, err := unix.InotifyAddWatch(int(w.f.Fd()), dir, unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_CLOSE_WRITE|
		unix.IN_CREATE|unix.IN_DELETE|unix.IN_ATTRIB|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF)
	w.gen.Add(1)
	return err
}
