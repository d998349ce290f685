// Package logwrites reads the block-level write log that QEMU's
// blklogwrites driver records (the format of Linux's dm-log-writes) and
// rebuilds disk images from it: the disk as it was at any point of the
// stream, with any subset of the writes that were still unflushed there.
// test/vm uses it to boot every crash state an update can leave behind.
//
// The log is treated as untrusted input: every length is checked against
// the file before it is used, and a damaged log is an error, never a panic.
//
// Format (all fields little-endian): sector 0 holds the superblock
// (magic, version 1, entry count, sector size). Entries follow from
// sector 1: one sector with the entry header (sector, sector count, flags,
// data length), then, unless the entry is a discard, the written data,
// sector count × sector size bytes. QEMU rewrites the superblock's entry
// count at each flush, so entries after the last flush are in the file
// but beyond the count: Parse returns them as the Tail.
package logwrites

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Magic and Version identify a dm-log-writes log.
const (
	Magic   = 0x6a736677736872
	Version = 1
)

// Entry flags.
const (
	FlagFlush   = 1 << 0
	FlagFUA     = 1 << 1
	FlagDiscard = 1 << 2
	FlagMark    = 1 << 3
	flagMask    = FlagFlush | FlagFUA | FlagDiscard | FlagMark
)

// ErrFormat is wrapped by every error about a malformed log.
var ErrFormat = errors.New("not a valid write log")

// maxSectorSize bounds the sector size a log may claim (QEMU's own limit).
const maxSectorSize = 1 << 24

// Entry is one logged request.
type Entry struct {
	Sector  uint64 // first sector written, in units of the log's sector size
	Sectors uint64 // number of sectors
	Flags   uint64
	// Offset is where the entry's data starts in the log file (0 for
	// entries without data).
	Offset int64
}

// Flush reports whether the entry is a flush (the device's cache reached
// stable storage: every earlier write is durable).
func (e Entry) Flush() bool { return e.Flags&FlagFlush != 0 }

// Discard reports whether the entry discards its sectors (no data).
func (e Entry) Discard() bool { return e.Flags&FlagDiscard != 0 }

// Write reports whether the entry carries data to write.
func (e Entry) Write() bool { return e.Sectors > 0 && !e.Discard() && e.Flags&FlagMark == 0 }

// Log is a parsed write log. Its data stays in the file: Apply reads it.
type Log struct {
	SectorSize uint32
	// Entries are the ones the superblock counts (up to the last flush
	// QEMU recorded); Tail are the well-formed entries after them.
	Entries, Tail []Entry
	r             io.ReaderAt
}

// All returns Entries followed by Tail: the whole recorded stream.
func (l *Log) All() []Entry { return append(append([]Entry(nil), l.Entries...), l.Tail...) }

// Open parses the log file at path. The file must stay open while the
// log is used; close it with the returned closer.
func Open(path string) (*Log, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	l, err := Parse(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, f, nil
}

// Parse reads the log's superblock and entry headers from r, size bytes.
func Parse(r io.ReaderAt, size int64) (*Log, error) {
	var sb [28]byte
	if _, err := r.ReadAt(sb[:], 0); err != nil {
		return nil, fmt.Errorf("%w: superblock: %v", ErrFormat, err)
	}
	if m := binary.LittleEndian.Uint64(sb[0:]); m != Magic {
		return nil, fmt.Errorf("%w: magic %#x, want %#x", ErrFormat, m, uint64(Magic))
	}
	if v := binary.LittleEndian.Uint64(sb[8:]); v != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrFormat, v, Version)
	}
	count := binary.LittleEndian.Uint64(sb[16:])
	ss := binary.LittleEndian.Uint32(sb[24:])
	if ss < 32 || ss > maxSectorSize || ss&(ss-1) != 0 {
		return nil, fmt.Errorf("%w: sector size %d is not a power of two between 32 and %d", ErrFormat, ss, maxSectorSize)
	}
	l := &Log{SectorSize: ss, r: r}
	sector := uint64(1)
	total := uint64(size) / uint64(ss) // whole sectors in the file
	var hdr [32]byte
	for i := uint64(0); ; i++ {
		if sector >= total {
			if i < count {
				return nil, fmt.Errorf("%w: superblock counts %d entries, the file ends after %d", ErrFormat, count, i)
			}
			return l, nil
		}
		if _, err := r.ReadAt(hdr[:], int64(sector*uint64(ss))); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrFormat, i, err)
		}
		e := Entry{
			Sector:  binary.LittleEndian.Uint64(hdr[0:]),
			Sectors: binary.LittleEndian.Uint64(hdr[8:]),
			Flags:   binary.LittleEndian.Uint64(hdr[16:]),
		}
		dataLen := binary.LittleEndian.Uint64(hdr[24:])
		bad := ""
		switch {
		case e.Flags&^flagMask != 0:
			bad = fmt.Sprintf("flags %#x", e.Flags)
		case dataLen != 0:
			bad = fmt.Sprintf("data length %d (marks are not supported)", dataLen)
		case e.Sectors > total || e.Sector > 1<<48:
			bad = fmt.Sprintf("%d sectors at sector %d", e.Sectors, e.Sector)
		}
		next := sector + 1
		if bad == "" && !e.Discard() {
			if e.Sectors > total-next {
				bad = fmt.Sprintf("%d data sectors run past the end of the file", e.Sectors)
			} else if e.Sectors > 0 {
				e.Offset = int64(next * uint64(ss))
				next += e.Sectors
			}
		}
		if bad != "" {
			if i < count {
				return nil, fmt.Errorf("%w: entry %d at sector %d: %s", ErrFormat, i, sector, bad)
			}
			return l, nil // the tail ends at the first entry that does not parse
		}
		if i < count {
			l.Entries = append(l.Entries, e)
		} else {
			if e.Flags == 0 && e.Sectors == 0 && e.Sector == 0 {
				return l, nil // zeroes: never written
			}
			l.Tail = append(l.Tail, e)
		}
		sector = next
	}
}

// Apply writes entry e's data (or, for a discard, nothing: a discarded
// range may read back as anything, and keeping the old bytes is one
// such thing) into the disk image w. With mask non-nil, only the sectors
// i (0-based within the entry) with mask(i) true are written: a write the
// device had only partly made durable.
func (l *Log) Apply(w io.WriterAt, e Entry, mask func(i uint64) bool) error {
	if !e.Write() {
		return nil
	}
	ss := uint64(l.SectorSize)
	buf := make([]byte, ss)
	for i := uint64(0); i < e.Sectors; i++ {
		if mask != nil && !mask(i) {
			continue
		}
		if _, err := l.r.ReadAt(buf, e.Offset+int64(i*ss)); err != nil {
			return fmt.Errorf("reading entry data: %w", err)
		}
		if _, err := w.WriteAt(buf, int64((e.Sector+i)*ss)); err != nil {
			return fmt.Errorf("writing sector %d: %w", e.Sector+i, err)
		}
	}
	return nil
}

// Epochs splits entries at flushes: epoch k holds the requests after the
// k-th flush up to and including the next flush. Every write of epochs
// before k is durable once epoch k starts; the writes of epoch k may have
// reached the medium in any subset until its closing flush completes.
func Epochs(entries []Entry) [][]Entry {
	var out [][]Entry
	var cur []Entry
	for _, e := range entries {
		cur = append(cur, e)
		if e.Flush() {
			out = append(out, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
