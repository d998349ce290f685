package powerloss

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// watcher reports changes to files in a few directories (inotify), so a
// kill can follow an event within a fraction of a millisecond.
type watcher struct {
	f    *os.File
	dirs map[int32]string
	once sync.Once
	// envSaves counts environment writes seen; only the until
	// callback touches it.
	envSaves int
}

// event is one inotify event: the file's path and the IN_* mask.
type event struct {
	path string
	mask uint32
}

func newWatcher(dirs ...string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &watcher{dirs: map[int32]string{}}
	for _, d := range dirs {
		wd, err := unix.InotifyAddWatch(fd, d, unix.IN_MODIFY|unix.IN_MOVED_TO)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		w.dirs[int32(wd)] = d
	}
	// A non-blocking descriptor wrapped in os.File uses the runtime poller,
	// so close wakes a pending read.
	w.f = os.NewFile(uintptr(fd), "inotify")
	return w, nil
}

// until calls fn for each event until fn returns true or the watcher is
// closed.
func (w *watcher) until(fn func(event) bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
			wd := int32(binary.NativeEndian.Uint32(b[0:]))
			mask := binary.NativeEndian.Uint32(b[4:])
			l := int(binary.NativeEndian.Uint32(b[12:]))
			name := b[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+l]
			name = name[:max(0, bytes.IndexByte(append(name, 0), 0))]
			b = b[unix.SizeofInotifyEvent+l:]
			if fn(event{path: filepath.Join(w.dirs[wd], string(name)), mask: mask}) {
				return
			}
		}
	}
}

func (w *watcher) close() { w.once.Do(func() { w.f.Close() }) }
