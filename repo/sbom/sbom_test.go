package sbom

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseFile(t *testing.T, name string) *Document {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Parse(name, f, DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestParseRealSBOMs reads the SBOMs scripts/sbom-testdata.sh made from the
// benchmark corpus's Debian images and from cosign's module list.
func TestParseRealSBOMs(t *testing.T) {
	tests := []struct {
		file, format, spec string
		n                  int
		want               Component // one component that must be there
	}{
		{"rootfs-v1.cdx.json", FormatCycloneDX, "1.6", 31, Component{Name: "libc6", Version: "2.36-9+deb12u7", PURL: "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64", Type: "library", Ecosystem: "deb", Namespace: "debian", Supplier: "GNU Libc Maintainers <debian-glibc@lists.debian.org>"}},
		{"rootfs-v1.cdx14.json", FormatCycloneDX, "1.4", 31, Component{Name: "bash", Version: "5.2.15-2+b13", PURL: "pkg:deb/debian/bash@5.2.15-2%2Bb13?arch=amd64", Type: "library", Ecosystem: "deb", Namespace: "debian", Supplier: "Matthias Klose <doko@debian.org>"}},
		{"rootfs-v1.cdx15.json", FormatCycloneDX, "1.5", 31, Component{Name: "busybox", Version: "1:1.35.0-4+deb12u1+b1", PURL: "pkg:deb/debian/busybox@1:1.35.0-4%2Bdeb12u1%2Bb1?arch=amd64", Type: "library", Ecosystem: "deb", Namespace: "debian", Supplier: "Debian Install System Team <debian-boot@lists.debian.org>"}},
		{"rootfs-v2.cdx.json", FormatCycloneDX, "1.6", 31, Component{Name: "libc6", Version: "2.36-9+deb12u14", PURL: "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64", Type: "library", Ecosystem: "deb", Namespace: "debian", Supplier: "GNU Libc Maintainers <debian-glibc@lists.debian.org>"}},
		{"rootfs-v1.spdx.json", FormatSPDX, "2.3", 31, Component{Name: "openssl", Version: "3.0.20-1~deb12u2", PURL: "pkg:deb/debian/openssl@3.0.20-1~deb12u2?arch=amd64", Type: "library", Ecosystem: "deb", Namespace: "debian", Supplier: "Debian OpenSSL Team (pkg-openssl-devel@alioth-lists.debian.net)"}},
		{"rootfs-v1.spdx22.json", FormatSPDX, "2.2", 31, Component{Name: "openssl", Version: "3.0.20-1~deb12u2", PURL: "pkg:deb/debian/openssl@3.0.20-1~deb12u2?arch=amd64", Ecosystem: "deb", Namespace: "debian", Supplier: "Debian OpenSSL Team (pkg-openssl-devel@alioth-lists.debian.net)"}},
		{"cosign.cdx.json", FormatCycloneDX, "1.5", -1, Component{Name: "github.com/sigstore/sigstore-go", Version: "v1.1.4", PURL: "pkg:golang/github.com/sigstore/sigstore-go@v1.1.4", Type: "library", Ecosystem: "golang", Namespace: "github.com/sigstore"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := parseFile(t, tt.file)
			if d.Format != tt.format || d.SpecVersion != tt.spec {
				t.Errorf("format %s %s, want %s %s", d.Format, d.SpecVersion, tt.format, tt.spec)
			}
			if tt.n >= 0 && len(d.Components) != tt.n {
				t.Errorf("%d components, want %d", len(d.Components), tt.n)
			}
			if d.Subject == nil || (d.Subject.Name != "rootfs" && d.Subject.Name != "cosign") {
				t.Errorf("subject %+v, want the image", d.Subject)
			}
			found := false
			for _, c := range d.Components {
				if c.PURL == "" || c.Ecosystem == "" {
					t.Errorf("component without purl: %+v", c)
				}
				if c == tt.want {
					found = true
				}
			}
			if !found {
				t.Errorf("no component %+v", tt.want)
			}
		})
	}
}

// TestFormatsAgree: the CycloneDX and SPDX files of one image list the
// same packages.
func TestFormatsAgree(t *testing.T) {
	a, b := parseFile(t, "rootfs-v1.cdx.json"), parseFile(t, "rootfs-v1.spdx.json")
	if r := Diff(a, b); !r.Empty() {
		t.Fatalf("CycloneDX and SPDX of the same image differ: %+v", r)
	}
}

func TestDiffRealImages(t *testing.T) {
	r := Diff(parseFile(t, "rootfs-v1.cdx.json"), parseFile(t, "rootfs-v2.spdx.json"))
	if len(r.Added) != 0 || len(r.Removed) != 0 {
		t.Errorf("added %v removed %v, want none (same package set)", r.Added, r.Removed)
	}
	if len(r.Changed) != 24 { // make_corpus.sh's CHANGED list
		t.Errorf("%d changed, want 24", len(r.Changed))
	}
	for _, c := range r.Changed {
		if c.Key == "pkg:deb/debian/libssl3?arch=amd64" && (c.From.Version != "3.0.20-1~deb12u2" || c.To.Version != "3.0.22-1~deb12u2") {
			t.Errorf("libssl3 %s -> %s", c.From.Version, c.To.Version)
		}
	}
}

func TestDiff(t *testing.T) {
	c := func(name, v string) Component {
		return Component{Name: name, Version: v, PURL: "pkg:deb/debian/" + name + "@" + v + "?arch=amd64", Ecosystem: "deb", Namespace: "debian"}
	}
	a := &Document{Components: []Component{c("a", "1"), c("b", "1"), c("d", "1"), c("d", "2"), {Name: "nopurl", Version: "1"}}}
	b := &Document{Components: []Component{c("a", "1"), c("b", "2"), c("c", "1"), c("d", "2"), c("d", "3"), {Name: "nopurl", Version: "2"}}}
	r := Diff(a, b)
	if len(r.Added) != 2 || r.Added[0].Name != "c" || r.Added[1] != c("d", "3") {
		t.Errorf("added %+v", r.Added)
	}
	if len(r.Removed) != 1 || r.Removed[0] != c("d", "1") {
		t.Errorf("removed %+v", r.Removed)
	}
	if len(r.Changed) != 2 || r.Changed[0].Key != "name:nopurl" || r.Changed[1].To != c("b", "2") {
		t.Errorf("changed %+v", r.Changed)
	}
	if !Diff(a, a).Empty() {
		t.Error("a document differs from itself")
	}
}

func TestParseBadInput(t *testing.T) {
	v1, err := os.ReadFile("testdata/rootfs-v1.cdx.json")
	if err != nil {
		t.Fatal(err)
	}
	spdx, err := os.ReadFile("testdata/rootfs-v1.spdx.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		in    []byte
		max   int64
		want  error
		field string
	}{
		{"oversized", v1, 1000, ErrTooLarge, ""},
		{"not json", []byte("{\"bomFormat\":"), 1 << 20, ErrMalformed, ""},
		{"not an sbom", []byte(`{"hello":1}`), 1 << 20, ErrUnsupportedFormat, ""},
		{"xml-ish format", []byte(`{"bomFormat":"SWID"}`), 1 << 20, ErrUnsupportedFormat, "bomFormat"},
		{"cyclonedx 1.3", bytes.Replace(v1, []byte(`"specVersion": "1.6"`), []byte(`"specVersion": "1.3"`), 1), 1 << 20, ErrUnsupportedVersion, "specVersion"},
		{"cyclonedx 1.7", bytes.Replace(v1, []byte(`"specVersion": "1.6"`), []byte(`"specVersion": "1.7"`), 1), 1 << 20, ErrUnsupportedVersion, "specVersion"},
		{"cyclonedx no spec version", bytes.Replace(v1, []byte(`"specVersion": "1.6",`), nil, 1), 1 << 20, ErrMalformed, "specVersion"},
		{"spdx 2.1", bytes.Replace(spdx, []byte(`"SPDX-2.3"`), []byte(`"SPDX-2.1"`), 1), 1 << 20, ErrUnsupportedVersion, "spdxVersion"},
		{"cyclonedx component without name", bytes.Replace(v1, []byte(`"name": "bash",`), nil, 1), 1 << 20, ErrMalformed, "components[0].name"},
		{"cyclonedx bad purl", bytes.Replace(v1, []byte(`"purl": "pkg:deb/debian/bash@`), []byte(`"purl": "deb:bash@`), 1), 1 << 20, ErrMalformed, "components[0].purl"},
		{"cyclonedx wrong type", bytes.Replace(v1, []byte(`"components": [`), []byte(`"components": 7, "x": [`), 1), 1 << 20, ErrMalformed, ""},
		{"spdx package without name", bytes.Replace(spdx, []byte(`"name": "bash",`), nil, 1), 1 << 20, ErrMalformed, "packages[1].name"},
		{"spdx no namespace", bytes.Replace(spdx, []byte(`"documentNamespace"`), []byte(`"x"`), 1), 1 << 20, ErrMalformed, "documentNamespace"},
		{"spdx bad purl", bytes.Replace(spdx, []byte(`"referenceLocator": "pkg:deb/debian/bash@`), []byte(`"referenceLocator": "bash@`), 1), 1 << 20, ErrMalformed, "packages[1].externalRefs[0].referenceLocator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("fw.json", bytes.NewReader(tt.in), tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %v, want %v", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "fw.json" || pe.Field != tt.field {
				t.Fatalf("Parse = %#v, want an *Error for fw.json field %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), "fw.json") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range []string{"rootfs-v1.cdx14.json", "rootfs-v1.spdx22.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library","name":"x","purl":"pkg:npm/x@1"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse("fuzz.json", bytes.NewReader(b), 1<<20)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		for _, c := range d.Components {
			_ = c.Key()
		}
		if !Diff(d, d).Empty() {
			t.Fatal("a document differs from itself")
		}
	})
}
