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
)

// Schema is the newest target metadata schema this code understands.
const Schema = 1

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
	SBOM     string   `json:"sbom,omitempty"`
	Base     *Blob    `json:"base,omitempty"`  // delta only
	Image    *Blob    `json:"image,omitempty"` // delta only
	// Tlog is the target path of the Sigstore bundle that proves the image
	// was recorded in the transparency log (see package transparency).
	Tlog string `json:"tlog,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

var knownFields = []string{"schema", "hardware", "version", "counter", "kind", "sbom", "base", "image", "tlog"}

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
