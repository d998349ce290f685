package duration

import (
	"encoding/json"
	"flag"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"30d", 30 * 24 * time.Hour, false},
		{"0d", 0, false},
		{"1h30m", 90 * time.Minute, false},
		{"100ms", 100 * time.Millisecond, false},
		{"0s", 0, false},
		{"-1s", -time.Second, false},
		{"1.5d", 0, true},
		{"-1d", 0, true},
		{"d", 0, true},
		{"30", 0, true},
		{"", 0, true},
		{"999999999d", 0, true},
	} {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	for _, s := range []string{"0s", "0d", "-1h"} {
		if _, err := Positive(s); err == nil {
			t.Errorf("Positive(%q) accepted a non-positive duration", s)
		}
	}
}

func TestJSONAndFlag(t *testing.T) {
	var v struct{ D Duration }
	if err := json.Unmarshal([]byte(`{"D":"7d"}`), &v); err != nil || time.Duration(v.D) != 7*24*time.Hour {
		t.Fatalf("unmarshal 7d: %v, %v", v.D, err)
	}
	if err := json.Unmarshal([]byte(`{"D":7}`), &v); err == nil {
		t.Fatal("a number was accepted as a duration")
	}
	b, _ := json.Marshal(v)
	if string(b) != `{"D":"168h0m0s"}` {
		t.Fatalf("marshal: %s", b)
	}
	var d time.Duration
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Var(Flag{&d}, "within", "")
	if err := fs.Parse([]string{"-within", "30d"}); err != nil || d != 30*24*time.Hour {
		t.Fatalf("flag 30d: %v, %v", d, err)
	}
}

// FuzzParse: Parse never panics and agrees with time.ParseDuration on
// everything without a day suffix.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"30d", "1h", "0", "-5m", "1.5d", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if len(s) > 0 && s[len(s)-1] == 'd' {
			return
		}
		want, werr := time.ParseDuration(s)
		if (err == nil) != (werr == nil) || d != want {
			t.Fatalf("Parse(%q) = %v, %v; time.ParseDuration = %v, %v", s, d, err, want, werr)
		}
	})
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{24 * time.Hour, "1d"},
		{8760 * time.Hour, "365d"},
		{36 * time.Hour, "1d12h"},
		{2159*time.Hour + 59*time.Minute, "89d23h59m"},
		{1500 * time.Millisecond, "1.5s"},
		{-time.Hour, "-1h"},
		{-36 * time.Hour, "-36h0m0s"},
	} {
		got := Format(c.d)
		if got != c.want {
			t.Errorf("Format(%v) = %q, want %q", c.d, got, c.want)
		}
		if back, err := Parse(got); err != nil || back != c.d {
			t.Errorf("Parse(Format(%v)) = %v, %v", c.d, back, err)
		}
	}
}

func FuzzFormat(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(36 * time.Hour))
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		if back, err := Parse(Format(d)); err != nil || back != d {
			t.Fatalf("Parse(Format(%d)) = %v, %v (%q)", n, back, err, Format(d))
		}
	})
}

func TestParseDaysAndRest(t *testing.T) {
	for _, bad := range []string{"1.5d", "d", "-1d", "+1d", "1d-1h", "1d+1h", "1dx", "106000d2562047h"} {
		if d, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", bad, d)
		}
	}
}
