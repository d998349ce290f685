package delta

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestStats prints where the bytes of a delta go, for tuning the matcher:
// DELTA_STATS=base,target go test -run Stats -v ./delta
// DELTA_EXT=1/2 sets the approximate-extension match fraction, DELTA_XDROP
// the extension's drop limit, DELTA_MIN the shortest match that switches
// alignment.
func TestStats(t *testing.T) {
	bn, tn, ok := strings.Cut(os.Getenv("DELTA_STATS"), ",")
	if !ok {
		t.Skip("DELTA_STATS=base,target not set")
	}
	if v := os.Getenv("DELTA_EXT"); v != "" {
		fmt.Sscanf(v, "%d/%d", &extendDen, &extendNum)
	}
	if v := os.Getenv("DELTA_XDROP"); v != "" {
		fmt.Sscanf(v, "%d", &xDrop)
	}
	if v := os.Getenv("DELTA_ALIGN"); v != "" {
		alignFields = v == "1"
	}
	if v := os.Getenv("DELTA_MIN"); v != "" {
		fmt.Sscanf(v, "%d", &minSwitch)
	}
	b, err := os.ReadFile(bn)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := os.ReadFile(tn)
	if err != nil {
		t.Fatal(err)
	}
	s := &scanner{ix: newIndex(context.Background(), b, 2), b: b, t: tg, align: fieldAlign(nil, 0, 0)}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(windowFor(DefaultBlockSize)))
	var nops, total, blocks int
	var raw, comp [numSections]int
	for lo := 0; lo < len(tg); lo += DefaultBlockSize {
		hi := min(lo+DefaultBlockSize, len(tg))
		blocks += len(s.candidate(pooledEncoder{enc, encoderKind{}}, lo, hi, s.align, tg[lo:hi]).finish(nil, nil)) + 1
		nops += len(s.ops)
		secs, _ := s.sections(lo, hi, os.Getenv("DELTA_SIZED") != "")
		for i, sec := range secs {
			raw[i] += len(sec)
			c := len(enc.EncodeAll(sec, nil))
			comp[i] += c
			total += c
		}
	}
	t.Logf("ops %d; sections ctrl/gaps/sizes/vals/extra raw %v compressed %v; total %d; as encoded %d", nops, raw, comp, total, blocks)
}

// TestStatsTransform prints the delta's size with and without executable
// transforms (and without the address map, without the table transforms)
// and the regions found: DELTA_STATS=base,target go test -run
// StatsTransform -v ./delta
func TestStatsTransform(t *testing.T) {
	bn, tn, ok := strings.Cut(os.Getenv("DELTA_STATS"), ",")
	if !ok {
		t.Skip("DELTA_STATS=base,target not set")
	}
	if v := os.Getenv("DELTA_ALIGN"); v != "" {
		alignFields = v == "1"
	}
	b, err := os.ReadFile(bn)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := os.ReadFile(tn)
	if err != nil {
		t.Fatal(err)
	}
	xb, xt := elfRegions(bytes.NewReader(b), int64(len(b))), elfRegions(bytes.NewReader(tg), int64(len(tg)))
	t.Logf("regions: base %d, result %d; first %v", len(xb), len(xt), xt[:min(len(xt), 3)])
	ntab := 0
	for _, r := range xt {
		if isTable(r.arch) {
			ntab++
		}
	}
	t.Logf("table regions in the result: %d", ntab)
	with := encode(t, b, tg, nil)
	nomap := encode(t, b, tg, &EncodeOptions{noMap: true})
	code := encode(t, b, tg, &EncodeOptions{noTables: true, noMap: true})
	without := encode(t, b, tg, &EncodeOptions{noXform: true})
	t.Logf("with transforms %d bytes, without the address map %d (%.4f), code transforms only %d (%.4f), without %d (%.4f)",
		len(with), len(nomap), float64(len(with))/float64(len(nomap)),
		len(code), float64(len(with))/float64(len(code)), len(without), float64(len(with))/float64(len(without)))
	if os.Getenv("DELTA_APPLY") != "" {
		got, _, err := apply(b, with)
		if err != nil || !bytes.Equal(got, tg) {
			t.Fatalf("Apply: %v (result equal: %v)", err, bytes.Equal(got, tg))
		}
	}
}
