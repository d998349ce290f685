// Package duration owns the one syntax for durations in fwctl's configs and
// flags: a Go duration ("90s", "1h30m") or a whole number of days ("30d"),
// which release engineers use for expiry and device owners for intervals.
// It is a leaf: it imports nothing of ours and does no I/O.
package duration

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxDays keeps N*24h within time.Duration (about 292 years).
const maxDays = 106_000

// Parse reads a Go duration or a whole number of days ("30d"). It accepts
// zero and, as time.ParseDuration does, negative Go durations; callers that
// need a positive duration use Positive.
func Parse(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > maxDays {
			return 0, fmt.Errorf("invalid duration %q: want a Go duration such as 90s or 12h, or whole days such as 30d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as 90s or 12h, or whole days such as 30d", s)
	}
	return d, nil
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
	return f.D.String()
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
