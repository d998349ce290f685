package exposure

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ossf/osv-schema/bindings/go/osvschema"
	"google.golang.org/protobuf/encoding/protojson"
)

// InputError is a vulnerability file (or a record inside a zip) that was
// refused: which file, which field, and why.
type InputError struct {
	File  string
	Field string // e.g. affected[0].ranges[1].events[2].fixed; "" for the whole file
	Err   error
}

func (e *InputError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.File, e.Field, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// ErrBrokenRange means an OSV range that cannot be evaluated (no
// introduced event, an unknown type, a version that does not parse).
var ErrBrokenRange = errors.New("broken range")

// Record is one OSV vulnerability record, reduced to what exposure uses.
type Record struct {
	ID       string     `json:"id"`
	Aliases  []string   `json:"aliases,omitempty"`
	Summary  string     `json:"summary,omitempty"`
	Affected []Affected `json:"affected"`
	// Source is the file it came from; Raw its bytes.
	Source string `json:"-"`
	Raw    []byte `json:"-"`
}

// Names returns the record's ID and aliases.
func (r *Record) Names() []string { return append([]string{r.ID}, r.Aliases...) }

// Affected is one affected package of a record.
type Affected struct {
	Ecosystem string   `json:"ecosystem"` // as in the record ("Debian:12")
	Base      string   `json:"-"`         // "Debian"
	PURLType  string   `json:"-"`         // "deb"
	Name      string   `json:"name"`
	Ranges    []Range  `json:"ranges,omitempty"`
	Versions  []string `json:"versions,omitempty"`
}

// Range is an ECOSYSTEM or SEMVER range: its events in version order.
type Range struct {
	Order  Ordering `json:"order"`
	Events []Event  `json:"events"`
}

// Event is one OSV range event; exactly one field is set.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

func (e Event) version() string {
	return e.Introduced + e.Fixed + e.LastAffected + e.Limit
}

// ParseOSV parses and checks one OSV JSON record; file names it in errors.
// A record with an unknown ecosystem or a range that cannot be evaluated is
// refused with an *InputError naming the field.
func ParseOSV(file string, b []byte) (*Record, error) {
	var v osvschema.Vulnerability
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &v); err != nil {
		return nil, &InputError{File: file, Err: fmt.Errorf("not an OSV JSON record: %w", err)}
	}
	if v.GetId() == "" {
		return nil, &InputError{File: file, Field: "id", Err: errors.New("missing: every OSV record has an id")}
	}
	r := &Record{ID: v.GetId(), Aliases: v.GetAliases(), Summary: v.GetSummary(), Source: file, Raw: b}
	for i, a := range v.GetAffected() {
		field := fmt.Sprintf("affected[%d]", i)
		p := a.GetPackage()
		if p.GetName() == "" {
			return nil, &InputError{File: file, Field: field + ".package.name", Err: errors.New("missing")}
		}
		base, purl, order, err := Ecosystem(p.GetEcosystem())
		if err != nil {
			return nil, &InputError{File: file, Field: field + ".package.ecosystem", Err: err}
		}
		out := Affected{Ecosystem: p.GetEcosystem(), Base: base, PURLType: purl, Name: p.GetName()}
		for j, ver := range a.GetVersions() {
			if err := validVersion(order, ver); err != nil {
				return nil, &InputError{File: file, Field: fmt.Sprintf("%s.versions[%d]", field, j), Err: err}
			}
			out.Versions = append(out.Versions, ver)
		}
		for j, rg := range a.GetRanges() {
			rfield := fmt.Sprintf("%s.ranges[%d]", field, j)
			var ro Ordering
			switch rg.GetType() {
			case osvschema.Range_GIT:
				continue // commit ranges name no package versions
			case osvschema.Range_ECOSYSTEM:
				ro = order
			case osvschema.Range_SEMVER:
				ro = OrderSemver
				if order == OrderGo {
					ro = OrderGo
				}
			default:
				return nil, &InputError{File: file, Field: rfield + ".type", Err: fmt.Errorf("%w: type %q, want ECOSYSTEM, SEMVER or GIT", ErrBrokenRange, rg.GetType())}
			}
			rr := Range{Order: ro}
			introduced := false
			for k, e := range rg.GetEvents() {
				ev := Event{Introduced: e.GetIntroduced(), Fixed: e.GetFixed(), LastAffected: e.GetLastAffected(), Limit: e.GetLimit()}
				efield := fmt.Sprintf("%s.events[%d]", rfield, k)
				set := 0
				for _, s := range []string{ev.Introduced, ev.Fixed, ev.LastAffected, ev.Limit} {
					if s != "" {
						set++
					}
				}
				if set != 1 {
					return nil, &InputError{File: file, Field: efield, Err: fmt.Errorf("%w: an event has exactly one of introduced, fixed, last_affected, limit; this one has %d", ErrBrokenRange, set)}
				}
				if err := validVersion(ro, ev.version()); err != nil {
					return nil, &InputError{File: file, Field: efield + "." + eventKind(ev), Err: fmt.Errorf("%w: %w", ErrBrokenRange, err)}
				}
				introduced = introduced || ev.Introduced != ""
				rr.Events = append(rr.Events, ev)
			}
			if !introduced {
				return nil, &InputError{File: file, Field: rfield + ".events", Err: fmt.Errorf("%w: no introduced event (use \"0\" for all versions before the fix)", ErrBrokenRange)}
			}
			slices.SortStableFunc(rr.Events, func(x, y Event) int {
				c, _ := Compare(ro, x.version(), y.version())
				return c
			})
			out.Ranges = append(out.Ranges, rr)
		}
		r.Affected = append(r.Affected, out)
	}
	return r, nil
}

func eventKind(e Event) string {
	switch {
	case e.Introduced != "":
		return "introduced"
	case e.Fixed != "":
		return "fixed"
	case e.LastAffected != "":
		return "last_affected"
	}
	return "limit"
}

// Affects reports whether version v of the package is affected: listed in
// Versions, or inside a range (OSV's evaluation: events in version order,
// introduced turns affected on, fixed and a passed last_affected off).
func (a *Affected) Affects(v string) (bool, error) {
	if slices.Contains(a.Versions, v) {
		return true, nil
	}
	for _, r := range a.Ranges {
		if err := validVersion(r.Order, v); err != nil {
			return false, err
		}
		affected := false
		for _, e := range r.Events {
			c, err := Compare(r.Order, v, e.version())
			if err != nil {
				return false, err
			}
			switch {
			case e.Introduced != "" && c >= 0:
				affected = true
			case e.Fixed != "" && c >= 0:
				affected = false
			case e.LastAffected != "" && c > 0:
				affected = false
			case e.Limit != "" && c >= 0:
				affected = false
			}
		}
		if affected {
			return true, nil
		}
	}
	return false, nil
}

// Fixed returns the fixed versions named in the ranges.
func (a *Affected) Fixed() []string {
	var out []string
	for _, r := range a.Ranges {
		for _, e := range r.Events {
			if e.Fixed != "" {
				out = append(out, e.Fixed)
			}
		}
	}
	return out
}
