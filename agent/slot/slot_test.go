package slot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// write streams img into s (in uneven pieces) and commits.
func write(t *testing.T, s Slot, img []byte) {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	for p := img; len(p) > 0; {
		n := min(len(p), 1000)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if w.Offset() != int64(len(img)) {
		t.Fatalf("Offset() = %d after writing %d bytes", w.Offset(), len(img))
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteCommitVerify(t *testing.T) {
	img := bytes.Repeat([]byte("firmware"), 4096)
	tests := []struct {
		name  string
		prior []byte // slot contents before the write; nil: no file
	}{
		{"missing file is created", nil},
		{"empty file", []byte{}},
		{"longer old image is trimmed", bytes.Repeat([]byte{0xaa}, 3*len(img))},
		{"shorter old image", []byte("factory image")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Slot{Name: "B", Path: filepath.Join(t.TempDir(), "slotB.img")}
			if tt.prior != nil {
				if err := os.WriteFile(s.Path, tt.prior, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(t, s, img)
			got, err := os.ReadFile(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img) {
				t.Fatalf("slot holds %d bytes, want exactly the %d-byte image", len(got), len(img))
			}
			if err := s.Verify(int64(len(img)), sum(img)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyFails(t *testing.T) {
	img := bytes.Repeat([]byte{1, 2, 3}, 10000)
	tests := []struct {
		name   string
		slot   []byte
		length int64
		sha    string
	}{
		{"flipped byte", func() []byte { b := bytes.Clone(img); b[len(b)/2] ^= 1; return b }(), int64(len(img)), sum(img)},
		{"short slot", img[:len(img)-1], int64(len(img)), sum(img)},
		{"wrong hash", img, int64(len(img)), sum([]byte("other"))},
		{"empty slot", nil, int64(len(img)), sum(img)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Slot{Name: "A", Path: filepath.Join(t.TempDir(), "slot")}
			if err := os.WriteFile(s.Path, tt.slot, 0o644); err != nil {
				t.Fatal(err)
			}
			err := s.Verify(tt.length, tt.sha)
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("Verify = %v, want ErrVerify", err)
			}
			if !strings.Contains(err.Error(), "slot A") {
				t.Errorf("error %q does not name the slot", err)
			}
		})
	}
}

func TestVerifyMissingSlot(t *testing.T) {
	s := Slot{Name: "B", Path: filepath.Join(t.TempDir(), "nope")}
	if err := s.Verify(1, sum([]byte{0})); err == nil || !strings.Contains(err.Error(), "slot B") {
		t.Fatalf("Verify on a missing slot = %v, want an error naming slot B", err)
	}
}

// An interrupted install resumes at its checkpoint: the bytes before it
// stay, the rest is written again, and the result verifies.
func TestResumeKeepsPrefix(t *testing.T) {
	img := make([]byte, 100_000)
	for i := range img {
		img[i] = byte(i * 7)
	}
	s := Slot{Name: "B", Path: filepath.Join(t.TempDir(), "slotB.img")}
	const checkpoint = 40_000
	// The first attempt got past the checkpoint, then died mid-write: the
	// bytes after the checkpoint are garbage.
	torn := bytes.Clone(img[:70_000])
	for i := checkpoint; i < len(torn); i++ {
		torn[i] = 0xee
	}
	if err := os.WriteFile(s.Path, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if err := s.HashInto(h, checkpoint); err != nil {
		t.Fatal(err)
	}
	w, err := s.Resume(checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if w.Offset() != checkpoint {
		t.Fatalf("Offset() = %d after Resume(%d)", w.Offset(), checkpoint)
	}
	if _, err := w.Write(img[checkpoint:]); err != nil {
		t.Fatal(err)
	}
	h.Write(img[checkpoint:])
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum(img) {
		t.Fatalf("running hash after resume %s, want %s", got, sum(img))
	}
	if err := s.Verify(int64(len(img)), sum(img)); err != nil {
		t.Fatal(err)
	}
}

func TestHashIntoShortSlot(t *testing.T) {
	s := Slot{Name: "A", Path: filepath.Join(t.TempDir(), "slot")}
	os.WriteFile(s.Path, []byte("12345"), 0o644)
	if err := s.HashInto(sha256.New(), 6); err == nil {
		t.Fatal("HashInto past the end of the slot succeeded; a resume would hash a short prefix")
	}
}

func TestHash(t *testing.T) {
	s := Slot{Name: "A", Path: filepath.Join(t.TempDir(), "slot")}
	data := []byte("0123456789")
	os.WriteFile(s.Path, data, 0o644)
	tests := []struct {
		length int64
		want   string
		n      int64
	}{
		{-1, sum(data), 10},
		{4, sum(data[:4]), 4},
		{0, sum(nil), 0},
		{20, sum(data), 10}, // Hash reports the short read; Verify fails on it
	}
	for _, tt := range tests {
		got, n, err := s.Hash(tt.length)
		if err != nil || got != tt.want || n != tt.n {
			t.Errorf("Hash(%d) = %s, %d, %v; want %s, %d", tt.length, got, n, err, tt.want, tt.n)
		}
	}
}

func TestAbortLeavesSlotUnverified(t *testing.T) {
	s := Slot{Name: "B", Path: filepath.Join(t.TempDir(), "slotB.img")}
	img := bytes.Repeat([]byte{9}, 5000)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(img[:1000])
	w.Abort()
	if err := s.Verify(int64(len(img)), sum(img)); !errors.Is(err, ErrVerify) {
		t.Fatalf("Verify after Abort = %v, want ErrVerify", err)
	}
}

func TestCreateInMissingDirectory(t *testing.T) {
	s := Slot{Name: "B", Path: filepath.Join(t.TempDir(), "no", "such", "dir", "slot")}
	if _, err := s.Create(); err == nil || !strings.Contains(err.Error(), "slot B") {
		t.Fatalf("Create = %v, want an error naming slot B", err)
	}
}
