package delta

import (
	"bytes"
	"context"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current encoder")

// goldenInputs are the fixed images of the golden vector. They are also
// written to testdata so that other implementations can use the vector
// without running Go.
func goldenInputs() (base, target []byte) {
	r := rand.New(rand.NewPCG(2026, 11))
	base = fakeExecutable(r, 6000)
	target = mutate(r, relink(base, 2500, []byte("fwctl golden vector v1")), 4)
	return base, target
}

const goldenDir = "testdata/golden"

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenApply must keep passing for as long as format version 1 exists:
// a delta written by any past encoder applies to the same result.
func TestGoldenApply(t *testing.T) {
	base, target := readGolden(t, "base.bin"), readGolden(t, "target.bin")
	got, h, err := apply(base, readGolden(t, "v1.fwdelta"))
	if err != nil {
		t.Fatalf("Apply golden delta: %v", err)
	}
	if !bytes.Equal(got, target) {
		t.Fatal("golden delta rebuilt a different image")
	}
	if want := readGolden(t, "v1.header.txt"); h.String()+"\n" != string(want) {
		t.Errorf("header\n got %s\nwant %s", h, want)
	}
}

// TestGoldenEncode catches unintended encoder changes. An intended change
// (better matching, a new zstd version) regenerates the vector with
// `go test -run Golden -update`; TestGoldenApply must then still pass
// against the old vector before it is replaced (git stash the new one).
func TestGoldenEncode(t *testing.T) {
	base, target := goldenInputs()
	d := encode(t, base, target, &EncodeOptions{BlockSize: 4096})
	if *update {
		os.MkdirAll(goldenDir, 0o755)
		h, _ := ReadHeader(bytes.NewReader(d))
		for name, b := range map[string][]byte{
			"base.bin": base, "target.bin": target, "v1.fwdelta": d, "v1.header.txt": []byte(h.String() + "\n"),
		} {
			if err := os.WriteFile(filepath.Join(goldenDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(readGolden(t, "base.bin"), base) || !bytes.Equal(readGolden(t, "target.bin"), target) {
		t.Fatal("golden inputs changed: the generator must stay fixed")
	}
	if !bytes.Equal(readGolden(t, "v1.fwdelta"), d) {
		t.Fatal("encoder output differs from testdata/golden/v1.fwdelta; if intended, run go test -run Golden -update")
	}
}

// FuzzApply feeds arbitrary deltas to Apply against a fixed base: it must
// return an error or a result matching the header, never panic or allocate
// without bound.
func FuzzApply(f *testing.F) {
	base, target := goldenInputs()
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 4096}))
	f.Add(encode(f, base, target, &EncodeOptions{BlockSize: 100}))
	f.Add(encode(f, base, base, nil))
	f.Add(encode(f, nil, target[:300], nil))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, d []byte) {
		h, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), io.Discard)
		if err == nil && h.BaseLen != int64(len(base)) {
			t.Fatalf("accepted a delta for a %d-byte base", h.BaseLen)
		}
	})
}

// FuzzRoundTrip checks Encode and Apply agree on arbitrary inputs.
func FuzzRoundTrip(f *testing.F) {
	base, target := goldenInputs()
	f.Add(base, target, uint16(4096))
	f.Add([]byte{}, []byte("x"), uint16(1))
	f.Fuzz(func(t *testing.T, base, target []byte, bs uint16) {
		roundTrip(t, base, target, &EncodeOptions{BlockSize: int(bs) + 1, Workers: 2})
	})
}
