package zstdref_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/fwctl/fwctl/delta"
	"github.com/fwctl/fwctl/delta/zstdref"
)

// moved returns a code-like image and a version of it in which a few
// regions moved: every 4-byte "address" in them changed by the same small
// amount, which is what the field streams of a delta carry.
func moved(r *rand.Rand, n int) (base, target []byte) {
	base = make([]byte, n)
	for i := range base {
		base[i] = byte(r.IntN(16)) // low-entropy opcodes
	}
	target = bytes.Clone(base)
	shifts := []uint32{0x40, 0x1c0, 0x2000, 0x20}
	for at := 0; at+4 <= n; at += 12 + r.IntN(9) {
		d := shifts[(at/50_000)%len(shifts)]
		binary.LittleEndian.PutUint32(target[at:], binary.LittleEndian.Uint32(base[at:])+d)
	}
	return base, target
}

func encode(t *testing.T, base, target []byte, c delta.Compressor) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := delta.Encode(context.Background(), bytes.NewReader(base), int64(len(base)),
		bytes.NewReader(target), int64(len(target)), &buf, &delta.EncodeOptions{Compressor: c, BlockSize: 64 << 10})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}

func TestRoundTripAndSize(t *testing.T) {
	c := zstdref.Compressor()
	if c == nil {
		t.Skip("built without cgo: zstdref falls back to delta's built-in encoder")
	}
	r := rand.New(rand.NewPCG(1, 2))
	base, target := moved(r, 600_000)
	ref := encode(t, base, target, c)
	var out bytes.Buffer
	if _, err := delta.Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(ref), &out); err != nil {
		t.Fatalf("Apply of a delta compressed by libzstd: %v", err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("Apply rebuilt a different image")
	}
	builtin := encode(t, base, target, nil)
	if len(ref) > len(builtin) {
		t.Errorf("libzstd delta is %d bytes, larger than the built-in encoder's %d", len(ref), len(builtin))
	}
	t.Logf("libzstd %d bytes, built-in %d bytes", len(ref), len(builtin))
	if again := encode(t, base, target, c); !bytes.Equal(again, ref) {
		t.Error("two encodings of the same pair differ")
	}
}

func TestIncompressible(t *testing.T) {
	c := zstdref.Compressor()
	if c == nil {
		t.Skip("built without cgo")
	}
	r := rand.New(rand.NewPCG(3, 4))
	src := make([]byte, 100_000)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	frame := c.Compress(nil, src)
	if frame == nil {
		t.Fatal("Compress returned nil for ordinary input")
	}
	if got := c.Compress([]byte("prefix"), []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); !bytes.HasPrefix(got, []byte("prefix")) {
		t.Errorf("Compress did not append to dst: %q", got)
	}
}
