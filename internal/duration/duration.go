// Package duration owns the one syntax for durations in fwctl's configs and
// flags: a Go duration ("90s", "1h30m") or a whole number of days ("30d"),
// which release engineers use for expiry and device owners for intervals.
// It is a leaf: it imports nothing of ours and does no I/O.
package duration

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxDays keeps N*24h within time.Duration (about 292 years).
const maxDays = 106_000

// Parse reads a Go duration, a whole number of days ("30d"), or days
// followed by a Go duration ("1d12h", as Format writes). It accepts zero
// and, as time.ParseDuration does, negative Go durations; callers that
// need a positive duration use Positive.
func Parse(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q: want a Go duration such as 90s or 12h, or whole days such as 30d", s)
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil || days < 0 || days > maxDays || strings.ContainsAny(s[:i], "+-") {
			return 0, bad
		}
		d := time.Duration(days) * 24 * time.Hour
		if rest := s[i+1:]; rest != "" {
			r, err := time.ParseDuration(rest)
			if err != nil || r < 0 || strings.HasPrefix(rest, "+") || r > math.MaxInt64-d {
				return 0, bad
			}
			d += r
		}
		return d, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, bad
	}
	return d, nil
}

// Format writes d as people read it and Parse reads it back: whole days
// as "30d", days and the rest as "89d23h59m", and no zero units ("1h",
// not "1h0m0s"; "0s" for zero).
func Format(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
		if d < 0 { // math.MinInt64
			return time.Duration(d).String()
		}
	}
	days := d / (24 * time.Hour)
	rest := d - days*24*time.Hour
	out := ""
	if days > 0 {
		out = strconv.FormatInt(int64(days), 10) + "d"
	}
	if rest > 0 || days == 0 {
		r := rest.String()
		if strings.HasSuffix(r, "m0s") {
			r = strings.TrimSuffix(r, "0s")
		}
		if strings.HasSuffix(r, "h0m") {
			r = strings.TrimSuffix(r, "0m")
		}
		out += r
	}
	if sign != "" && days > 0 {
		// Parse does not read a negative day count; write a Go duration.
		return "-" + d.String()
	}
	return sign + out
}

// Positive is Parse for durations that must be above zero (expiry, windows).
func Positive(s string) (time.Duration, error) {
	d, err := Parse(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("invalid duration %q: must be more than zero, e.g. 24h or 30d", s)
	}
	return d, err
}

// Duration is a time.Duration that reads from JSON as Parse reads strings
// and writes as time.Duration.String ("720h0m0s").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"1h\" or \"30d\": %w", err)
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Flag is a command-line flag value (it satisfies pflag.Value and
// flag.Value) that parses with Parse into *D.
type Flag struct{ D *time.Duration }

// String implements flag.Value.
func (f Flag) String() string {
	if f.D == nil {
		return ""
	}
	return Format(*f.D)
}

// Set implements flag.Value.
func (f Flag) Set(s string) error {
	d, err := Parse(s)
	if err != nil {
		return err
	}
	*f.D = d
	return nil
}

// Type implements pflag.Value.
func (f Flag) Type() string { return "duration" }
