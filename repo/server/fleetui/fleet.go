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
