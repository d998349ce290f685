//go:build unix

package delta

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// writeBase writes b to a file in a test directory and opens it.
func writeBase(t *testing.T, b []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "base.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestEncodeBaseTruncated: a base file truncated after Encode mapped it is
// an error (ErrBaseChanged), not a SIGBUS that kills the program.
func TestEncodeBaseTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, tc := range []struct {
		name string
		base []byte
	}{
		{"data", randBytes(r, 3<<20)},
		{"executable", fakeExecutable(r, 3<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := mutate(r, bytes.Clone(tc.base), 20)
			f := writeBase(t, tc.base)
			afterMap = func(f *os.File) {
				if err := os.Truncate(f.Name(), 0); err != nil {
					t.Error(err)
				}
			}
			defer func() { afterMap = nil }()
			var out bytes.Buffer
			err := Encode(context.Background(), f, int64(len(tc.base)), bytes.NewReader(target), int64(len(target)), &out, nil)
			if !errors.Is(err, ErrBaseChanged) {
				t.Fatalf("Encode with the base truncated after mapping: %v, want ErrBaseChanged", err)
			}
		})
	}
}

// TestIndexBaseTruncated: the index's workers and the first match catch a
// fault reading the mapped base too.
func TestIndexBaseTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	base := randBytes(r, 2<<20)
	f := writeBase(t, base)
	b, err := mapFile(f, int64(len(base)))
	if err != nil {
		t.Fatal(err)
	}
	defer unmapFile(b)
	// The first match: the index is built before the file is truncated.
	g := newFaultGuard(func() {}, f, int64(len(base)))
	ix := buildIndex(context.Background(), b, 2, nil, g)
	defer ix.release()
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f.Name(), 0); err != nil {
		t.Fatal(err)
	}
	dropPages(b)
	if _, err := scanMoves(ix, b, bytes.NewReader(base), len(base), 1<<20, 2); !errors.Is(err, ErrBaseChanged) {
		t.Fatalf("first match against a truncated mapping: %v, want ErrBaseChanged", err)
	}
	// The index.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g = newFaultGuard(cancel, f, int64(len(base)))
	ix2 := buildIndex(ctx, b, 2, nil, g)
	defer ix2.release()
	if !errors.Is(g.Err(), ErrBaseChanged) {
		t.Fatalf("index of a truncated mapping: %v, want ErrBaseChanged", g.Err())
	}
}
