package delta

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// refTable is the index's table built the plain way: every seed inserted
// in position order, at the head of its bucket (the base's seeds, skipping
// runs, then conv's where they differ).
func refTable(ix *index, base, conv []byte) []uint32 {
	tab := make([]uint32, len(ix.table))
	insert := func(v uint64, p int) {
		h, check := hashSeed(v, ix.shift)
		bk := tab[h*ways : h*ways+ways]
		copy(bk[1:], bk[:ways-1])
		bk[0] = uint32(p/ix.step+1)<<checkBits | check
	}
	n := len(base) - seedLen + 1
	for p := 0; p < n; p += ix.step {
		if v := load64(base, p); p == 0 || v != load64(base, p-ix.step) {
			insert(v, p)
		}
	}
	for p := 0; conv != nil && p < n; p += ix.step {
		if v := load64(conv, p); v != load64(base, p) && (p == 0 || v != load64(conv, p-ix.step)) {
			insert(v, p)
		}
	}
	return tab
}

// TestIndexFill: the partitioned, batched inserts (fill) give the table
// that inserting every seed in order gives, whatever the number of
// workers, over several rounds, with runs and with a converted copy.
func TestIndexFill(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{seedLen, 1000, 3*roundSeeds + 12345} {
		// Few distinct words, so that buckets overflow, and zero runs.
		base := make([]byte, n)
		for i := 0; i+4 <= n; i += 4 {
			if r.IntN(8) != 0 {
				base[i], base[i+1] = byte(r.IntN(256)), byte(r.IntN(4))
			}
		}
		conv := bytes.Clone(base)
		for i := 0; i < n; i += 1 + r.IntN(64) {
			conv[i] ^= 0x5a
		}
		for _, workers := range []int{1, 2, 3, 8} {
			ix := newIndex(context.Background(), base, workers)
			if !slices.Equal(ix.table, refTable(ix, base, nil)) {
				t.Fatalf("%d bytes, %d workers: table differs from inserting in order", n, workers)
			}
			ix.addConverted(context.Background(), conv, workers)
			if !slices.Equal(ix.table, refTable(ix, base, conv)) {
				t.Fatalf("%d bytes, %d workers: table with the converted seeds differs from inserting in order", n, workers)
			}
			ix.release()
		}
	}
}
