package fleetui

import (
	"context"
	"errors"
	"time"
)

// Fleet is what the fleet view reads and changes.
type Fleet interface {
	// Authenticate returns the operator a token belongs to, or an error
	// wrapping ErrBadToken.
	Authenticate(ctx context.Context, token string) (*Operator, error)
	// Devices lists the registered devices.
	Devices(ctx context.Context) ([]Device, error)
	// Rollouts lists the rollouts, newest first, with their progress.
	Rollouts(ctx context.Context) ([]Rollout, error)
	// Act applies an operator action (one of Rollout.Actions) by op.
	Act(ctx context.Context, rolloutID, action string, op *Operator) error
	// Device returns one device with its history, at most maxEvents of
	// its attempts (newest first), or an error wrapping ErrNoDevice.
	Device(ctx context.Context, id string, maxEvents int) (*DeviceDetail, error)
	// Exposure returns which imported advisories affect the releases the
	// devices run.
	Exposure(ctx context.Context) (*Exposure, error)
}

// ErrNoDevice means no registered device has that ID.
var ErrNoDevice = errors.New("no registered device with that ID")

// DeviceDetail is one device's page: the list's columns and more.
type DeviceDetail struct {
	Device
	KeyID      string
	Registered time.Time
	// Target is what its running slot runs (a target path).
	Target string
	// Rollout is the rollout it is in that has not ended (nil: none).
	Rollout *DeviceRollout
	// Rollouts are every rollout it was in, newest first, ended ones
	// included (at most MaxDeviceRollouts).
	Rollouts []DeviceRollout
	// Events are its reported install attempts, newest first; More says
	// there are older ones than those listed.
	Events []Event
	More   bool
}

// DeviceRollout is a device's place in a rollout: the rollout's state
// (Status, and Reason when it halted or ended) and the device's wave and
// phase there (its outcome), with the reason it failed.
type DeviceRollout struct {
	ID, Status string
	Wave       int // 0-based, the device's
	Phase      string
	Target     string
	Reason     string
	Error      string
	Created    time.Time
	// LastAt is when its phase's attempt was made (nil: none reported).
	LastAt *time.Time
}

// Event is one install attempt a device reported in a signed report.
type Event struct {
	At, Received                    time.Time
	Target, Version, Outcome, Error string
}

// Exposure is which imported advisories affect the releases the devices
// run (repo/exposure).
type Exposure struct {
	// Advisories affect a release some device runs, with how many.
	Advisories []Advisory
	// ByDevice lists each exposed device's advisories, with the affected
	// components of the release it runs.
	ByDevice map[string][]Advisory
	// PastSupport maps devices on a release past its support date to
	// that date.
	PastSupport map[string]string
}

// Advisory is one advisory's exposure.
type Advisory struct {
	ID         string
	Aliases    []string
	Summary    string
	Devices    int
	Components []string // "name version" of the affected components
	FixedBy    []string // releases without them
}

// ErrBadToken means a token is not a valid operator token.
var ErrBadToken = errors.New("operator token not recognised (revoked or mistyped?)")

// Operator is an authenticated operator token.
type Operator struct {
	Name string
	Role string
	// CanChange is whether the role may act on rollouts (operator, not
	// viewer).
	CanChange bool
}

// Device is one registered device as the view shows it.
type Device struct {
	ID       string
	Hardware string
	// Version is the running slot's version ("" before the first report).
	Version     string
	RunningSlot string
	NextBoot    string
	Slots       []Slot
	Counter     uint64
	// LastSeen is when its latest signed report was accepted (nil: never).
	LastSeen *time.Time
	// Identity is tpm, file (weaker) or unknown.
	Identity string
	Tags     string
	// LastOutcome and LastError are of its latest reported install attempt.
	LastOutcome string
	LastError   string
	// Exposed is how many imported advisories affect its running release.
	Exposed int
}

// Slot is what a device reported about one slot.
type Slot struct {
	Name    string
	Status  string
	Version string
	Running bool
}

// Rollout is one rollout with its per-wave progress.
type Rollout struct {
	ID      string
	Target  string
	Filter  string
	Status  string
	Reason  string
	Wave    int // 0-based current wave
	Waves   []Wave
	Created time.Time
	// Failures are its failed devices with the reasons they reported.
	Failures []Failure
	// Actions are the operator actions its state allows now.
	Actions []string
	// SuccessThreshold and FailureThreshold are fractions of a wave.
	SuccessThreshold, FailureThreshold float64
	// Approval is whether it needs an approval; CreatedBy and ApprovedBy
	// name the operators (an approver must not be the creator).
	Approval              bool
	CreatedBy, ApprovedBy string
}

// Wave is one wave's devices by phase.
type Wave struct {
	Devices, Pending, Assigned, Deferred, Installing, Succeeded, Failed, Withdrawn int
}

// Failure is a failed device of a rollout.
type Failure struct {
	DeviceID string
	Wave     int // 0-based
	Reason   string
}
