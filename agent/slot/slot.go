// Package slot owns writing firmware into an A/B slot (a file or a block
// device): streaming writes, fsync, dropping the page cache and reading the
// slot back to verify it. It never decides which slot to write; the caller
// must pass the inactive one.
package slot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrVerify means the slot does not hold the expected bytes after writing.
var ErrVerify = errors.New("slot read-back verification failed")

// Slot is one A/B slot.
type Slot struct {
	Name string
	Path string
}

// Capacity returns how many bytes the slot can hold: a block device's
// size, or for a file slot its current size plus the free space of its
// filesystem. It returns -1 when it cannot tell (a character device): then
// only the write finds out. It reads, never writes.
func (s Slot) Capacity() (int64, error) {
	fi, err := os.Stat(s.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return freeSpace(filepath.Dir(s.Path), 0)
	case err != nil:
		return 0, fmt.Errorf("slot %s: %w", s.Name, err)
	case fi.Mode().IsRegular():
		return freeSpace(filepath.Dir(s.Path), fi.Size())
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		f, err := os.Open(s.Path)
		if err != nil {
			return 0, fmt.Errorf("slot %s: %w", s.Name, err)
		}
		defer f.Close()
		n, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("slot %s: size of %s: %w", s.Name, s.Path, err)
		}
		return n, nil
	}
	return -1, nil
}

func freeSpace(dir string, have int64) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return -1, nil // unknown: let the write find out
	}
	return have + int64(st.Bavail)*int64(st.Bsize), nil
}

// Writer streams an image into a slot.
type Writer struct {
	f       *os.File
	n       int64
	regular bool
}

// Create opens the slot for writing from its start. A file slot is created
// if missing; a block device must exist.
func (s Slot) Create() (*Writer, error) {
	fi, err := os.Stat(s.Path)
	regular := err != nil || fi.Mode().IsRegular()
	flags := os.O_WRONLY
	if regular {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(s.Path, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open slot %s (%s): %w", s.Name, s.Path, err)
	}
	return &Writer{f: f, regular: regular}, nil
}

// Resume opens the slot for writing at offset, keeping the bytes before it
// (an interrupted install continues where its last checkpoint was).
func (s Slot) Resume(offset int64) (*Writer, error) {
	w, err := s.Create()
	if err != nil {
		return nil, err
	}
	if _, err := w.f.Seek(offset, io.SeekStart); err != nil {
		w.f.Close()
		return nil, fmt.Errorf("seek slot %s to %d: %w", s.Name, offset, err)
	}
	w.n = offset
	return w, nil
}

// Offset returns how many bytes of the image the writer holds.
func (w *Writer) Offset() int64 { return w.n }

// Sync makes everything written so far durable.
func (w *Writer) Sync() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync slot: %w", err)
	}
	return nil
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

// Commit ends the write: it trims a file slot to the bytes written, fsyncs
// and drops the slot's pages from the cache so a read-back sees the medium.
func (w *Writer) Commit() error {
	defer w.f.Close()
	if w.regular {
		if err := w.f.Truncate(w.n); err != nil {
			return fmt.Errorf("truncate slot: %w", err)
		}
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync slot: %w", err)
	}
	_ = unix.Fadvise(int(w.f.Fd()), 0, 0, unix.FADV_DONTNEED)
	return nil
}

// Abort closes the writer without committing.
func (w *Writer) Abort() { w.f.Close() }

// Verify reads the first length bytes of the slot back and checks their
// SHA-256 (hex) against want.
func (s Slot) Verify(length int64, want string) error {
	got, n, err := s.Hash(length)
	if err != nil {
		return err
	}
	if n != length || got != want {
		return fmt.Errorf("%w: slot %s holds %d bytes with sha256 %s, want %d bytes with %s", ErrVerify, s.Name, n, got, length, want)
	}
	return nil
}

// HashInto feeds the slot's first length bytes to h.
func (s Slot) HashInto(h io.Writer, length int64) error {
	f, err := os.Open(s.Path)
	if err != nil {
		return fmt.Errorf("read slot %s: %w", s.Name, err)
	}
	defer f.Close()
	n, err := io.Copy(h, io.LimitReader(f, length))
	if err == nil && n != length {
		err = fmt.Errorf("slot %s holds %d bytes, want at least %d", s.Name, n, length)
	}
	return err
}

// Hash returns the SHA-256 of the slot's first length bytes (the whole slot
// when length < 0) and how many bytes it read.
func (s Slot) Hash(length int64) (string, int64, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return "", 0, fmt.Errorf("read slot %s: %w", s.Name, err)
	}
	defer f.Close()
	var r io.Reader = f
	if length >= 0 {
		r = io.LimitReader(f, length)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, fmt.Errorf("read slot %s: %w", s.Name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
