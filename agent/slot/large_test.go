package slot

// Offsets and lengths above 4 GiB, on a sparse 5 GiB slot file. They matter
// on the 32-bit armv7 agent, where an int is 32 bits: scripts/cross-test.sh
// runs this file under qemu-arm-static in full (without -short).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	gib      = int64(1) << 30
	slotSize = 5 * gib // more than 2^32 bytes
)

// sparseSlot creates a slot file of size bytes that takes no space. It
// lives in /dev/shm where there is one: tmpfs reads a hole from the zero
// page (5 GiB in about a second), a disk file system fills page-cache
// pages with zeros (20 times slower).
func sparseSlot(t *testing.T, size int64) Slot {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "fwctl-slot-")
	if err != nil {
		dir = t.TempDir()
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	p := filepath.Join(dir, "slotB.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatalf("make a sparse %d-byte slot file: %v", size, err)
	}
	return Slot{Name: "B", Path: p}
}

// readAt returns n bytes of the slot at off.
func readAt(t *testing.T, s Slot, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %d bytes at %d: %v", n, off, err)
	}
	return b
}

// TestResumeAcross4GiB: an install that resumes just below 2^32 writes across
// it, and Commit trims the file to the full 64-bit length.
func TestResumeAcross4GiB(t *testing.T) {
	for _, start := range []int64{1<<32 - 100, 1 << 32, slotSize - 100} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			s := sparseSlot(t, slotSize)
			w, err := s.Resume(start)
			if err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte("0123456789"), 30)
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			end := start + int64(len(data))
			if got := w.Offset(); got != end {
				t.Fatalf("Offset after writing %d bytes at %d = %d, want %d", len(data), start, got, end)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != end {
				t.Fatalf("slot file is %d bytes after Commit, want %d (the image end)", fi.Size(), end)
			}
			if got := readAt(t, s, start, len(data)); !bytes.Equal(got, data) {
				t.Fatalf("bytes at %d are %q, want what was written there", start, got[:20])
			}
			if got := readAt(t, s, start-8, 8); !bytes.Equal(got, make([]byte, 8)) {
				t.Fatalf("bytes before the resume offset changed: %q", got)
			}
		})
	}
}

// counter is an io.Writer that only counts: hashing 5 GiB under qemu-arm
// would take minutes. Its ReadFrom reads in 8 MiB steps, so that reading
// 5 GiB of holes takes hundreds of system calls, not 160,000.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func (c *counter) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 8<<20)
	start := c.n
	for {
		n, err := r.Read(buf)
		c.n += int64(n)
		if err == io.EOF {
			return c.n - start, nil
		}
		if err != nil {
			return c.n - start, err
		}
	}
}

// TestHashIntoAbove4GiB: reading an image back feeds all 5 GiB of a slot
// to the hash, and a slot shorter than the length wanted says so in full
// 64-bit numbers (one pass: reading 5 GiB is the slow part).
func TestHashIntoAbove4GiB(t *testing.T) {
	s := sparseSlot(t, slotSize)
	var c counter
	err := s.HashInto(&c, slotSize+1)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("holds %d bytes, want at least %d", slotSize, slotSize+1)) {
		t.Fatalf("HashInto(%d) of a %d-byte slot = %v, want it to name both lengths", slotSize+1, slotSize, err)
	}
	if c.n != slotSize {
		t.Fatalf("HashInto fed %d bytes of a %d-byte slot to the hash", c.n, slotSize)
	}
}

// TestVerifyLengthAbove4GiB: a slot holding the right bytes for a length
// that differs from the wanted one only above bit 32 is a mismatch, not a
// match after truncation.
func TestVerifyLengthAbove4GiB(t *testing.T) {
	s := sparseSlot(t, 1000)
	sum, n, err := s.Hash(-1)
	if err != nil || n != 1000 {
		t.Fatalf("Hash(-1) read %d bytes, %v; want 1000", n, err)
	}
	if err := s.Verify(1000, sum); err != nil {
		t.Fatal(err)
	}
	const length = 1<<32 + 1000
	err = s.Verify(length, sum)
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), fmt.Sprintf("want %d bytes", int64(length))) {
		t.Fatalf("Verify(%d) of a 1000-byte slot with its hash = %v, want ErrVerify naming the length", int64(length), err)
	}
}
