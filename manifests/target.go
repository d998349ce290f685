// Package manifests defines the wire formats shared by fwctl, fwrepo and
// fwagent: the custom metadata every firmware target carries in targets.json
// (and, later, the device manifest and release bundle), with their
// validation and schema versions. It imports nothing of ours and does no I/O.
package manifests

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Schema is the newest target metadata schema this code understands.
//
// Schema 2 adds the SBOM binding (an object in "sbom", see SBOMRef, where
// schema 1 had an opaque path string) and "support_until". Writers use
// NeededSchema, so a target without either stays schema 1 and agents that
// only know schema 1 keep installing it.
const Schema = 2

// SchemaBase is the schema of a target that uses none of the later fields.
const SchemaBase = 1

// SBOM formats a schema 2 binding may name.
const (
	SBOMCycloneDX = "cyclonedx"
	SBOMSPDX      = "spdx"
)

// Target kinds.
const (
	KindFull  = "full"  // a complete image
	KindDelta = "delta" // a delta that rebuilds Image from Base
)

// Errors callers branch on.
var (
	// ErrUnsupportedSchema means the metadata is newer than this program.
	ErrUnsupportedSchema = errors.New("unsupported target metadata schema")
	// ErrInvalidTarget means the custom metadata is malformed.
	ErrInvalidTarget = errors.New("invalid target metadata")
	// ErrNotFirmware means the target has no "fw" custom metadata at all.
	ErrNotFirmware = errors.New("target has no fw custom metadata")
)

// Blob names a byte string by its SHA-256 (hex) and length.
type Blob struct {
	SHA256 string `json:"sha256"`
	Length int64  `json:"length"`
}

// Firmware is the "fw" object of a target's custom metadata.
//
// Unknown fields are kept (in Extra) and written back unchanged, so older
// tools do not strip what newer ones added.
type Firmware struct {
	Schema   int      `json:"schema"`
	Hardware []string `json:"hardware"`
	Version  string   `json:"version"`
	Counter  uint64   `json:"counter"`
	Kind     string   `json:"kind"`
	// SBOM binds the release's SBOM, a target of its own (schema 2); in
	// schema 1 it was an opaque path, kept as SBOMRef.Legacy.
	SBOM *SBOMRef `json:"sbom,omitempty"`
	// SupportUntil is the last day (YYYY-MM-DD, UTC) of the release's
	// security-support period (schema 2).
	SupportUntil string `json:"support_until,omitempty"`
	Base         *Blob  `json:"base,omitempty"`  // delta only
	Image        *Blob  `json:"image,omitempty"` // delta only
	// Tlog is the target path of the Sigstore bundle that proves the image
	// was recorded in the transparency log (see package transparency).
	Tlog string `json:"tlog,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

var knownFields = []string{"schema", "hardware", "version", "counter", "kind", "sbom", "support_until", "base", "image", "tlog"}

// SBOMRef binds an SBOM by its target path, format and SHA-256 (hex), so
// the signed targets metadata vouches for the exact SBOM bytes.
type SBOMRef struct {
	Path   string `json:"path"`
	Format string `json:"format"` // SBOMCycloneDX or SBOMSPDX
	SHA256 string `json:"sha256"`
	// Legacy is schema 1's "sbom": a bare path string, bound by nothing.
	Legacy string `json:"-"`
}

// UnmarshalJSON accepts schema 1's string as well as schema 2's object.
func (r *SBOMRef) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*r = SBOMRef{}
		return json.Unmarshal(b, &r.Legacy)
	}
	type plain SBOMRef
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = SBOMRef(p)
	return nil
}

// MarshalJSON writes a legacy reference back as the string it was.
func (r SBOMRef) MarshalJSON() ([]byte, error) {
	if r.Legacy != "" {
		return json.Marshal(r.Legacy)
	}
	type plain SBOMRef
	return json.Marshal(plain(r))
}

// NeededSchema is the lowest schema that can carry f: SchemaBase unless f
// binds an SBOM or declares a support period.
func (f *Firmware) NeededSchema() int {
	if (f.SBOM != nil && f.SBOM.Legacy == "") || f.SupportUntil != "" {
		return 2
	}
	return SchemaBase
}

// SupportEnd parses SupportUntil: the support period ends at the end of
// that day, UTC. ok is false when the release declares none.
func (f *Firmware) SupportEnd() (end time.Time, ok bool) {
	d, err := time.Parse(time.DateOnly, f.SupportUntil)
	if err != nil {
		return time.Time{}, false
	}
	return d.AddDate(0, 0, 1), true
}

func (f *Firmware) validateV2() error {
	if need := f.NeededSchema(); f.Schema < need {
		return fmt.Errorf("%w: sbom binding and support_until need schema %d, target says %d", ErrInvalidTarget, need, f.Schema)
	}
	if f.SBOM != nil {
		r := f.SBOM
		if r.Legacy != "" && f.Schema >= 2 {
			return fmt.Errorf("%w: sbom: schema %d binds the SBOM by {path, format, sha256}, not a bare path", ErrInvalidTarget, f.Schema)
		}
		if r.Legacy == "" {
			if r.Path == "" {
				return fmt.Errorf("%w: sbom.path is empty", ErrInvalidTarget)
			}
			if r.Format != SBOMCycloneDX && r.Format != SBOMSPDX {
				return fmt.Errorf("%w: sbom.format %q, want %q or %q", ErrInvalidTarget, r.Format, SBOMCycloneDX, SBOMSPDX)
			}
			if d, err := hex.DecodeString(r.SHA256); err != nil || len(d) != 32 {
				return fmt.Errorf("%w: sbom.sha256 %q is not 64 hex digits", ErrInvalidTarget, r.SHA256)
			}
		}
	}
	if f.SupportUntil != "" {
		if _, err := time.Parse(time.DateOnly, f.SupportUntil); err != nil {
			return fmt.Errorf("%w: support_until %q, want a date YYYY-MM-DD", ErrInvalidTarget, f.SupportUntil)
		}
	}
	return nil
}

// UnmarshalJSON keeps unknown fields in Extra.
func (f *Firmware) UnmarshalJSON(b []byte) error {
	type plain Firmware
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for _, k := range knownFields {
		delete(all, k)
	}
	if len(all) == 0 {
		all = nil
	}
	*f = Firmware(p)
	f.Extra = all
	return nil
}

// MarshalJSON writes known fields and Extra.
func (f Firmware) MarshalJSON() ([]byte, error) {
	type plain Firmware
	b, err := json.Marshal(plain(f))
	if err != nil || len(f.Extra) == 0 {
		return b, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range f.Extra {
		if _, known := all[k]; !known {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

// Hardware IDs are names that are safe as path elements:
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$.

// ValidHardwareID reports whether id is an acceptable hardware ID.
func ValidHardwareID(id string) bool { return nameOf(id, "._-", 63) }

// Human versions are printable, path-safe strings:
// ^[A-Za-z0-9][A-Za-z0-9.+_~-]{0,63}$.

// ValidVersion reports whether v is an acceptable version string.
func ValidVersion(v string) bool { return nameOf(v, ".+_~-", 63) }

// Validate checks f and says what is wrong.
func (f *Firmware) Validate() error {
	if f.Schema < 1 {
		return fmt.Errorf("%w: schema %d, want >= 1", ErrInvalidTarget, f.Schema)
	}
	if f.Schema > Schema {
		return fmt.Errorf("%w: schema %d, this program understands up to %d; upgrade fwagent/fwctl", ErrUnsupportedSchema, f.Schema, Schema)
	}
	if len(f.Hardware) == 0 {
		return fmt.Errorf("%w: no hardware IDs", ErrInvalidTarget)
	}
	for _, h := range f.Hardware {
		if !ValidHardwareID(h) {
			return fmt.Errorf("%w: hardware ID %q (want letters, digits, '.', '_', '-', at most 64)", ErrInvalidTarget, h)
		}
	}
	if !ValidVersion(f.Version) {
		return fmt.Errorf("%w: version %q (want letters, digits, '.', '+', '_', '~', '-', at most 64)", ErrInvalidTarget, f.Version)
	}
	if err := f.validateV2(); err != nil {
		return err
	}
	switch f.Kind {
	case KindFull:
		if f.Base != nil || f.Image != nil {
			return fmt.Errorf("%w: a full image has no base or image", ErrInvalidTarget)
		}
	case KindDelta:
		if f.Base == nil || f.Image == nil {
			return fmt.Errorf("%w: a delta needs base and image", ErrInvalidTarget)
		}
		for name, b := range map[string]*Blob{"base": f.Base, "image": f.Image} {
			if err := b.validate(); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrInvalidTarget, name, err)
			}
		}
	default:
		return fmt.Errorf("%w: kind %q, want %q or %q", ErrInvalidTarget, f.Kind, KindFull, KindDelta)
	}
	return nil
}

func (b *Blob) validate() error {
	d, err := hex.DecodeString(b.SHA256)
	if err != nil || len(d) != 32 {
		return fmt.Errorf("sha256 %q is not 64 hex digits", b.SHA256)
	}
	if b.Length < 0 {
		return fmt.Errorf("negative length %d", b.Length)
	}
	return nil
}

// ForHardware reports whether the target is built for hardware ID hw.
func (f *Firmware) ForHardware(hw string) bool { return slices.Contains(f.Hardware, hw) }

// custom is the whole custom object of a target.
type custom struct {
	FW *Firmware `json:"fw"`
}

// ParseCustom extracts and validates the "fw" object from a target's custom
// metadata. Other members of custom are ignored.
func ParseCustom(raw []byte) (*Firmware, error) {
	if len(raw) == 0 {
		return nil, ErrNotFirmware
	}
	var c custom
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidTarget, err)
	}
	if c.FW == nil {
		return nil, ErrNotFirmware
	}
	if err := c.FW.Validate(); err != nil {
		return nil, err
	}
	return c.FW, nil
}

// MarshalCustom returns the custom object {"fw": f} after validating f.
func MarshalCustom(f *Firmware) (json.RawMessage, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(custom{FW: f})
}
