package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "add a golden vector from the current encoder to testdata/golden (never overwrites one)")

// goldenInputs are the fixed images of the golden vectors. They are also
// written to testdata so that other implementations can use the vectors
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

// A golden vector is testdata/golden/v<version>-<n>.fwdelta: the n-th delta
// of base.bin to target.bin written under that format version. Vectors are
// only ever added, never rewritten, so every delta any past encoder wrote
// stays under test.
type goldenVector struct {
	name    string
	version int
	seq     int
}

var vectorName = regexp.MustCompile(`^v([0-9]+)-([0-9]+)\.fwdelta$`)

func goldenVectors(t *testing.T) []goldenVector { return goldenVectorsIn(t, goldenDir) }

func goldenVectorsIn(t *testing.T, dir string) []goldenVector {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var vs []goldenVector
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".fwdelta") {
			continue
		}
		m := vectorName.FindStringSubmatch(e.Name())
		if m == nil {
			t.Fatalf("%s: golden vectors are named v<version>-<n>.fwdelta", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		vs = append(vs, goldenVector{e.Name(), v, n})
	}
	slices.SortFunc(vs, func(a, b goldenVector) int {
		if a.version != b.version {
			return a.version - b.version
		}
		return a.seq - b.seq
	})
	return vs
}

// TestGoldenVersions: every format version from 1 to Version has a vector
// (in testdata/golden, or for a version that only transformed images use,
// such as version 6's address map, in one of its transform pairs), and no
// vector claims a version this package does not know of.
func TestGoldenVersions(t *testing.T) {
	have := map[int]bool{}
	vs := goldenVectors(t)
	for _, dir := range []string{xformGolden, tableGolden, mapGolden} {
		vs = append(vs, goldenVectorsIn(t, dir)...)
	}
	for _, v := range vs {
		have[v.version] = true
		if v.version > Version {
			t.Errorf("%s: version %d is newer than Version %d", v.name, v.version, Version)
		}
	}
	for v := 1; v <= Version; v++ {
		if !have[v] {
			t.Errorf("no golden vector for format version %d: every version keeps one in %s", v, goldenDir)
		}
	}
}

// TestGoldenApply: a delta written by any past encoder either applies to the
// same result (current version) or is refused with ErrRetired naming its
// version (retired versions, FORMAT.md "Versions"). A format change that
// forgets to bump Version makes the older vectors of the current version
// fail here.
func TestGoldenApply(t *testing.T) {
	base, target := readGolden(t, "base.bin"), readGolden(t, "target.bin")
	for _, v := range goldenVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			d := readGolden(t, v.name)
			if got := int(binary.BigEndian.Uint16(d[len(Magic):])); got != v.version {
				t.Fatalf("header says version %d, file name says %d", got, v.version)
			}
			got, h, err := apply(base, d)
			if _, old := retired[uint16(v.version)]; old {
				want := fmt.Sprintf("version %d is no longer supported", v.version)
				if !errors.Is(err, ErrRetired) || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want) {
					t.Fatalf("retired version %d: got %v, want ErrRetired saying %q", v.version, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply golden delta: %v", err)
			}
			if !bytes.Equal(got, target) {
				t.Fatal("golden delta rebuilt a different image")
			}
			if want := readGolden(t, fmt.Sprintf("v%d.header.txt", v.version)); h.String()+"\n" != string(want) {
				t.Errorf("header\n got %s\nwant %s", h, want)
			}
		})
	}
}

// TestGoldenEncode catches unintended encoder changes: the encoder must
// reproduce the newest vector of the current version. An intended change
// adds a vector with `go test -run Golden -update` (the next v<Version>-<n>);
// the older ones stay and TestGoldenApply keeps applying them. A change to
// the format itself also bumps Version.
func TestGoldenEncode(t *testing.T) {
	base, target := goldenInputs()
	d := encode(t, base, target, &EncodeOptions{BlockSize: 4096})
	if !bytes.Equal(readGolden(t, "base.bin"), base) || !bytes.Equal(readGolden(t, "target.bin"), target) {
		t.Fatal("golden inputs changed: the generator must stay fixed")
	}
	// The encoder writes the oldest version that holds the delta: version
	// 5 unless it has an address map.
	dh, err := ReadHeader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	version := int(dh.Version)
	var latest *goldenVector
	for _, v := range goldenVectors(t) {
		if v.version == version {
			latest = &v
		}
	}
	if latest != nil && bytes.Equal(readGolden(t, latest.name), d) {
		return
	}
	if !*update {
		if latest == nil {
			t.Fatalf("no golden vector for version %d; add one with go test -run Golden -update", version)
		}
		t.Fatalf("encoder output differs from %s/%s; if intended, add a vector with go test -run Golden -update", goldenDir, latest.name)
	}
	seq := 1
	if latest != nil {
		seq = latest.seq + 1
	}
	h, _ := ReadHeader(bytes.NewReader(d))
	files := map[string][]byte{fmt.Sprintf("v%d-%d.fwdelta", version, seq): d}
	if latest == nil {
		files[fmt.Sprintf("v%d.header.txt", version)] = []byte(h.String() + "\n")
	}
	for name, b := range files {
		f, err := os.OpenFile(filepath.Join(goldenDir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			t.Fatalf("golden vectors are never overwritten: %v", err)
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("added %s/%s", goldenDir, name)
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

// TestVersionErrors: a retired version is ErrRetired naming it; a version
// this package never wrote is ErrUnsupported but not ErrRetired.
func TestVersionErrors(t *testing.T) {
	d := bytes.Clone(readGolden(t, "v5-1.fwdelta"))
	for _, tt := range []struct {
		version uint16
		retired bool
	}{{1, true}, {Version + 1, false}, {0, false}} {
		binary.BigEndian.PutUint16(d[len(Magic):], tt.version)
		_, err := ReadHeader(bytes.NewReader(d))
		if !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrRetired) != tt.retired {
			t.Errorf("version %d: %v, want ErrUnsupported (retired: %v)", tt.version, err, tt.retired)
		}
		if tt.retired && !strings.Contains(err.Error(), fmt.Sprintf("version %d is no longer supported", tt.version)) {
			t.Errorf("version %d: %q does not say it is no longer supported", tt.version, err)
		}
	}
}
