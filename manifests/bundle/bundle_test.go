package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden vectors")

func sample(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Manifest{Created: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), Releases: []string{"acme-gw-v2/2.0.0/fw.img"}, RootFrom: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range [][2]string{
		{"metadata/2.root.json", `{"signed":{}}`},
		{"metadata/timestamp.json", `{"signed":{"_type":"timestamp"}}`},
		{"targets/acme-gw-v2/2.0.0/0123.fw.img", "firmware bytes"},
	} {
		if err := w.Add(e[0], int64(len(e[1])), strings.NewReader(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGoldenV1 holds the version 1 bytes: the writer reproduces them and
// every later reader still reads them.
func TestGoldenV1(t *testing.T) {
	got := sample(t)
	golden := filepath.Join("testdata", "v1.fwbundle")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("writer output differs from %s (run with -update only for a new format version)", golden)
	}
	b, err := Read(bytes.NewReader(want), int64(len(want)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Version != 1 || b.Manifest.Format != Format || b.Manifest.RootFrom != 1 || len(b.Manifest.Releases) != 1 {
		t.Fatalf("manifest %+v", b.Manifest)
	}
	f, err := b.Open("targets/acme-gw-v2/2.0.0/0123.fw.img")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(f)
	if string(data) != "firmware bytes" || f.Size != 14 {
		t.Fatalf("entry %q size %d", data, f.Size)
	}
	if _, err := b.Open("metadata/3.root.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing entry: %v", err)
	}
}

// TestGoldenV2 holds the version 2 bytes: director metadata under
// director/ and the devices in the manifest.
func TestGoldenV2(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Manifest{Created: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), Releases: []string{"acme-gw-v2/2.0.0/fw.img"},
		RootFrom: 1, Devices: []string{"gw-0017"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range [][2]string{
		{"metadata/timestamp.json", `{"signed":{"_type":"timestamp"}}`},
		{"targets/acme-gw-v2/2.0.0/0123.fw.img", "firmware bytes"},
		{"director/metadata/1.root.json", `{"signed":{"_type":"root"}}`},
		{"director/devices/gw-0017/metadata/timestamp.json", `{"signed":{"_type":"timestamp"}}`},
	} {
		if err := w.Add(e[0], int64(len(e[1])), strings.NewReader(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "v2.fwbundle")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("writer output differs from %s (run with -update only for a new format version)", golden)
	}
	b, err := Read(bytes.NewReader(want), int64(len(want)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Version != 2 || len(b.Manifest.Devices) != 1 || b.Manifest.Devices[0] != "gw-0017" {
		t.Fatalf("manifest %+v", b.Manifest)
	}
	f, err := b.Open("director/devices/gw-0017/metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

type ent struct {
	name string
	typ  byte
	body string
}

func rawTar(t testing.TB, ents ...ent) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			h.Size, h.Linkname = 0, "../../etc/passwd"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	return buf.Bytes()
}

const manifest = `{"format":"fwctl-bundle","version":1}`

func TestReadRefuses(t *testing.T) {
	good := sample(t)
	m := ent{name: ManifestName, body: manifest}
	for _, tc := range []struct {
		name string
		data []byte
		lim  Limits
		want error
	}{
		{"truncated in an entry", good[:len(good)-1024-512+10], Limits{}, ErrTruncated},
		{"truncated at a block boundary", good[:len(good)-1024], Limits{}, ErrTruncated},
		{"truncated in the end marker", good[:len(good)-512], Limits{}, ErrTruncated},
		{"truncated in a header", good[:1024+100], Limits{}, ErrTruncated},
		{"oversized", good, Limits{MaxSize: 1000}, ErrTooLarge},
		{"too many entries", good, Limits{MaxEntries: 2}, ErrTooLarge},
		{"manifest too large", good, Limits{MaxManifest: 10}, ErrTooLarge},
		{"path traversal", rawTar(t, m, ent{name: "metadata/../../etc/passwd", body: "x"}), Limits{}, ErrBadName},
		{"absolute", rawTar(t, m, ent{name: "/metadata/x", body: "x"}), Limits{}, ErrBadName},
		{"outside", rawTar(t, m, ent{name: "etc/x", body: "x"}), Limits{}, ErrBadName},
		{"backslash", rawTar(t, m, ent{name: `targets\..\x`, body: "x"}), Limits{}, ErrBadName},
		{"duplicate", rawTar(t, m, ent{name: "metadata/timestamp.json", body: "a"}, ent{name: "metadata/timestamp.json", body: "b"}), Limits{}, ErrDuplicate},
		{"symlink", rawTar(t, m, ent{name: "metadata/root.json", typ: tar.TypeSymlink}), Limits{}, ErrFormat},
		{"manifest not first", rawTar(t, ent{name: "metadata/x.json", body: "{}"}, m), Limits{}, ErrFormat},
		{"two manifests", rawTar(t, m, m), Limits{}, ErrFormat},
		{"no manifest", rawTar(t), Limits{}, ErrFormat},
		{"other format", rawTar(t, ent{name: ManifestName, body: `{"format":"rauc","version":1}`}), Limits{}, ErrFormat},
		{"newer version", rawTar(t, ent{name: ManifestName, body: `{"format":"fwctl-bundle","version":3}`}), Limits{}, ErrVersion},
		{"not tar", []byte(strings.Repeat("garbage!", 200)), Limits{}, ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.data), int64(len(tc.data)), tc.lim)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenDirAndStick(t *testing.T) {
	stick := t.TempDir()
	data := sample(t)
	if err := os.WriteFile(filepath.Join(stick, "site.fwbundle"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Open(stick, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	// A directory bundle: the same files unpacked.
	dir := filepath.Join(t.TempDir(), "b")
	os.MkdirAll(filepath.Join(dir, "metadata"), 0o755)
	os.WriteFile(filepath.Join(dir, ManifestName), []byte(manifest), 0o644)
	os.WriteFile(filepath.Join(dir, "metadata", "timestamp.json"), []byte("{}"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "metadata", "1.root.json"))
	if sb, err := Open(dir, Limits{}); err != nil {
		t.Fatal(err)
	} else if _, err := sb.Open("metadata/1.root.json"); err == nil {
		t.Fatal("a symlink out of a directory bundle opens")
	} else {
		sb.Close()
	}
	os.Remove(filepath.Join(dir, "metadata", "1.root.json"))
	d, err := Open(dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f, err := d.Open("metadata/timestamp.json")
	if err != nil || f.Size != 2 {
		t.Fatalf("%v %v", f, err)
	}
	f.Close()
	if _, err := d.Open("metadata/../../x"); !errors.Is(err, ErrBadName) {
		t.Fatal(err)
	}
	// Two bundles on one stick: ambiguous.
	os.WriteFile(filepath.Join(stick, "other.fwbundle"), data, 0o644)
	if _, err := Open(stick, Limits{}); err == nil || !strings.Contains(err.Error(), "2 bundles") {
		t.Fatalf("two bundles: %v", err)
	}
	if _, err := Open(t.TempDir(), Limits{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty stick: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		ManifestName: true, "metadata/1.root.json": true, "targets/a/b/0a.fw.img": true,
		"": false, "metadata": false, "metadata/": false, "metadata//x": false, "metadata/./x": false,
		"targets/../metadata/x": false, "director/devices/gw-1/metadata/timestamp.json": true, "directory/x": false, "targets/a\x00": false, "c:/x": false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(sample(f))
	f.Add(rawTar(f, ent{name: ManifestName, body: manifest}, ent{name: "metadata/a", body: "b"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Read(bytes.NewReader(data), int64(len(data)), Limits{MaxSize: 1 << 20, MaxEntries: 64, MaxManifest: 4096})
		if err != nil {
			return
		}
		for _, n := range b.Names() {
			f, err := b.Open(n)
			if err != nil {
				t.Fatalf("listed %q does not open: %v", n, err)
			}
			if got, _ := io.Copy(io.Discard, f); got != f.Size {
				t.Fatalf("%q: read %d of %d", n, got, f.Size)
			}
		}
	})
}

// TestLongNames: a name over ustar's 100 bytes goes into a PAX record
// that this reader and archive/tar both read.
func TestLongNames(t *testing.T) {
	long := "targets/acme-gw-v2/2.4.1/" + strings.Repeat("ab", 32) + "." + strings.Repeat("firmware-", 12) + "img"
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Manifest{})
	if err := w.Add(long, 5, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(long); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	tr.Next()
	h, err := tr.Next()
	if err != nil || h.Name != long || h.Size != 5 {
		t.Fatalf("archive/tar reads %+v, %v", h, err)
	}
}
