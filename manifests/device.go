package manifests

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// DeviceSchema is the newest device manifest schema this code understands.
const DeviceSchema = 1

// MaxDeviceManifestSize is the largest signed device manifest (envelope
// included) anyone should send or accept, in bytes.
const MaxDeviceManifestSize = 64 << 10

// Errors callers branch on.
var (
	// ErrInvalidDeviceManifest means a device manifest or its envelope is
	// malformed.
	ErrInvalidDeviceManifest = errors.New("invalid device manifest")
	// ErrBadSignature means a device manifest's signature does not verify
	// under the key it is checked against.
	ErrBadSignature = errors.New("device manifest signature does not verify")
)

// Slot statuses a device reports, as the agent keeps them.
const (
	SlotUnknown   = "unknown"   // never written by the agent (factory image)
	SlotWriting   = "writing"   // being written: never bootable
	SlotInstalled = "installed" // written and verified, to be tried
	SlotGood      = "good"      // booted and confirmed
	SlotBad       = "bad"       // tried and never confirmed
)

// Install outcomes a device reports in LastResult.
const (
	OutcomeInstalled = "installed"
	OutcomeConfirmed = "confirmed"
	OutcomeFellBack  = "fell-back"
	OutcomeFailed    = "failed"
	OutcomeUnhealthy = "unhealthy"
	// OutcomeDeferred: the device chose not to install yet (outside its
	// maintenance window); not a failure.
	OutcomeDeferred = "deferred"
)

// DeviceManifest is a device's signed version report, after Uptane's ECU
// version manifest: who the device is, what each slot holds, which one runs,
// how the last install went, when it said so, and the server's nonce that
// makes the report fresh and single-use.
//
// The wire form is a JSON object; unknown members are ignored (and covered
// by the signature, which is over the canonical form of the object as sent).
type DeviceManifest struct {
	Schema      int    `json:"schema"`
	DeviceID    string `json:"device_id"`
	Hardware    string `json:"hardware"`
	RunningSlot string `json:"running_slot"`
	// NextBoot is the slot the bootloader will boot next, when known.
	NextBoot string `json:"next_boot,omitempty"`
	// Counter is the device's anti-rollback security counter.
	Counter    uint64                `json:"counter"`
	Slots      map[string]SlotReport `json:"slots"`
	LastResult *InstallResult        `json:"last_result,omitempty"`
	// Attempts is the device's recent install attempts, oldest first (at
	// most MaxAttempts), so that every failure reaches the server, not
	// only the last state.
	Attempts []InstallResult `json:"attempts,omitempty"`
	// Time is the device's clock when it built the report (informational:
	// freshness comes from Nonce, or offline from Seq).
	Time time.Time `json:"time"`
	// Nonce is the server's single-use nonce (GET NoncePath); an offline
	// report, written to removable media, has none.
	Nonce string `json:"nonce,omitempty"`
	// Seq is the device's report sequence number: it grows with every
	// report the device signs, online or offline, so that fwrepo can
	// refuse an offline report not newer than the latest it stored
	// (docs/offline.md). Zero: a device agent that predates it.
	Seq uint64 `json:"seq,omitempty"`
}

// Image describes one firmware image as a device knows it: the target that
// delivered it, its human version and security counter, and its hash and
// length. It is the one description of an image that slot reports, the
// agent's slot state, pending install and offered release embed; embedded,
// its fields appear inline in their JSON, and zero fields are left out.
type Image struct {
	Target  string `json:"target,omitempty"`
	Version string `json:"version,omitempty"`
	Counter uint64 `json:"counter,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Length  int64  `json:"length,omitempty"`
}

// SlotReport is what a device knows about one slot's contents.
type SlotReport struct {
	Status string `json:"status"`
	Image
}

// InstallResult is the outcome of the device's last install attempt.
type InstallResult struct {
	At      time.Time `json:"at"`
	Target  string    `json:"target,omitempty"`
	Version string    `json:"version,omitempty"`
	Outcome string    `json:"outcome"`
	Error   string    `json:"error,omitempty"`
}

// Running returns the report of the running slot (zero if absent).
func (m *DeviceManifest) Running() SlotReport { return m.Slots[m.RunningSlot] }

// Device IDs are ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$, slot names
// ^[A-Za-z0-9_-]{1,16}$ and nonces ^[A-Za-z0-9_-]{16,128}$ (charclass.go).

// ValidDeviceID reports whether id is an acceptable device ID: 1–128
// letters, digits, '.', '_', ':' or '-', starting with a letter or digit.
// The default device ID, the hex key ID of the device key, is one.
func ValidDeviceID(id string) bool { return nameOf(id, "._:-", 127) }

// ValidNonce reports whether n is an acceptable server nonce: 16–128
// characters of the URL-safe base64 alphabet (hex is a subset).
func ValidNonce(n string) bool { return runOf(n, "_-", 16, 128) }

// MaxAttempts bounds DeviceManifest.Attempts.
const MaxAttempts = 32

const (
	maxSlots     = 8
	maxTargetLen = 256
	maxErrorLen  = 1024
)

// Validate checks m and says what is wrong.
func (m *DeviceManifest) Validate() error {
	if m.Schema < 1 {
		return fmt.Errorf("%w: schema %d, want >= 1", ErrInvalidDeviceManifest, m.Schema)
	}
	if m.Schema > DeviceSchema {
		return fmt.Errorf("%w: device manifest schema %d, this program understands up to %d; upgrade fwrepo", ErrUnsupportedSchema, m.Schema, DeviceSchema)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if !ValidDeviceID(m.DeviceID) {
		bad("device_id %q: want 1-128 letters, digits, '.', '_', ':', '-'", clip(m.DeviceID))
	}
	if !ValidHardwareID(m.Hardware) {
		bad("hardware %q: want letters, digits, '.', '_', '-', at most 64", clip(m.Hardware))
	}
	if len(m.Slots) == 0 || len(m.Slots) > maxSlots {
		bad("slots: %d, want 1 to %d", len(m.Slots), maxSlots)
	}
	for name, s := range m.Slots {
		if !runOf(name, "_-", 1, 16) {
			bad("slots: name %q: want 1-16 letters, digits, '_', '-'", clip(name))
			continue
		}
		if err := s.validate(); err != nil {
			bad("slots.%s: %v", name, err)
		}
	}
	if _, ok := m.Slots[m.RunningSlot]; !ok {
		bad("running_slot %q is not one of the reported slots", clip(m.RunningSlot))
	}
	if _, ok := m.Slots[m.NextBoot]; m.NextBoot != "" && !ok {
		bad("next_boot %q is not one of the reported slots", clip(m.NextBoot))
	}
	if r := m.LastResult; r != nil {
		if err := r.validate(); err != nil {
			bad("last_result: %v", err)
		}
	}
	if len(m.Attempts) > MaxAttempts {
		bad("attempts: %d, at most %d", len(m.Attempts), MaxAttempts)
	}
	for i := range m.Attempts {
		if err := m.Attempts[i].validate(); err != nil {
			bad("attempts[%d]: %v", i, err)
		}
	}
	if m.Time.IsZero() {
		bad("time: missing")
	}
	if !ValidNonce(m.Nonce) && (m.Nonce != "" || m.Seq == 0) {
		bad("nonce %q: want the 16-128 character nonce fwrepo handed out (GET /api/v1/nonce), or none and a seq (an offline report)", clip(m.Nonce))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidDeviceManifest, errors.Join(errs...))
	}
	return nil
}

func (s *SlotReport) validate() error {
	switch s.Status {
	case SlotUnknown, SlotWriting, SlotInstalled, SlotGood, SlotBad:
	default:
		return fmt.Errorf("status %q, want one of unknown, writing, installed, good, bad", clip(s.Status))
	}
	if s.SHA256 != "" {
		if d, err := hex.DecodeString(s.SHA256); err != nil || len(d) != 32 || strings.ToLower(s.SHA256) != s.SHA256 {
			return fmt.Errorf("sha256 %q is not 64 lowercase hex digits", clip(s.SHA256))
		}
	}
	if s.Version != "" && !ValidVersion(s.Version) {
		return fmt.Errorf("version %q: want letters, digits, '.', '+', '_', '~', '-', at most 64", clip(s.Version))
	}
	if !printable(s.Target, maxTargetLen) {
		return fmt.Errorf("target: want at most %d printable characters", maxTargetLen)
	}
	if s.Length < 0 {
		return fmt.Errorf("negative length %d", s.Length)
	}
	return nil
}

func (r *InstallResult) validate() error {
	switch r.Outcome {
	case OutcomeInstalled, OutcomeConfirmed, OutcomeFellBack, OutcomeFailed, OutcomeUnhealthy, OutcomeDeferred:
	default:
		return fmt.Errorf("outcome %q, want one of installed, confirmed, fell-back, failed, unhealthy", clip(r.Outcome))
	}
	if r.At.IsZero() {
		return errors.New("at: missing")
	}
	if r.Version != "" && !ValidVersion(r.Version) {
		return fmt.Errorf("version %q: want letters, digits, '.', '+', '_', '~', '-', at most 64", clip(r.Version))
	}
	if !printable(r.Target, maxTargetLen) {
		return fmt.Errorf("target: want at most %d printable characters", maxTargetLen)
	}
	if len(r.Error) > maxErrorLen {
		return fmt.Errorf("error: %d bytes, at most %d", len(r.Error), maxErrorLen)
	}
	return nil
}

func printable(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// clip shortens hostile strings before they go into error messages.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Member names of each object, for the strict name check below.
var (
	manifestFields = []string{"schema", "device_id", "hardware", "running_slot", "next_boot", "counter", "slots", "last_result", "time", "nonce", "seq"}
	slotFields     = []string{"status", "target", "version", "counter", "sha256", "length"}
	resultFields   = []string{"at", "target", "version", "outcome", "error"}
)

// decodeDeviceManifest decodes and validates a manifest object. It refuses
// member names that differ from a known one only in case: encoding/json
// would match them, another implementation might not, and a signed report
// must mean the same to every reader.
func decodeDeviceManifest(raw []byte) (*DeviceManifest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%w: manifest is not a JSON object: %v", ErrInvalidDeviceManifest, err)
	}
	if err := exactNames("manifest", top, manifestFields); err != nil {
		return nil, err
	}
	if s, ok := top["slots"]; ok {
		var slots map[string]json.RawMessage
		if err := json.Unmarshal(s, &slots); err != nil {
			return nil, fmt.Errorf("%w: slots: %v", ErrInvalidDeviceManifest, err)
		}
		for name, s := range slots {
			var o map[string]json.RawMessage
			if err := json.Unmarshal(s, &o); err != nil {
				return nil, fmt.Errorf("%w: slots.%s: %v", ErrInvalidDeviceManifest, clip(name), err)
			}
			if err := exactNames("slots."+clip(name), o, slotFields); err != nil {
				return nil, err
			}
		}
	}
	if r, ok := top["last_result"]; ok && string(r) != "null" {
		var o map[string]json.RawMessage
		if err := json.Unmarshal(r, &o); err != nil {
			return nil, fmt.Errorf("%w: last_result: %v", ErrInvalidDeviceManifest, err)
		}
		if err := exactNames("last_result", o, resultFields); err != nil {
			return nil, err
		}
	}
	var m DeviceManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDeviceManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func exactNames(where string, obj map[string]json.RawMessage, known []string) error {
	for name := range obj {
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return fmt.Errorf("%w: %s: member %q must be spelled %q", ErrInvalidDeviceManifest, where, clip(name), k)
			}
		}
	}
	return nil
}

// The device API fwrepo serves next to the repository (fwrepo serve --db).
const (
	// NoncePath answers GET with a NonceResponse: a fresh, single-use,
	// short-lived nonce for the next device manifest.
	NoncePath = "/api/v1/nonce"
	// ManifestPath accepts POST of a signed device manifest (at most
	// MaxDeviceManifestSize bytes) and answers with a ReportResponse.
	ManifestPath = "/api/v1/manifests"
)

// NonceResponse is fwrepo's answer on NoncePath.
type NonceResponse struct {
	Nonce   string    `json:"nonce"`
	Expires time.Time `json:"expires"`
}

// ReportResponse is fwrepo's answer on ManifestPath: Accepted, or Error
// saying why the manifest was refused.
type ReportResponse struct {
	DeviceID string `json:"device_id,omitempty"`
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
}
