package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The director's wire format (docs/director.md). A director publishes, for
// each device, TUF metadata of its own (timestamp, snapshot, targets)
// under the director's own root. The device's targets metadata lists at
// most one target: the release assigned to the device, by the same target
// path, length and hashes as the image repository lists it, and a custom
// object
//
//	{"director": {"schema": 1, "device": "…", "hardware": "…", "counter": 17,
//	              "maintenance": {"windows": ["Sat 02:00-04:00"], "timezone": "Europe/Berlin"},
//	              "custom": {…operator data: rollout id, wave…}}}
//
// An empty targets object means "nothing assigned".
//
// Format 2 binds the whole metadata set to the device: the targets
// metadata's signed object carries {"director": {"device": "…", "schema": 2}}
// (DirectorBinding, a field TUF lets formats add), also when it names no
// target, and the snapshot lists the targets' length and sha256 (the
// timestamp already lists the snapshot's). The assignment object above is
// unchanged and still says "schema": 1, so format-1 agents read format 2.

// DirectorSchema is the newest director assignment schema this code
// understands.
const DirectorSchema = 1

// DirectorFormat is the director wire format this code writes and
// requires: 2, every device's targets carry a DirectorBinding.
const DirectorFormat = 2

// DirectorBinding is the "director" object of a director targets
// metadata's signed object (format 2): the device it is for.
type DirectorBinding struct {
	Device string `json:"device"`
	Schema int    `json:"schema"`
}

// MarshalBinding returns the canonical binding of director targets to
// deviceID.
func MarshalBinding(deviceID string) (json.RawMessage, error) {
	if !ValidDeviceID(deviceID) {
		return nil, fmt.Errorf("%w: device ID %q", ErrInvalidAssignment, deviceID)
	}
	return Canonicalize(fmt.Appendf(nil, `{"device":%q,"schema":%d}`, deviceID, DirectorFormat))
}

// ParseBinding decodes the "director" object of director targets; none
// (format 1) is refused.
func ParseBinding(raw []byte) (*DirectorBinding, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: the targets name no device (director format 1: upgrade fwrepo)", ErrInvalidAssignment)
	}
	var b DirectorBinding
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidAssignment, err)
	}
	switch {
	case b.Schema < DirectorFormat:
		return nil, fmt.Errorf("%w: binding schema %d, want %d", ErrInvalidAssignment, b.Schema, DirectorFormat)
	case b.Schema > DirectorFormat:
		return nil, fmt.Errorf("%w: director format %d, this program understands up to %d; upgrade fwagent", ErrUnsupportedSchema, b.Schema, DirectorFormat)
	case !ValidDeviceID(b.Device):
		return nil, fmt.Errorf("%w: device ID %q", ErrInvalidAssignment, b.Device)
	}
	return &b, nil
}

// TargetsBinding decodes the binding of a whole director targets document
// (the JSON of the signed metadata file): its signed.director object.
func TargetsBinding(targets []byte) (*DirectorBinding, error) {
	var doc struct {
		Signed struct {
			Director json.RawMessage `json:"director"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(targets, &doc); err != nil {
		return nil, fmt.Errorf("%w: director targets: %v", ErrInvalidAssignment, err)
	}
	return ParseBinding(doc.Signed.Director)
}

// ErrInvalidAssignment means a director assignment is malformed.
var ErrInvalidAssignment = errors.New("invalid director assignment")

// DirectorRoot is where a director's root chain lives, in the store and
// under a director URL: DirectorRoot + "/N.root.json".
const DirectorRoot = "director/metadata"

// DirectorDevice returns the path (in the store and under the server's
// base URL) of the directory holding one device's director metadata:
// timestamp.json, N.snapshot.json, N.targets.json. The server also serves
// the director root chain under it (N.root.json), so that a TUF client
// pointed at it finds the whole repository in one place.
func DirectorDevice(deviceID string) string { return "director/devices/" + deviceID + "/metadata" }

// Assignment is the "director" object of a director target's custom
// metadata: which device the target is for, the hardware and counter the
// image repository must agree on, an optional maintenance window and the
// operator's own data (opaque to the device).
type Assignment struct {
	Schema      int             `json:"schema"`
	Device      string          `json:"device"`
	Hardware    string          `json:"hardware"`
	Counter     uint64          `json:"counter"`
	Maintenance *Maintenance    `json:"maintenance,omitempty"`
	Custom      json.RawMessage `json:"custom,omitempty"`
}

// Maintenance says when a device may download, install and reboot: windows
// in local time of Timezone (an IANA zone such as "Europe/Berlin"; empty:
// the device's local time). Windows applies to every phase that has no
// list of its own. No window at all means any time.
type Maintenance struct {
	Windows  []string `json:"windows,omitempty"`
	Timezone string   `json:"timezone,omitempty"`
	Download []string `json:"download,omitempty"`
	Install  []string `json:"install,omitempty"`
	Reboot   []string `json:"reboot,omitempty"`
}

// Validate checks the window syntax (not the time zone, which only a device
// with zoneinfo can look up).
func (m *Maintenance) Validate() error {
	if m == nil {
		return nil
	}
	for _, l := range [][]string{m.Windows, m.Download, m.Install, m.Reboot} {
		for _, w := range l {
			if _, err := ParseWindow(w); err != nil {
				return err
			}
		}
	}
	if m.Timezone != "" && !runOf(m.Timezone, "/_+-", 1, 64) {
		return fmt.Errorf("%w: time zone %q is not an IANA zone name", ErrInvalidAssignment, m.Timezone)
	}
	return nil
}

// directorCustom is a director target's whole custom object.
type directorCustom struct {
	Director *Assignment `json:"director"`
}

// Validate checks a and says what is wrong.
func (a *Assignment) Validate() error {
	switch {
	case a.Schema < 1:
		return fmt.Errorf("%w: schema %d, want >= 1", ErrInvalidAssignment, a.Schema)
	case a.Schema > DirectorSchema:
		return fmt.Errorf("%w: director schema %d, this program understands up to %d; upgrade fwagent", ErrUnsupportedSchema, a.Schema, DirectorSchema)
	case !ValidDeviceID(a.Device):
		return fmt.Errorf("%w: device ID %q (want letters, digits, '.', '_', ':', '-', at most 128)", ErrInvalidAssignment, a.Device)
	case !ValidHardwareID(a.Hardware):
		return fmt.Errorf("%w: hardware ID %q", ErrInvalidAssignment, a.Hardware)
	}
	if len(a.Custom) > 0 {
		if !bytes.HasPrefix(bytes.TrimSpace(a.Custom), []byte("{")) {
			return fmt.Errorf("%w: custom must be a JSON object", ErrInvalidAssignment)
		}
		c, err := Canonicalize(a.Custom)
		if err != nil {
			return fmt.Errorf("%w: custom: %w", ErrInvalidAssignment, err)
		}
		// TUF's canonical form writes strings raw; only printable text
		// encodes the same in both, so escapes are refused.
		if bytes.Contains(c, []byte(`\`)) {
			return fmt.Errorf("%w: custom: strings must be printable without escapes", ErrInvalidAssignment)
		}
	}
	if err := a.Maintenance.Validate(); err != nil {
		return fmt.Errorf("%w: maintenance: %w", ErrInvalidAssignment, err)
	}
	return nil
}

// MarshalAssignment returns the custom object {"director": a} in canonical
// form, after validating a.
func MarshalAssignment(a *Assignment) (json.RawMessage, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(directorCustom{Director: a})
	if err != nil {
		return nil, err
	}
	return Canonicalize(b)
}

// ParseAssignment extracts and validates the "director" object of a
// director target's custom metadata.
func ParseAssignment(raw []byte) (*Assignment, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: no custom metadata", ErrInvalidAssignment)
	}
	var c directorCustom
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidAssignment, err)
	}
	if c.Director == nil {
		return nil, fmt.Errorf("%w: no \"director\" object in custom", ErrInvalidAssignment)
	}
	if err := c.Director.Validate(); err != nil {
		return nil, err
	}
	return c.Director, nil
}

// Window is one parsed maintenance window: on the days of the week in Days
// (bit d for time.Weekday d), from Start to End minutes after local
// midnight. End <= Start means the window runs past midnight into the next
// day (it belongs to the day it starts on).
type Window struct {
	Days       uint8
	Start, End int // minutes, 0..1439 and 1..1440
}

var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseWindow parses "DAYS HH:MM-HH:MM": DAYS is "daily", "*", a day
// ("Sat"), a range ("Mon-Fri", which may wrap: "Fri-Mon") or a comma list
// of those ("Sat,Sun"). "22:00-02:00" runs past midnight; "00:00-24:00" is
// the whole day.
func ParseWindow(s string) (Window, error) {
	var w Window
	bad := func(why string) (Window, error) {
		return Window{}, fmt.Errorf("%w: maintenance window %q: %s (want e.g. \"Sat 02:00-04:00\", \"Mon-Fri 22:00-02:00\", \"daily 01:00-03:00\")", ErrInvalidAssignment, s, why)
	}
	days, times, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return bad("no time range")
	}
	times = strings.TrimSpace(times)
	switch strings.ToLower(days) {
	case "daily", "*":
		w.Days = 0x7f
	default:
		for _, part := range strings.Split(days, ",") {
			a, b, isRange := strings.Cut(part, "-")
			da, ok1 := dayIndex(a)
			db, ok2 := da, true
			if isRange {
				db, ok2 = dayIndex(b)
			}
			if !ok1 || !ok2 {
				return bad("unknown day in " + strconv.Quote(part))
			}
			for d := da; ; d = (d + 1) % 7 {
				w.Days |= 1 << d
				if d == db {
					break
				}
			}
		}
	}
	from, to, ok := strings.Cut(times, "-")
	if !ok {
		return bad("no '-' in the time range")
	}
	var err1, err2 error
	w.Start, err1 = clock(from, false)
	w.End, err2 = clock(to, true)
	if err1 != nil || err2 != nil {
		return bad("times must be HH:MM, 00:00 to 24:00")
	}
	if w.Start == w.End {
		return bad("empty window")
	}
	return w, nil
}

var fullDayNames = [7]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// dayIndex accepts "Sat" or "Saturday", in any case.
func dayIndex(s string) (int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i := range dayNames {
		if s == dayNames[i] || s == fullDayNames[i] {
			return i, true
		}
	}
	return 0, false
}

// clock parses HH:MM as minutes after midnight; 24:00 only as an end.
func clock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, errors.New("bad time")
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && (mm != 0 || !end) {
		return 0, errors.New("bad time")
	}
	return hh*60 + mm, nil
}
