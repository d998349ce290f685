package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseCustom(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"full", `{"fw":{"schema":1,"hardware":["acme-gw-v2"],"version":"2.4.1","counter":17,"kind":"full"}}`, nil},
		{"delta", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"delta","base":{"sha256":"` + sha + `","length":3},"image":{"sha256":"` + sha + `","length":4}}}`, nil},
		{"unknown fields kept", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"full","future":{"x":1}},"other":true}`, nil},
		{"newer schema", `{"fw":{"schema":3,"hardware":["h"],"version":"1","counter":1,"kind":"full"}}`, ErrUnsupportedSchema},
		{"schema 1 sbom path", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":"h/1/sbom.json"}}`, nil},
		{"schema 2 sbom binding", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":{"path":"h/1/fw.img.cdx.json","format":"cyclonedx","sha256":"` + sha + `"},"support_until":"2030-12-31"}}`, nil},
		{"schema 2 plain", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full"}}`, nil},
		{"sbom binding in schema 1", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":{"path":"p","format":"spdx","sha256":"` + sha + `"}}}`, ErrInvalidTarget},
		{"support_until in schema 1", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"full","support_until":"2030-12-31"}}`, ErrInvalidTarget},
		{"sbom path string in schema 2", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":"h/1/sbom.json"}}`, ErrInvalidTarget},
		{"sbom bad format", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":{"path":"p","format":"swid","sha256":"` + sha + `"}}}`, ErrInvalidTarget},
		{"sbom bad sha256", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":{"path":"p","format":"spdx","sha256":"abc"}}}`, ErrInvalidTarget},
		{"sbom no path", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":{"format":"spdx","sha256":"` + sha + `"}}}`, ErrInvalidTarget},
		{"sbom not an object", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full","sbom":7}}`, ErrInvalidTarget},
		{"bad support date", `{"fw":{"schema":2,"hardware":["h"],"version":"1","counter":1,"kind":"full","support_until":"31.12.2030"}}`, ErrInvalidTarget},
		{"no fw", `{"other":1}`, ErrNotFirmware},
		{"empty", ``, ErrNotFirmware},
		{"not json", `{`, ErrInvalidTarget},
		{"no hardware", `{"fw":{"schema":1,"hardware":[],"version":"1","counter":1,"kind":"full"}}`, ErrInvalidTarget},
		{"bad hardware", `{"fw":{"schema":1,"hardware":["../x"],"version":"1","counter":1,"kind":"full"}}`, ErrInvalidTarget},
		{"bad version", `{"fw":{"schema":1,"hardware":["h"],"version":"","counter":1,"kind":"full"}}`, ErrInvalidTarget},
		{"bad kind", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"partial"}}`, ErrInvalidTarget},
		{"delta without base", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"delta"}}`, ErrInvalidTarget},
		{"negative counter", `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":-1,"kind":"full"}}`, ErrInvalidTarget},
		{"schema zero", `{"fw":{"schema":0,"hardware":["h"],"version":"1","counter":1,"kind":"full"}}`, ErrInvalidTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCustom([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseCustom = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestUnknownFieldsRoundTrip(t *testing.T) {
	in := `{"fw":{"schema":1,"hardware":["h"],"version":"1","counter":1,"kind":"full","future":{"x":1}}}`
	f, err := ParseCustom([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := MarshalCustom(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"future":{"x":1}`)) {
		t.Fatalf("unknown field dropped: %s", out)
	}
}

// TestGolden pins the wire format: the vectors in testdata must parse, and
// marshalling what they parse to must give the same bytes back.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/target-*.json")
	if len(files) == 0 {
		t.Fatal("no golden vectors")
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			want, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			f, err := ParseCustom(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := MarshalCustom(f)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			json.Unmarshal(want, &a)
			json.Unmarshal(got, &b)
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if !bytes.Equal(ja, jb) {
				t.Fatalf("round trip changed the vector:\nwant %s\ngot  %s", ja, jb)
			}
		})
	}
}

func FuzzParseCustom(f *testing.F) {
	files, _ := filepath.Glob("testdata/target-*.json")
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fw, err := ParseCustom(b)
		if err != nil {
			return
		}
		out, err := MarshalCustom(fw)
		if err != nil {
			t.Fatalf("valid metadata does not marshal: %v", err)
		}
		if _, err := ParseCustom(out); err != nil {
			t.Fatalf("marshalled metadata does not parse: %v", err)
		}
	})
}

func TestNeededSchema(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		f    Firmware
		want int
	}{
		{"plain", Firmware{}, SchemaBase},
		{"legacy sbom", Firmware{SBOM: &SBOMRef{Legacy: "p"}}, SchemaBase},
		{"sbom binding", Firmware{SBOM: &SBOMRef{Path: "p", Format: SBOMSPDX, SHA256: sha}}, 2},
		{"support period", Firmware{SupportUntil: "2030-12-31"}, 2},
	}
	for _, tt := range tests {
		if got := tt.f.NeededSchema(); got != tt.want {
			t.Errorf("%s: NeededSchema = %d, want %d", tt.name, got, tt.want)
		}
	}
	f := Firmware{SupportUntil: "2030-12-31"}
	if end, ok := f.SupportEnd(); !ok || end.Format(time.RFC3339) != "2031-01-01T00:00:00Z" {
		t.Errorf("SupportEnd = %v %v", end, ok)
	}
}
