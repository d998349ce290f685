package director

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path"
	"strconv"

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

// relDir creates, renames and removes files by paths relative to one open
// directory, with plain system calls: a wave makes ~15 calls per device
// instead of ~30 (os.CreateTemp and os.MkdirAll stat, fcntl, register
// with the poller and chmod), and the kernel walks two path components
// instead of the store's whole path.
type relDir struct {
	fd    int
	chmod bool // the umask would narrow 0644: fchmod each file
}

func openRel(dir string) (*relDir, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &relDir{fd: fd, chmod: umaskNarrows()}, nil
}

func (r *relDir) close() { unix.Close(r.fd) }

// mkdir makes directory rel; one that exists is fine.
func (r *relDir) mkdir(rel string) error {
	if err := unix.Mkdirat(r.fd, rel, 0o755); err != nil && err != unix.EEXIST {
		return &os.PathError{Op: "mkdir", Path: rel, Err: err}
	}
	return nil
}

// create writes data to a new temp file beside rel (".BASE.tmpN", mode
// 0644, no fsync) and returns the temp file's relative path. A missing
// directory is os.ErrNotExist.
func (r *relDir) create(rel string, data []byte) (string, error) {
	dir, base := path.Split(rel)
	for range 100 {
		tmp := dir + "." + base + ".tmp" + strconv.FormatUint(uint64(rand.Uint32()), 10)
		fd, err := unix.Openat(r.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return "", &os.PathError{Op: "create", Path: tmp, Err: err}
		}
		err = writeAll(fd, data)
		if err == nil && r.chmod {
			err = unix.Fchmod(fd, 0o644)
		}
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		if err != nil {
			unix.Unlinkat(r.fd, tmp, 0)
			return "", &os.PathError{Op: "write", Path: tmp, Err: err}
		}
		return tmp, nil
	}
	return "", &os.PathError{Op: "create", Path: rel, Err: os.ErrExist}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (r *relDir) rename(from, to string) error {
	if err := unix.Renameat(r.fd, from, r.fd, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

func (r *relDir) remove(rel string) { unix.Unlinkat(r.fd, rel, 0) }

// umaskNarrows reports whether the process's umask would take a bit of
// 0644 away (read at each wave: another part of the process may change it).
func umaskNarrows() bool {
	// Linux 4.7+ shows the umask in /proc/self/status; without it, chmod.
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Umask:")); ok {
			m, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
			return err != nil || m&0o644 != 0
		}
	}
	return true
}
