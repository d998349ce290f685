package delta

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestStats prints where the bytes of a delta go; set DELTA_STATS=base,target.
func TestStats(t *testing.T) {
	bn, tn, ok := strings.Cut(os.Getenv("DELTA_STATS"), ",")
	if !ok {
		t.Skip("DELTA_STATS=base,target not set")
	}
	b, _ := os.ReadFile(bn)
	tg, _ := os.ReadFile(tn)
	ix := newIndex(context.Background(), b, 2)
	s := &scanner{ix: ix, b: b, t: tg}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(windowFor(DefaultBlockSize)))
	var nops int
	var raw, comp [numSections]int
	for lo := 0; lo < len(tg); lo += DefaultBlockSize {
		hi := min(lo+DefaultBlockSize, len(tg))
		s.scan(lo, hi)
		nops += len(s.ops)
		secs, _ := s.sections(lo, hi)
		for i, sec := range secs {
			raw[i] += len(sec)
			comp[i] += len(enc.EncodeAll(sec, nil))
		}
	}
	t.Logf("ops %d; raw ctrl/gaps/lens/vals/extra %v; compressed %v", nops, raw, comp)
}
