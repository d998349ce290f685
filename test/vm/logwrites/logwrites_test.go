package logwrites

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// memDisk is an io.WriterAt over a byte slice.
type memDisk []byte

func (m memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// buildLog encodes entries as QEMU does, with count in the superblock.
// Each write's data is its sector number's byte repeated.
func buildLog(ss int, count uint64, entries ...Entry) []byte {
	var b bytes.Buffer
	sb := make([]byte, ss)
	binary.LittleEndian.PutUint64(sb[0:], Magic)
	binary.LittleEndian.PutUint64(sb[8:], Version)
	binary.LittleEndian.PutUint64(sb[16:], count)
	binary.LittleEndian.PutUint32(sb[24:], uint32(ss))
	b.Write(sb)
	for _, e := range entries {
		h := make([]byte, ss)
		binary.LittleEndian.PutUint64(h[0:], e.Sector)
		binary.LittleEndian.PutUint64(h[8:], e.Sectors)
		binary.LittleEndian.PutUint64(h[16:], e.Flags)
		b.Write(h)
		if !e.Discard() {
			for i := uint64(0); i < e.Sectors; i++ {
				b.Write(bytes.Repeat([]byte{byte(e.Sector + i)}, ss))
			}
		}
	}
	return b.Bytes()
}

func TestParseAndApply(t *testing.T) {
	raw := buildLog(512, 3,
		Entry{Sector: 2, Sectors: 2},
		Entry{Sector: 1, Sectors: 3, Flags: FlagDiscard},
		Entry{Flags: FlagFlush},
		Entry{Sector: 5, Sectors: 1}, // after the last flush: the tail
	)
	l, err := Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 3 || len(l.Tail) != 1 || l.SectorSize != 512 {
		t.Fatalf("entries %d, tail %d, sector size %d; want 3, 1, 512", len(l.Entries), len(l.Tail), l.SectorSize)
	}
	if ep := Epochs(l.All()); len(ep) != 2 || len(ep[0]) != 3 || len(ep[1]) != 1 {
		t.Fatalf("epochs %v", ep)
	}
	disk := make(memDisk, 8*512)
	for _, e := range l.All() {
		if err := l.Apply(disk, e, nil); err != nil {
			t.Fatal(err)
		}
	}
	for s, want := range []byte{0, 0, 2, 3, 0, 5, 0, 0} {
		if disk[s*512] != want || disk[s*512+511] != want {
			t.Errorf("sector %d holds %d, want %d", s, disk[s*512], want)
		}
	}
	// a partial write: only the entry's second sector
	disk = make(memDisk, 8*512)
	if err := l.Apply(disk, l.Entries[0], func(i uint64) bool { return i == 1 }); err != nil {
		t.Fatal(err)
	}
	if disk[2*512] != 0 || disk[3*512] != 3 {
		t.Errorf("partial write: sectors 2, 3 hold %d, %d; want 0, 3", disk[2*512], disk[3*512])
	}
}

func TestParseRejects(t *testing.T) {
	good := buildLog(512, 1, Entry{Sector: 0, Sectors: 1})
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }},
		{"version", func(b []byte) []byte { b[8] = 2; return b }},
		{"sector size", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[24:], 1000); return b }},
		{"short", func(b []byte) []byte { return b[:600] }},
		{"flags", func(b []byte) []byte { b[512+16] = 0x80; return b }},
		{"count", func(b []byte) []byte { b[16] = 9; return b }},
		{"too many sectors", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[512+8:], 1<<40); return b }},
		{"empty", func([]byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.edit(bytes.Clone(good))
			if _, err := Parse(bytes.NewReader(raw), int64(len(raw))); !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse: %v, want ErrFormat", err)
			}
		})
	}
}

// TestGolden parses a log recorded by QEMU 7.2's blklogwrites: the first
// 18 requests of a test/vm machine's boot (GRUB's save_env, e2fsck, the
// journal), cut after a flush. It is the format as the real producer
// writes it.
func TestGolden(t *testing.T) {
	l, c, err := Open(filepath.Join("testdata", "qemu72.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flushes, writes, sectors := 0, 0, uint64(0)
	for _, e := range l.Entries {
		switch {
		case e.Flush():
			flushes++
		case e.Write():
			writes++
			sectors += e.Sectors
		}
	}
	got := fmt.Sprintf("sector size %d, %d entries, %d tail, %d flushes, %d writes of %d sectors, last is flush %v",
		l.SectorSize, len(l.Entries), len(l.Tail), flushes, writes, sectors, l.Entries[len(l.Entries)-1].Flush())
	if want := "sector size 512, 18 entries, 0 tail, 6 flushes, 12 writes of 146 sectors, last is flush true"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(buildLog(512, 2, Entry{Sector: 1, Sectors: 2}, Entry{Flags: FlagFlush}, Entry{Sector: 3, Sectors: 1}))
	f.Add(buildLog(64, 1, Entry{Sector: 9, Sectors: 4, Flags: FlagDiscard}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		l, err := Parse(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			return
		}
		disk := make(memDisk, 1<<16)
		for _, e := range l.All() {
			if e.Write() && (e.Sector+e.Sectors)*uint64(l.SectorSize) > uint64(len(disk)) {
				continue
			}
			if err := l.Apply(disk, e, nil); err != nil {
				t.Fatalf("Apply of a parsed entry failed: %v", err)
			}
		}
	})
}
