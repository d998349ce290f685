package maintenance

import (
	"errors"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("the test needs the system zoneinfo (tzdata): %v", err)
	}
	return loc
}

func TestOpen(t *testing.T) {
	loc := berlin(t)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name    string
		windows []string
		t       time.Time
		want    bool
	}{
		{"inside", []string{"Sat 02:00-04:00"}, at("2026-12-05 03:00"), true}, // a Saturday
		{"start is inside", []string{"Sat 02:00-04:00"}, at("2026-12-05 02:00"), true},
		{"end is outside", []string{"Sat 02:00-04:00"}, at("2026-12-05 04:00"), false},
		{"other day", []string{"Sat 02:00-04:00"}, at("2026-12-06 03:00"), false},
		{"local, not UTC", []string{"Sat 02:00-04:00"}, utc("2026-12-05 01:30"), true}, // 02:30 CET
		{"UTC 02:30 is 03:30 CET", []string{"Sat 02:00-04:00"}, utc("2026-12-05 03:30"), false},
		{"range of days", []string{"Mon-Fri 09:00-17:00"}, at("2026-12-02 12:00"), true},
		{"range excludes weekend", []string{"Mon-Fri 09:00-17:00"}, at("2026-12-05 12:00"), false},
		{"wrapping range", []string{"Fri-Mon 01:00-02:00"}, at("2026-12-06 01:30"), true},
		{"list", []string{"Sat,Sun 01:00-02:00"}, at("2026-12-06 01:30"), true},
		{"daily", []string{"daily 01:00-02:00"}, at("2026-12-02 01:59"), true},
		{"past midnight, evening", []string{"Sat 22:00-02:00"}, at("2026-12-05 23:00"), true},
		{"past midnight, next morning", []string{"Sat 22:00-02:00"}, at("2026-12-06 01:00"), true},
		{"past midnight, morning of the start day", []string{"Sat 22:00-02:00"}, at("2026-12-05 01:00"), false},
		{"past midnight, after the end", []string{"Sat 22:00-02:00"}, at("2026-12-06 02:00"), false},
		{"whole day", []string{"Sun 00:00-24:00"}, at("2026-12-06 23:59"), true},
		{"two windows, second", []string{"Sat 02:00-04:00", "Wed 12:00-13:00"}, at("2026-12-02 12:30"), true},
		// 29 March 2026: 02:00 CET jumps to 03:00 CEST; the window keeps
		// its wall-clock end (one hour long that day).
		{"spring forward: before the gap", []string{"Sun 01:00-04:00"}, utc("2026-03-29 00:30"), true},         // 01:30 CET
		{"spring forward: after the gap", []string{"Sun 01:00-04:00"}, utc("2026-03-29 01:30"), true},          // 03:30 CEST
		{"spring forward: end on the wall clock", []string{"Sun 01:00-04:00"}, utc("2026-03-29 02:00"), false}, // 04:00 CEST
		{"spring forward: window in the gap", []string{"Sun 02:00-03:00"}, utc("2026-03-29 01:00"), false},     // 03:00 CEST
		// 25 October 2026: 03:00 CEST goes back to 02:00 CET; 02:xx comes twice.
		{"fall back: first 02:30", []string{"Sun 02:00-03:00"}, utc("2026-10-25 00:30"), true},  // 02:30 CEST
		{"fall back: second 02:30", []string{"Sun 02:00-03:00"}, utc("2026-10-25 01:30"), true}, // 02:30 CET
		{"fall back: after", []string{"Sun 02:00-03:00"}, utc("2026-10-25 02:00"), false},       // 03:00 CET
		{"no windows: any time", nil, at("2026-12-02 12:00"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(&manifests.Maintenance{Windows: tt.windows}, loc)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Open(Install, tt.t); got != tt.want {
				t.Fatalf("Open(%s) = %v, want %v", tt.t.In(loc).Format("Mon 2006-01-02 15:04 MST"), got, tt.want)
			}
		})
	}
}

func TestPhasesAndNext(t *testing.T) {
	loc := berlin(t)
	s, err := New(&manifests.Maintenance{Windows: []string{"Sat 02:00-04:00"}, Download: []string{"daily 00:00-24:00"}, Reboot: []string{"Sun 03:00-03:30"}}, loc)
	if err != nil {
		t.Fatal(err)
	}
	wed := time.Date(2026, 12, 2, 12, 0, 0, 0, loc)
	if !s.Open(Download, wed) || s.Open(Install, wed) || s.Open(Reboot, wed) {
		t.Fatal("phases do not use their own lists with Windows as the default")
	}
	if got, want := s.Next(Install, wed), time.Date(2026, 12, 5, 2, 0, 0, 0, loc); !got.Equal(want) {
		t.Fatalf("Next(install) = %s, want %s", got, want)
	}
	rollout, _ := New(&manifests.Maintenance{Windows: []string{"Sat 03:00-05:00"}}, loc)
	if got, want := NextAll(Install, wed, s, rollout), time.Date(2026, 12, 5, 3, 0, 0, 0, loc); !got.Equal(want) {
		t.Fatalf("NextAll = %s, want %s (both windows)", got, want)
	}
	if All(Install, time.Date(2026, 12, 5, 2, 30, 0, 0, loc), s, rollout) {
		t.Fatal("All allowed a time only the device's window allows")
	}
}

func TestLoadUnknownZone(t *testing.T) {
	_, err := Load(&manifests.Maintenance{Windows: []string{"Sat 02:00-04:00"}, Timezone: "Mars/Olympus_Mons"})
	if !errors.Is(err, ErrUnknownZone) {
		t.Fatalf("Load = %v, want ErrUnknownZone naming the zone", err)
	}
	if _, err := New(&manifests.Maintenance{Windows: []string{"Caturday 02:00-04:00"}}, time.UTC); !errors.Is(err, manifests.ErrInvalidAssignment) {
		t.Fatalf("bad day: %v", err)
	}
}
