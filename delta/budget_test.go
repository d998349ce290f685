package delta

import (
	"context"
	"math"
	"testing"
)

func TestIndexLayout(t *testing.T) {
	for _, tt := range []struct {
		base int64
		max  int
	}{
		{4 << 20, 32 << 20},
		{64 << 20, 128 << 20},
		{87 << 20, 64 << 20}, // cosign arm64: 64 MiB measured
		{224 << 20, 64 << 20},
		{residentBase, 64 << 20},
		{residentBase + 1, 48 << 20},
		{1 << 30, 48 << 20},
		{2 << 30, 48 << 20},
		{MaxImageSize, 48 << 20},
	} {
		if tt.base > math.MaxInt {
			continue // a 32-bit build: the encoder cannot hold such a base anyway
		}
		if got := indexBytes(int(tt.base)); got > tt.max || got <= 0 {
			t.Errorf("index of a %d MiB base: %d MiB, want 1..%d MiB", tt.base>>20, got>>20, tt.max>>20)
		}
	}
}

// TestIndexBytes: indexBytes is what buildIndex allocates (Encode sizes its
// memory limit with it).
func TestIndexBytes(t *testing.T) {
	for _, n := range []int{0, seedLen - 1, seedLen, 4096, 1 << 20} {
		ix := newIndex(context.Background(), make([]byte, n), 2)
		if got := 4*len(ix.table) + 2*len(ix.check2); got != indexBytes(n) {
			t.Errorf("base of %d bytes: index holds %d bytes, indexBytes says %d", n, got, indexBytes(n))
		}
	}
}

func TestEncodeWorkers(t *testing.T) {
	if math.MaxInt < 2<<30 {
		t.Skip("2 GiB bases do not fit a 32-bit int")
	}
	gib := 1 << 30 // a variable, so that 32-bit builds compile
	cosign := memUse{base: 87 << 20, index: indexBytes(87 << 20), converted: 87 << 20}
	ext4 := memUse{base: 224 << 20, index: indexBytes(224 << 20)}
	big := memUse{base: 2 * gib, index: indexBytes(2 * gib)}
	small := memUse{base: 4 << 20, index: indexBytes(4 << 20), converted: 4 << 20}
	for _, tt := range []struct {
		name      string
		m         memUse
		requested int
		want      int
	}{
		{"cosign, 2 cores", cosign, 2, 2},
		{"cosign, 16 cores", cosign, 16, 3},
		{"ext4 224 MiB, 16 cores", ext4, 16, 2},
		{"2 GiB, 64 cores", big, 64, 2},
		{"2 GiB, 1 core", big, 1, 1},
		{"small image, 2 cores", small, 2, 2},
		{"over the budget anyway", memUse{base: 200 << 20, index: 64 << 20, converted: 200 << 20}, 8, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := encodeWorkers(tt.requested, tt.m); got != tt.want {
				t.Fatalf("encodeWorkers(%d, fixed %d MiB) = %d, want %d", tt.requested, tt.m.fixed()>>20, got, tt.want)
			}
		})
	}
	// Whatever the core count, the estimate stays in the budget for every
	// base up to 2 GiB without transforms (above xformBase there are none)
	// and with them below.
	for base := 1 << 20; base <= 2*gib; base += 7 << 20 {
		m := memUse{base: base, index: indexBytes(base)}
		if base <= xformBase {
			m.converted = base
		}
		w := encodeWorkers(256, m)
		if est := m.fixed() + w*workerMem; est > memBudget {
			t.Fatalf("%d MiB base: %d workers, estimate %d MiB > %d MiB", base>>20, w, est>>20, memBudget>>20)
		}
	}
}
