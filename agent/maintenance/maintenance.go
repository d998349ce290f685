// Package maintenance decides when a device may download, install and
// reboot: maintenance windows in local time ("Sat 02:00-04:00" in
// "Europe/Berlin"), one list per phase with a shared default, from the
// device's config and, optionally, a rollout's director assignment (both
// must allow). Windows are read on the wall clock of their time zone, so a
// window on a daylight-saving day is as long as the wall clock says (an
// hour shorter or longer), and one past midnight belongs to the day it
// starts on. Time zones come from the system's zoneinfo: the agent does
// not embed time/tzdata (its size budget).
//
// Decisions are pure functions of (schedule, time); only Load reads the
// zoneinfo.
package maintenance

import (
	"errors"
	"fmt"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// Phases of an update.
const (
	Download = "download"
	Install  = "install"
	Reboot   = "reboot"
)

// ErrUnknownZone means the time zone is not in the system's zoneinfo.
var ErrUnknownZone = errors.New("unknown time zone")

// Schedule is a parsed maintenance configuration.
type Schedule struct {
	loc    *time.Location
	phases map[string][]manifests.Window // nil list: any time
}

// Load parses m, looking its time zone up in the system zoneinfo (empty:
// the device's local time). A nil m allows everything.
func Load(m *manifests.Maintenance) (*Schedule, error) {
	if m == nil {
		return &Schedule{loc: time.Local}, nil
	}
	loc := time.Local
	if m.Timezone != "" {
		l, err := time.LoadLocation(m.Timezone)
		if err != nil {
			return nil, fmt.Errorf("%w %q: the system has no zoneinfo for it (install the tzdata package, or set $ZONEINFO): %v", ErrUnknownZone, m.Timezone, err)
		}
		loc = l
	}
	return New(m, loc)
}

// New parses m's windows in loc.
func New(m *manifests.Maintenance, loc *time.Location) (*Schedule, error) {
	s := &Schedule{loc: loc, phases: map[string][]manifests.Window{}}
	if m == nil {
		return s, nil
	}
	for phase, list := range map[string][]string{Download: m.Download, Install: m.Install, Reboot: m.Reboot} {
		if len(list) == 0 {
			list = m.Windows
		}
		for _, w := range list {
			pw, err := manifests.ParseWindow(w)
			if err != nil {
				return nil, err
			}
			s.phases[phase] = append(s.phases[phase], pw)
		}
	}
	return s, nil
}

// Open reports whether phase may run at t.
func (s *Schedule) Open(phase string, t time.Time) bool {
	ws := s.phases[phase]
	if len(ws) == 0 {
		return true
	}
	lt := t.In(s.loc)
	day := int(lt.Weekday())
	minute := lt.Hour()*60 + lt.Minute()
	prev := (day + 6) % 7
	for _, w := range ws {
		if w.End > w.Start {
			if w.Days&(1<<day) != 0 && minute >= w.Start && minute < w.End {
				return true
			}
			continue
		}
		// Past midnight: the evening of a window day, or the morning after.
		if w.Days&(1<<day) != 0 && minute >= w.Start || w.Days&(1<<prev) != 0 && minute < w.End {
			return true
		}
	}
	return false
}

// Next returns the first minute at or after t when phase may run (t itself
// when it may run now; the zero time if no window opens within 8 days).
func (s *Schedule) Next(phase string, t time.Time) time.Time {
	if s.Open(phase, t) {
		return t
	}
	c := t.Truncate(time.Minute)
	for i := 0; i < 8*24*60; i++ {
		c = c.Add(time.Minute)
		if s.Open(phase, c) {
			return c
		}
	}
	return time.Time{}
}

// All reports whether every schedule allows phase at t (the device's own
// and a rollout's); nil schedules allow everything.
func All(phase string, t time.Time, ss ...*Schedule) bool {
	for _, s := range ss {
		if s != nil && !s.Open(phase, t) {
			return false
		}
	}
	return true
}

// NextAll is the first minute at or after t that every schedule allows
// phase (zero if none within 8 days).
func NextAll(phase string, t time.Time, ss ...*Schedule) time.Time {
	c := t
	for i := 0; i < 8*24*60; i++ {
		if All(phase, c, ss...) {
			return c
		}
		c = c.Truncate(time.Minute).Add(time.Minute)
	}
	return time.Time{}
}
