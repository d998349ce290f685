package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// TestDirectorGolden pins the director assignment format, schema 1: the
// vector parses, and marshalling it gives the same canonical bytes back.
func TestDirectorGolden(t *testing.T) {
	want, err := os.ReadFile("testdata/director-v1-assignment.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseAssignment(want)
	if err != nil {
		t.Fatal(err)
	}
	if a.Device != "3f9a0c" || a.Counter != 17 || a.Maintenance.Timezone != "Europe/Berlin" || string(a.Custom) != `{"rollout":"r-42","wave":2}` {
		t.Fatalf("parsed %+v", a)
	}
	got, err := MarshalAssignment(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("round trip changed the vector:\nwant %s\ngot  %s", want, got)
	}
}

func TestParseAssignment(t *testing.T) {
	ok := `{"schema":1,"device":"d1","hardware":"gw","counter":1}`
	tests := []struct {
		name, in string
		want     error
	}{
		{"ok", `{"director":` + ok + `}`, nil},
		{"newer schema", `{"director":{"schema":2,"device":"d1","hardware":"gw","counter":1}}`, ErrUnsupportedSchema},
		{"no director", `{"fw":{}}`, ErrInvalidAssignment},
		{"empty", ``, ErrInvalidAssignment},
		{"bad device", `{"director":{"schema":1,"device":"../d","hardware":"gw","counter":1}}`, ErrInvalidAssignment},
		{"bad hardware", `{"director":{"schema":1,"device":"d","hardware":"","counter":1}}`, ErrInvalidAssignment},
		{"negative counter", `{"director":{"schema":1,"device":"d","hardware":"gw","counter":-1}}`, ErrInvalidAssignment},
		{"custom not an object", `{"director":{"schema":1,"device":"d","hardware":"gw","counter":1,"custom":[1]}}`, ErrInvalidAssignment},
		{"bad window", `{"director":{"schema":1,"device":"d","hardware":"gw","counter":1,"maintenance":{"windows":["never"]}}}`, ErrInvalidAssignment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseAssignment([]byte(tt.in)); !errors.Is(err, tt.want) {
				t.Fatalf("ParseAssignment = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in         string
		days       uint8
		start, end int
		bad        bool
	}{
		{in: "Sat 02:00-04:00", days: 1 << 6, start: 120, end: 240},
		{in: "saturday 02:00-04:00", days: 1 << 6, start: 120, end: 240},
		{in: "Mon-Fri 22:00-02:00", days: 0b0111110, start: 1320, end: 120},
		{in: "Fri-Mon 01:00-02:00", days: 0b1100011, start: 60, end: 120},
		{in: "Sat,Sun 00:00-24:00", days: 0b1000001, start: 0, end: 1440},
		{in: "daily 01:00-03:00", days: 0x7f, start: 60, end: 180},
		{in: "* 01:00-03:00", days: 0x7f, start: 60, end: 180},
		{in: "Sat", bad: true},
		{in: "Sat 2:00-4:00", bad: true},
		{in: "Sat 02:00-02:00", bad: true},
		{in: "Sat 24:00-02:00", bad: true},
		{in: "Sat 02:60-03:00", bad: true},
		{in: "Caturday 02:00-04:00", bad: true},
		{in: "Sat 02:00", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrInvalidAssignment) {
				t.Errorf("ParseWindow(%q) = %+v, %v; want an error", tt.in, w, err)
			}
			continue
		}
		if err != nil || w.Days != tt.days || w.Start != tt.start || w.End != tt.end {
			t.Errorf("ParseWindow(%q) = %+v, %v; want days %07b %d-%d", tt.in, w, err, tt.days, tt.start, tt.end)
		}
	}
}

func FuzzParseAssignment(f *testing.F) {
	b, _ := os.ReadFile("testdata/director-v1-assignment.json")
	f.Add(b)
	f.Add([]byte(`{"director":{"schema":1,"device":"d","hardware":"gw","counter":1,"custom":{"a":[1,{"b":"c"}]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAssignment(b)
		if err != nil {
			return
		}
		out, err := MarshalAssignment(a)
		if err != nil {
			t.Fatalf("a parsed assignment does not marshal: %v", err)
		}
		if _, err := ParseAssignment(out); err != nil {
			t.Fatalf("marshalled assignment does not parse: %v\n%s", err, out)
		}
		var v any
		if json.Unmarshal(out, &v) != nil {
			t.Fatal("not JSON")
		}
	})
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"Sat 02:00-04:00", "Mon-Fri 22:00-02:00", "daily 00:00-24:00", "Sat,Sun 01:00-02:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		if w.Days == 0 || w.Days > 0x7f || w.Start < 0 || w.Start > 1439 || w.End < 1 || w.End > 1440 || w.Start == w.End {
			t.Fatalf("ParseWindow(%q) = %+v", s, w)
		}
	})
}

// TestDirectorBindingGolden pins the director format 2 binding (the
// "director" object of a device's targets metadata): the vector parses
// and MarshalBinding writes it byte for byte; format 1 (none), another
// schema and a bad device ID are refused.
func TestDirectorBindingGolden(t *testing.T) {
	want, err := os.ReadFile("testdata/director-v2-binding.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseBinding(want)
	if err != nil || b.Device != "3f9a0c" || b.Schema != 2 {
		t.Fatalf("ParseBinding = %+v, %v", b, err)
	}
	if got, err := MarshalBinding("3f9a0c"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("MarshalBinding = %s, %v; want %s", got, err, want)
	}
	for in, wantErr := range map[string]error{
		``:                               ErrInvalidAssignment,
		`{"device":"3f9a0c"}`:            ErrInvalidAssignment,
		`{"device":"3f9a0c","schema":1}`: ErrInvalidAssignment,
		`{"device":"3f9a0c","schema":3}`: ErrUnsupportedSchema,
		`{"device":"a/b","schema":2}`:    ErrInvalidAssignment,
		`[]`:                             ErrInvalidAssignment,
	} {
		if _, err := ParseBinding([]byte(in)); !errors.Is(err, wantErr) {
			t.Errorf("ParseBinding(%s) = %v, want %v", in, err, wantErr)
		}
	}
	if _, err := MarshalBinding("a/b"); !errors.Is(err, ErrInvalidAssignment) {
		t.Errorf("MarshalBinding(a/b) = %v", err)
	}
}
