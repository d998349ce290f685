// Package policy decides what the device installs: which of the releases a
// repository offers, which delta (if any) to rebuild it from, and whether the
// device's state forbids installing it now (a trial awaiting confirmation, an
// install waiting for its reboot, an earlier failure of the same release, a
// slot too small for it).
//
// Every function here is a pure function of (offered releases, device state,
// request): no I/O, no clock, no logging. The agent gathers the inputs
// (verified metadata, the state file, the bootloader environment, the slot's
// size) and acts on the Decision; this package never touches any of them.
package policy

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// Errors callers branch on.
var (
	// ErrRollback means the release's counter is below the device's.
	ErrRollback = errors.New("rollback refused")
	// ErrWrongHardware means the release is not for this hardware.
	ErrWrongHardware = errors.New("release is not for this hardware")
	// ErrNotFirmware means a named target is not a full firmware image.
	ErrNotFirmware = errors.New("target is not a full firmware image")
	// ErrUnknownTarget means a named target is not in the repository.
	ErrUnknownTarget = errors.New("no such target in the repository")
	// ErrConfirmPending means the running slot is on an unconfirmed trial:
	// the inactive slot is its only fallback and must not be written.
	ErrConfirmPending = errors.New("the running slot has not been confirmed")
	// ErrTooLarge means the release does not fit the inactive slot.
	ErrTooLarge = errors.New("image does not fit the slot")
)

// Offer is one target of verified metadata.
type Offer struct {
	Path   string
	SHA256 string // hex
	Length int64
	// Hashes are all the target's hashes by algorithm (hex), where known.
	Hashes map[string]string
	// FW is the target's firmware metadata; nil when the target is not
	// firmware (a proof, an SBOM).
	FW *manifests.Firmware
	// Invalid says why the target's firmware metadata did not parse.
	Invalid error
}

// Slot is what the device knows about one slot's contents.
type Slot struct {
	Name   string
	Status string // manifests.Slot*
	SHA256 string
	Length int64
}

// Pending is an installed, not yet confirmed release.
type Pending struct {
	Slot    string
	SHA256  string
	Version string
}

// Failure is a release that failed on this device in a way that retrying
// it unchanged would repeat: the new slot fell back, was unhealthy, or did
// not read back as written.
type Failure struct {
	Target  string    `json:"target"`
	Version string    `json:"version,omitempty"`
	SHA256  string    `json:"sha256"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Device is the device state the decision depends on.
type Device struct {
	Hardware string
	// Counter is the anti-rollback counter.
	Counter uint64
	// Running and Inactive are the running slot and the one an install
	// writes.
	Running, Inactive Slot
	// Pending is the install awaiting its reboot or confirmation.
	Pending *Pending
	// NextBoot is the slot the bootloader boots next.
	NextBoot string
	// Failed lists releases not to install again without Request.Retry.
	Failed []Failure
	// Capacity is how many bytes the inactive slot can hold; negative when
	// unknown (then the write itself finds out).
	Capacity int64
}

// Request is what the operator asked for.
type Request struct {
	// Target names a target path instead of the newest release.
	Target string
	// Retry allows a release that failed on this device.
	Retry bool
}

// Action is what the agent should do.
type Action int

// Actions of a Decision.
const (
	// NoRelease: the repository offers nothing for this hardware.
	NoRelease Action = iota
	// UpToDate: the running slot holds the chosen release.
	UpToDate
	// Install the release into the inactive slot.
	Install
	// RebootPending: the release is installed in the inactive slot and the
	// bootloader tries it next; nothing to write (if the slot still holds
	// it: the agent checks and, if not, decides again without Pending).
	RebootPending
	// FailedBefore: the release failed on this device; it is installed
	// again only on Request.Retry (or a newer release supersedes it).
	FailedBefore
)

var actionNames = [...]string{"no-release", "up-to-date", "install", "reboot-pending", "failed-before"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is the outcome of Decide.
type Decision struct {
	Action  Action
	Release *Offer
	// Failure is the earlier failure of Release (FailedBefore, or Install
	// when the request retries it).
	Failure *Failure
	// Ignored lists offers skipped for invalid firmware metadata.
	Ignored []string
	// OtherHardware lists hardware IDs the repository has releases for,
	// when it has none for this device.
	OtherHardware []string
}

// Decide chooses the release and what to do with it.
func Decide(offers []Offer, dev Device, req Request) (Decision, error) {
	var d Decision
	var rel *Offer
	if req.Target != "" {
		r, err := named(offers, dev, req.Target)
		if err != nil {
			return d, err
		}
		rel = r
	} else {
		rel, d.Ignored, d.OtherHardware = newest(offers, dev.Hardware)
		if rel == nil {
			return d, nil
		}
		if rel.FW.Counter < dev.Counter {
			return d, fmt.Errorf("%w: the newest release for %s, %s, has security counter %d but this device requires at least %d",
				ErrRollback, dev.Hardware, rel.Path, rel.FW.Counter, dev.Counter)
		}
	}
	d.Release = rel
	if dev.Running.SHA256 != "" && dev.Running.SHA256 == rel.SHA256 {
		d.Action = UpToDate
		return d, nil
	}
	if p := dev.Pending; p != nil && p.Slot == dev.Running.Name {
		return d, fmt.Errorf("%w: slot %s runs %s on trial; run 'fwagent confirm' once it is healthy, then update",
			ErrConfirmPending, p.Slot, p.Version)
	}
	if p := dev.Pending; p != nil && p.Slot == dev.Inactive.Name && p.SHA256 == rel.SHA256 &&
		dev.NextBoot == p.Slot && dev.Inactive.Status == manifests.SlotInstalled && dev.Inactive.SHA256 == rel.SHA256 {
		d.Action = RebootPending
		return d, nil
	}
	if f := FailedRelease(dev.Failed, rel.SHA256); f != nil {
		d.Failure = f
		if !req.Retry {
			d.Action = FailedBefore
			return d, nil
		}
	}
	if dev.Capacity >= 0 && rel.Length > dev.Capacity {
		return d, fmt.Errorf("%w: %s is %d bytes, slot %s holds at most %d; use a larger slot partition (or free space on its filesystem)",
			ErrTooLarge, rel.Path, rel.Length, dev.Inactive.Name, dev.Capacity)
	}
	d.Action = Install
	return d, nil
}

// named resolves an explicitly requested target.
func named(offers []Offer, dev Device, name string) (*Offer, error) {
	var r *Offer
	for i := range offers {
		if offers[i].Path == name {
			r = &offers[i]
		}
	}
	switch {
	case r == nil:
		return nil, fmt.Errorf("%w: %s (check the path with 'fwctl target list' on the release side)", ErrUnknownTarget, name)
	case r.Invalid != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrNotFirmware, name, r.Invalid)
	case r.FW == nil:
		return nil, fmt.Errorf("%w: %s has no firmware metadata", ErrNotFirmware, name)
	case !r.FW.ForHardware(dev.Hardware):
		return nil, fmt.Errorf("%w: %s is built for %s, this device is %s", ErrWrongHardware, name, strings.Join(r.FW.Hardware, ", "), dev.Hardware)
	case r.FW.Kind != manifests.KindFull:
		return nil, fmt.Errorf("%w: %s is a %s", ErrNotFirmware, name, r.FW.Kind)
	case r.FW.Counter < dev.Counter:
		return nil, fmt.Errorf("%w: %s has security counter %d, this device requires at least %d", ErrRollback, name, r.FW.Counter, dev.Counter)
	}
	return r, nil
}

// newest returns the full image for hardware with the highest counter, then
// version, then path (so the choice never depends on map order).
func newest(offers []Offer, hardware string) (best *Offer, ignored, others []string) {
	var cands []*Offer
	for i := range offers {
		o := &offers[i]
		switch {
		case o.Invalid != nil:
			ignored = append(ignored, o.Path)
		case o.FW == nil:
		case !o.FW.ForHardware(hardware):
			others = append(others, o.FW.Hardware...)
		case o.FW.Kind == manifests.KindFull:
			cands = append(cands, o)
		}
	}
	if len(cands) == 0 {
		return nil, ignored, others
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.FW.Counter != b.FW.Counter {
			return a.FW.Counter > b.FW.Counter
		}
		if a.FW.Version != b.FW.Version {
			return VersionLess(b.FW.Version, a.FW.Version)
		}
		return a.Path < b.Path
	})
	return cands[0], ignored, nil
}

// FailedRelease returns the recorded failure of the image with this
// SHA-256, or nil.
func FailedRelease(failed []Failure, sha256 string) *Failure {
	for i := len(failed) - 1; i >= 0; i-- {
		if failed[i].SHA256 == sha256 {
			f := failed[i]
			return &f
		}
	}
	return nil
}

// Delta returns the delta among offers that rebuilds rel from the image the
// running slot holds, when it is smaller than rel; otherwise nil and, if a
// delta was offered but not worth it, why.
func Delta(offers []Offer, rel *Offer, running Slot, hardware string) (*Offer, string) {
	if running.SHA256 == "" || running.Status != manifests.SlotGood {
		return nil, ""
	}
	var best *Offer
	for i := range offers {
		o := &offers[i]
		if !deltaTo(o, rel, hardware) || o.FW.Base.SHA256 != running.SHA256 || o.FW.Base.Length != running.Length {
			continue
		}
		if best == nil || o.Length < best.Length || o.Length == best.Length && o.Path < best.Path {
			best = o
		}
	}
	if best == nil {
		return nil, ""
	}
	if best.Length >= rel.Length {
		return nil, fmt.Sprintf("delta %s (%d bytes) is not smaller than the full image (%d bytes)", best.Path, best.Length, rel.Length)
	}
	return best, ""
}

// deltaTo says whether o is a delta for hardware that rebuilds rel.
func deltaTo(o *Offer, rel *Offer, hardware string) bool {
	fw := o.FW
	return fw != nil && fw.Kind == manifests.KindDelta && fw.ForHardware(hardware) && fw.Image != nil && fw.Base != nil &&
		fw.Image.SHA256 == rel.SHA256 && fw.Image.Length == rel.Length
}

// MaxDeltaBases bounds DeltaBases: each candidate costs the agent a read of
// the running slot.
const MaxDeltaBases = 4

// DeltaBases lists the distinct base images of the deltas among offers that
// rebuild rel, shortest first (then by SHA-256), at most MaxDeltaBases. An
// agent whose running slot holds an image it did not install (a factory
// image, so the hash is not in its state) checks the slot against these: if
// it holds one of them, the delta applies to it (Delta, with the slot's
// hash filled in). The delta's decoder checks the base's hash again.
func DeltaBases(offers []Offer, rel *Offer, hardware string) []manifests.Blob {
	var bases []manifests.Blob
	for i := range offers {
		if o := &offers[i]; deltaTo(o, rel, hardware) && !hasBlob(bases, *o.FW.Base) {
			bases = append(bases, *o.FW.Base)
		}
	}
	sort.Slice(bases, func(i, j int) bool {
		a, b := bases[i], bases[j]
		return a.Length < b.Length || a.Length == b.Length && a.SHA256 < b.SHA256
	})
	return bases[:min(len(bases), MaxDeltaBases)]
}

func hasBlob(bs []manifests.Blob, b manifests.Blob) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// VersionLess compares versions numerically where both parts are numbers
// ("1.10" > "1.9"), lexically otherwise.
func VersionLess(a, b string) bool {
	as, bs := strings.FieldsFunc(a, isSep), strings.FieldsFunc(b, isSep)
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		x, ok1 := leadingUint(as[i])
		y, ok2 := leadingUint(bs[i])
		if ok1 && ok2 && x != y {
			return x < y
		}
		return as[i] < bs[i]
	}
	return len(as) < len(bs)
}

func isSep(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '_' || r == '~' }

// leadingUint parses the decimal digits s starts with.
func leadingUint(s string) (uint64, bool) {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	if n == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(s[:n], 10, 64)
	return v, err == nil
}
