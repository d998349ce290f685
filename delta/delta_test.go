package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
)

func encode(t testing.TB, base, target []byte, opts *EncodeOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := Encode(context.Background(), bytes.NewReader(base), int64(len(base)),
		bytes.NewReader(target), int64(len(target)), &buf, opts)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}

func apply(base, d []byte) ([]byte, Header, error) {
	var out bytes.Buffer
	h, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), &out)
	return out.Bytes(), h, err
}

func roundTrip(t *testing.T, base, target []byte, opts *EncodeOptions) []byte {
	t.Helper()
	d := encode(t, base, target, opts)
	got, h, err := apply(base, d)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(got, target) {
		t.Fatalf("Apply rebuilt %d bytes that differ from the %d-byte target", len(got), len(target))
	}
	if h.BaseSHA256 != sha256.Sum256(base) || h.ResultSHA256 != sha256.Sum256(target) ||
		h.BaseLen != int64(len(base)) || h.ResultLen != int64(len(target)) {
		t.Fatalf("header %v does not describe the inputs", h)
	}
	return d
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fakeExecutable returns code-like bytes: random "instructions" with 4-byte
// little-endian absolute addresses into the image every few bytes.
func fakeExecutable(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, randBytes(r, 2+r.IntN(12))...)
		b = binary.LittleEndian.AppendUint32(b, uint32(r.IntN(n)))
	}
	return b[:n]
}

// relink inserts ins at off and moves every address past off by len(ins),
// as a linker does when code grows.
func relink(b []byte, off int, ins []byte) []byte {
	out := append(append(append([]byte{}, b[:off]...), ins...), b[off:]...)
	for i := 0; i+4 <= len(out); i++ {
		if (i < off || i >= off+len(ins)) && i%7 == 3 {
			a := binary.LittleEndian.Uint32(out[i:])
			if int(a) > off && int(a) < len(b) {
				binary.LittleEndian.PutUint32(out[i:], a+uint32(len(ins)))
			}
		}
	}
	return out
}

func mutate(r *rand.Rand, b []byte, edits int) []byte {
	out := append([]byte{}, b...)
	for range edits {
		if len(out) == 0 {
			out = append(out, randBytes(r, 1+r.IntN(100))...)
			continue
		}
		p := r.IntN(len(out))
		switch r.IntN(4) {
		case 0: // overwrite
			n := min(1+r.IntN(64), len(out)-p)
			copy(out[p:], randBytes(r, n))
		case 1: // insert
			out = append(out[:p], append(randBytes(r, 1+r.IntN(300)), out[p:]...)...)
		case 2: // delete
			n := min(1+r.IntN(300), len(out)-p)
			out = append(out[:p], out[p+n:]...)
		case 3: // move a chunk
			n := min(1+r.IntN(4096), len(out)-p)
			chunk := append([]byte{}, out[p:p+n]...)
			out = append(out[:p], out[p+n:]...)
			q := r.IntN(len(out) + 1)
			out = append(out[:q], append(chunk, out[q:]...)...)
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	exe := fakeExecutable(r, 300_000)
	rnd := randBytes(r, 100_000)
	zeros := make([]byte, 200_000)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 3000)
	cases := []struct {
		name         string
		base, target []byte
	}{
		{"empty", nil, nil},
		{"empty base", nil, rnd[:1000]},
		{"empty target", rnd[:1000], nil},
		{"one byte", []byte{1}, []byte{2}},
		{"tiny", []byte("abc"), []byte("abcd")},
		{"seed length", rnd[:8], rnd[:8]},
		{"identical", rnd, rnd},
		{"unrelated", rnd, randBytes(r, 120_000)},
		{"zeros", zeros, zeros[:150_000]},
		{"zeros to data", zeros, rnd},
		{"text edits", text, mutate(r, text, 20)},
		{"shifted", rnd, append(randBytes(r, 999), rnd...)},
		{"inserted", rnd, append(append(append([]byte{}, rnd[:50_000]...), randBytes(r, 5000)...), rnd[50_000:]...)},
		{"truncated", rnd, rnd[:77_777]},
		{"relinked executable", exe, relink(exe, 100_000, randBytes(r, 3000))},
		{"mutated executable", exe, mutate(r, relink(exe, 200_000, randBytes(r, 100)), 50)},
		{"reversed blocks", rnd, append(append([]byte{}, rnd[60_000:]...), rnd[:60_000]...)},
	}
	for _, c := range cases {
		for _, bs := range []int{0, 4096, 1000, 1} {
			if bs == 1 && len(c.target) > 5000 {
				continue
			}
			t.Run(fmt.Sprintf("%s/block=%d", c.name, bs), func(t *testing.T) {
				roundTrip(t, c.base, c.target, &EncodeOptions{BlockSize: bs})
			})
		}
	}
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 60 {
		var base []byte
		switch i % 3 {
		case 0:
			base = randBytes(r, r.IntN(20_000))
		case 1:
			base = fakeExecutable(r, 1+r.IntN(50_000))
		case 2:
			base = bytes.Repeat(randBytes(r, 1+r.IntN(50)), r.IntN(500))
		}
		target := mutate(r, base, r.IntN(30))
		opts := &EncodeOptions{BlockSize: 1 + r.IntN(20_000), Workers: 1 + r.IntN(3)}
		t.Run(fmt.Sprint(i), func(t *testing.T) { roundTrip(t, base, target, opts) })
	}
}

// TestCompresses checks the engine finds what it should: a delta between
// close images is small.
func TestCompresses(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	exe := fakeExecutable(r, 1<<20)
	for _, c := range []struct {
		name   string
		target []byte
		limit  int
	}{
		{"identical", exe, 1000},
		{"relinked", relink(exe, 1<<19, randBytes(r, 1000)), 1000 + 40_000},
		{"edited", mutate(r, exe, 10), 10_000},
	} {
		d := roundTrip(t, exe, c.target, nil)
		if len(d) > c.limit {
			t.Errorf("%s: delta is %d bytes, want at most %d", c.name, len(d), c.limit)
		}
	}
}

// TestRewrittenParts checks incompressible images (like a squashfs) where
// some parts were rewritten in place: each part must cost about its own size,
// not more (as when one alignment's approximate copy is stretched across it
// with a patched field every few bytes), and the copy must resume after it.
func TestRewrittenParts(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	base := randBytes(r, 1<<20)
	for _, c := range []struct {
		name  string
		parts [][2]int // offset, length of rewritten parts
	}{
		{"one part", [][2]int{{400_000, 16_000}}},
		{"several parts", [][2]int{{10_000, 3_000}, {200_000, 40_000}, {600_000, 500}, {900_000, 70_000}}},
		{"across a block", [][2]int{{1<<18 - 5_000, 10_000}}},
	} {
		target := bytes.Clone(base)
		rewritten := 0
		for _, p := range c.parts {
			copy(target[p[0]:p[0]+p[1]], randBytes(r, p[1]))
			rewritten += p[1]
		}
		d := roundTrip(t, base, target, &EncodeOptions{BlockSize: 1 << 18})
		if limit := rewritten + 200 + 40*len(c.parts); len(d) > limit {
			t.Errorf("%s: delta is %d bytes for %d rewritten bytes, want at most %d", c.name, len(d), rewritten, limit)
		}
	}
}

// TestShortSharedRuns checks that short runs shared with the base (headers of
// otherwise unrelated compressed blocks) are copied, not sent as literals.
func TestShortSharedRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var base, target []byte
	for range 64 {
		hdr := randBytes(r, 40) // in both, once each, so only copying saves it
		base = append(append(base, randBytes(r, 4000)...), hdr...)
		target = append(append(target, hdr...), randBytes(r, 4000)...)
	}
	d := roundTrip(t, base, target, nil)
	if limit := 64*4000 + 64*20; len(d) > limit {
		t.Errorf("delta is %d bytes, want at most %d: the shared headers were not copied", len(d), limit)
	}
}

func TestWrongBase(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	base := fakeExecutable(r, 100_000)
	d := encode(t, base, mutate(r, base, 5), nil)

	other := append([]byte{}, base...)
	other[50_000] ^= 1
	if _, _, err := apply(other, d); !errors.Is(err, ErrBaseMismatch) {
		t.Errorf("flipped base: got %v, want ErrBaseMismatch", err)
	}
	if _, _, err := apply(base[:99_999], d); !errors.Is(err, ErrBaseMismatch) {
		t.Errorf("short base: got %v, want ErrBaseMismatch", err)
	}
}

func TestTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	base := randBytes(r, 30_000)
	d := encode(t, base, mutate(r, base, 10), &EncodeOptions{BlockSize: 8000})
	for n := range len(d) {
		if _, _, err := apply(base, d[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("delta cut to %d of %d bytes: got %v, want ErrCorrupt", n, len(d), err)
		}
	}
	if _, _, err := apply(base, append(d, 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: got %v, want ErrCorrupt", err)
	}
}

// TestBitFlips checks every single-bit corruption is either detected or
// (where it hits bytes that do not matter, such as a zstd window hint)
// still rebuilds exactly the target: a wrong image is never accepted.
func TestBitFlips(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	base := fakeExecutable(r, 20_000)
	target := mutate(r, base, 8)
	d := encode(t, base, target, &EncodeOptions{BlockSize: 7000})
	bad := append([]byte{}, d...)
	for i := range len(d) * 8 {
		bad[i/8] ^= 1 << (i % 8)
		got, _, err := apply(base, bad)
		bad[i/8] ^= 1 << (i % 8)
		if err == nil && !bytes.Equal(got, target) {
			t.Fatalf("bit %d flipped: wrong result accepted", i)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) &&
			!errors.Is(err, ErrResultMismatch) && !errors.Is(err, ErrBaseMismatch) {
			t.Fatalf("bit %d flipped: untyped error %v", i, err)
		}
	}
}

func TestHeaderFlips(t *testing.T) {
	d := encode(t, []byte("base"), []byte("target"), nil)
	for i := range HeaderSize * 8 {
		bad := append([]byte{}, d...)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := ReadHeader(bytes.NewReader(bad)); err == nil {
			t.Fatalf("bit %d of header flipped: ReadHeader accepted it", i)
		}
	}
	if _, err := ReadHeader(bytes.NewReader([]byte("not a delta at all, but long enough to fill a header of one hundred bytes, yes it is long"))); !errors.Is(err, ErrUnsupported) {
		t.Errorf("garbage: got %v, want ErrUnsupported", err)
	}
}

func TestEncodeOptions(t *testing.T) {
	var buf bytes.Buffer
	err := Encode(context.Background(), bytes.NewReader(nil), 0, bytes.NewReader(nil), 0, &buf,
		&EncodeOptions{BlockSize: MaxBlockSize + 1})
	if err == nil {
		t.Error("oversized block accepted")
	}
	var calls []int64
	target := make([]byte, 10_000)
	encode(t, nil, target, &EncodeOptions{BlockSize: 3000, Progress: func(done, total int64) {
		if total != 10_000 {
			t.Errorf("progress total %d", total)
		}
		calls = append(calls, done)
	}})
	if fmt.Sprint(calls) != "[3000 6000 9000 10000]" {
		t.Errorf("progress calls %v", calls)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	b := make([]byte, 100_000)
	if err := Encode(ctx, bytes.NewReader(b), int64(len(b)), bytes.NewReader(b), int64(len(b)), &buf, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Encode: got %v, want context.Canceled", err)
	}
	d := encode(t, b, b, nil)
	if _, err := Apply(ctx, bytes.NewReader(b), int64(len(b)), bytes.NewReader(d), &buf); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply: got %v, want context.Canceled", err)
	}
}

// TestApplyMemory checks Apply's allocations do not grow with the image:
// rebuilding 32 MiB allocates about as much as the buffers for one block.
func TestApplyMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 32 MiB image")
	}
	r := rand.New(rand.NewPCG(13, 14))
	base := make([]byte, 32<<20)
	for i := 0; i < len(base); i += 1 << 16 {
		copy(base[i:], randBytes(r, 4096))
	}
	target := mutate(r, base, 200)
	d := encode(t, base, target, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), io.Discard)
	runtime.ReadMemStats(&after)
	if err != nil || h.ResultLen != int64(len(target)) {
		t.Fatalf("Apply: %v", err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("Apply allocated %.1f MiB", float64(alloc)/(1<<20))
	if alloc > 20<<20 {
		t.Errorf("Apply allocated %d MiB for a %d MiB image; want at most 20 MiB", alloc>>20, len(target)>>20)
	}
}
