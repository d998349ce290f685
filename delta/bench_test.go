package delta

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"
)

// benchPair is an 8 MiB synthetic executable and a relinked, edited version.
func benchPair() (base, target []byte) {
	r := rand.New(rand.NewPCG(42, 42))
	base = fakeExecutable(r, 8<<20)
	target = mutate(r, relink(base, 3<<20, randBytes(r, 20_000)), 40)
	return base, target
}

func BenchmarkEncode(b *testing.B) {
	base, target := benchPair()
	b.SetBytes(int64(len(target)))
	var n int
	for b.Loop() {
		var buf bytes.Buffer
		if err := Encode(context.Background(), bytes.NewReader(base), int64(len(base)),
			bytes.NewReader(target), int64(len(target)), &buf, nil); err != nil {
			b.Fatal(err)
		}
		n = buf.Len()
	}
	b.ReportMetric(float64(n), "delta-bytes")
}

func BenchmarkApply(b *testing.B) {
	base, target := benchPair()
	d := encode(b, base, target, nil)
	b.SetBytes(int64(len(target)))
	for b.Loop() {
		if _, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)),
			bytes.NewReader(d), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
