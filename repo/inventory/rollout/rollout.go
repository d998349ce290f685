// Package rollout decides rollouts as pure functions: which devices a wave
// assigns, when the next wave starts, when a rollout halts. It reads no
// database and signs nothing: repo/inventory stores what it decides and
// repo/server/operator publishes the resulting director assignments.
//
// A rollout offers one release (a target of the image repository) to the
// devices a tag filter selects, in waves. A wave starts when the previous
// one reached the success threshold; a wave whose failures go above the
// failure threshold halts the rollout by itself, and a halted, paused or
// aborted rollout withdraws the release from every device that has not
// started installing it. Progress is read only from the devices' signed
// reports; a "deferred" report (outside a maintenance window) counts as
// neither success nor failure.
package rollout

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fwctl/fwctl/manifests"
)

// Status is a rollout's state.
type Status string

// Rollout states. Created rollouts wait for start; with an approval step
// start leads to WaitingApproval until approved.
const (
	Created         Status = "created"
	WaitingApproval Status = "waiting-approval"
	Running         Status = "running"
	Paused          Status = "paused"
	Halted          Status = "halted"
	Aborted         Status = "aborted"
	Completed       Status = "completed"
)

// Terminal reports whether nothing happens to a rollout in s any more.
func (s Status) Terminal() bool { return s == Halted || s == Aborted || s == Completed }

// Phase is where one device of a rollout stands.
type Phase string

// Device phases. Pending: its wave has not started (or the rollout is
// paused). Assigned: the director names the release for it, no report of
// an attempt yet. Deferred: it reported it waits for its maintenance
// window. Installing: installed, not yet confirmed. Succeeded: confirmed
// (booted healthy). Failed: failed, fell back or was unhealthy.
// Withdrawn: the rollout stopped before the device started.
const (
	Pending    Phase = "pending"
	Assigned   Phase = "assigned"
	Deferred   Phase = "deferred"
	Installing Phase = "installing"
	Succeeded  Phase = "succeeded"
	Failed     Phase = "failed"
	Withdrawn  Phase = "withdrawn"
)

// Started reports whether the device has begun installing (its assignment
// is then kept when the rollout stops, so that it can finish or fall back).
func (p Phase) Started() bool { return p == Installing || p == Succeeded || p == Failed }

// OutcomeDeferred is the outcome a device reports outside its maintenance
// window.
const OutcomeDeferred = "deferred"

// PhaseOf maps a device's latest reported outcome for the rollout's
// release (since it was assigned) to its phase; "" means no report yet.
func PhaseOf(outcome string) Phase {
	switch outcome {
	case "":
		return Assigned
	case OutcomeDeferred:
		return Deferred
	case manifests.OutcomeInstalled:
		return Installing
	case manifests.OutcomeConfirmed:
		return Succeeded
	case manifests.OutcomeFailed, manifests.OutcomeFellBack, manifests.OutcomeUnhealthy:
		return Failed
	}
	// An outcome this server does not know is neither success nor failure.
	return Assigned
}

// WaveSize is one wave's size: an absolute count or a percentage of the
// rollout's devices.
type WaveSize struct {
	Count   int     `json:"count,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

func (w WaveSize) String() string {
	if w.Percent > 0 {
		return strconv.FormatFloat(w.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(w.Count)
}

// ParseWaves parses a comma-separated list of wave sizes: counts ("5") or
// percentages ("10%").
func ParseWaves(s string) ([]WaveSize, error) {
	var out []WaveSize
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if p, ok := strings.CutSuffix(f, "%"); ok {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || v <= 0 || v > 100 || math.IsNaN(v) {
				return nil, fmt.Errorf("%w: wave %q: want a percentage above 0 and at most 100", ErrInvalidSpec, f)
			}
			out = append(out, WaveSize{Percent: v})
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: wave %q: want a device count (5) or a percentage (10%%)", ErrInvalidSpec, f)
		}
		out = append(out, WaveSize{Count: n})
	}
	return out, nil
}

// ErrInvalidSpec means a rollout specification is malformed.
var ErrInvalidSpec = errors.New("invalid rollout")

// Spec is what an operator asks for.
type Spec struct {
	// Target is the release: a firmware target path of the image
	// repository.
	Target string `json:"target"`
	// Filter selects devices by tag: every key=value must match.
	Filter map[string]string `json:"filter,omitempty"`
	// Waves are the wave sizes in order; devices left over join the last
	// wave. AutoSplit N (instead of Waves) splits the devices into N
	// waves as equal as possible, the smaller ones first.
	Waves     []WaveSize `json:"waves,omitempty"`
	AutoSplit int        `json:"auto_split,omitempty"`
	// SuccessThreshold is the fraction (0-1] of a wave's devices that must
	// have succeeded before the next wave starts (and before the last
	// wave completes the rollout).
	SuccessThreshold float64 `json:"success_threshold"`
	// FailureThreshold is the fraction [0-1) of a wave's devices whose
	// failure is still tolerated: more failures than that halt the
	// rollout.
	FailureThreshold float64 `json:"failure_threshold"`
	// Approval makes start wait for an explicit approval.
	Approval bool `json:"approval,omitempty"`
	// Maintenance is carried to every device's assignment: the device
	// installs only inside it (and its own window).
	Maintenance *manifests.Maintenance `json:"maintenance,omitempty"`
}

// Default thresholds.
const (
	DefaultSuccessThreshold = 1.0
	DefaultFailureThreshold = 0.0
)

// Validate checks s and says what is wrong.
func (s *Spec) Validate() error {
	switch {
	case s.Target == "":
		return fmt.Errorf("%w: no release: give the image repository's target path", ErrInvalidSpec)
	case len(s.Waves) > 0 && s.AutoSplit > 0:
		return fmt.Errorf("%w: give waves or an auto-split, not both", ErrInvalidSpec)
	case s.AutoSplit < 0 || s.AutoSplit > 1000:
		return fmt.Errorf("%w: auto-split %d: want 1 to 1000 waves", ErrInvalidSpec, s.AutoSplit)
	case !(s.SuccessThreshold > 0 && s.SuccessThreshold <= 1):
		return fmt.Errorf("%w: success threshold %v: want a fraction above 0 and at most 1 (e.g. 0.9 for 90%%)", ErrInvalidSpec, s.SuccessThreshold)
	case !(s.FailureThreshold >= 0 && s.FailureThreshold < 1):
		return fmt.Errorf("%w: failure threshold %v: want a fraction from 0 to below 1 (e.g. 0.2: more than 20%% failed halts)", ErrInvalidSpec, s.FailureThreshold)
	case len(s.Waves) > 1000:
		return fmt.Errorf("%w: %d waves, at most 1000", ErrInvalidSpec, len(s.Waves))
	}
	for k, v := range s.Filter {
		if !ValidTagKey(k) || !ValidTagValue(v) {
			return fmt.Errorf("%w: filter %s=%s: tag keys are 1-64 letters, digits, '.', '_', '-' and values 0-128 printable characters without '=' or ','", ErrInvalidSpec, k, v)
		}
	}
	for _, w := range s.Waves {
		if (w.Count > 0) == (w.Percent > 0) || w.Count < 0 || w.Percent < 0 || w.Percent > 100 {
			return fmt.Errorf("%w: wave %s: want a count or a percentage", ErrInvalidSpec, w)
		}
	}
	if err := s.Maintenance.Validate(); err != nil {
		return fmt.Errorf("%w: window: %w", ErrInvalidSpec, err)
	}
	return nil
}

// ValidTagKey reports whether k is an acceptable tag key.
func ValidTagKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ValidTagValue reports whether v is an acceptable tag value.
func ValidTagValue(v string) bool {
	if len(v) > 128 {
		return false
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '=' || r == ',' || r > 0x7e {
			return false
		}
	}
	return true
}

// Matches reports whether a device with tags matches filter.
func Matches(filter, tags map[string]string) bool {
	for k, v := range filter {
		if t, ok := tags[k]; !ok || t != v {
			return false
		}
	}
	return true
}

// Split returns the wave sizes for n devices: the spec's waves (a
// percentage rounds up, so that a wave of 1% of 10 devices is one device),
// cut at n, with the rest in the last wave; or AutoSplit waves as equal as
// possible; or one wave. Empty waves are dropped.
func Split(s *Spec, n int) []int {
	var out []int
	switch {
	case n <= 0:
		return nil
	case s.AutoSplit > 0:
		k := min(s.AutoSplit, n)
		for i := range k {
			out = append(out, n/k+btoi(i >= k-n%k))
		}
		return out
	case len(s.Waves) == 0:
		return []int{n}
	}
	left := n
	for _, w := range s.Waves {
		if left == 0 {
			break
		}
		size := w.Count
		if w.Percent > 0 {
			size = int(math.Ceil(w.Percent * float64(n) / 100))
		}
		size = min(max(size, 1), left)
		out = append(out, size)
		left -= size
	}
	out[len(out)-1] += left
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Device is one device of a rollout as the decision sees it.
type Device struct {
	ID    string `json:"device_id"`
	Wave  int    `json:"wave"` // 0-based
	Phase Phase  `json:"phase"`
	// Error is the reason of a failure, from the device's report.
	Error string `json:"error,omitempty"`
}

// State is a rollout's progress as stored.
type State struct {
	Status Status `json:"status"`
	// Wave is the current wave (0-based); meaningful once running.
	Wave int `json:"wave"`
	// Waves is the number of waves.
	Waves int `json:"waves"`
}

// Decision is what to do next.
type Decision struct {
	// Assign and Withdraw are device IDs whose director assignment is to
	// be published or removed.
	Assign   []string `json:"assign,omitempty"`
	Withdraw []string `json:"withdraw,omitempty"`
	// Next is the state after the decision.
	Next State `json:"next"`
	// Reason explains a halt or completion.
	Reason string `json:"reason,omitempty"`
}

// WaveCounts are one wave's devices by phase.
type WaveCounts struct {
	Devices    int `json:"devices"`
	Pending    int `json:"pending"`
	Assigned   int `json:"assigned"`
	Deferred   int `json:"deferred"`
	Installing int `json:"installing"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	Withdrawn  int `json:"withdrawn"`
}

// Count tallies devices by wave.
func Count(waves int, devs []Device) []WaveCounts {
	out := make([]WaveCounts, waves)
	for _, d := range devs {
		if d.Wave < 0 || d.Wave >= waves {
			continue
		}
		c := &out[d.Wave]
		c.Devices++
		switch d.Phase {
		case Pending:
			c.Pending++
		case Assigned:
			c.Assigned++
		case Deferred:
			c.Deferred++
		case Installing:
			c.Installing++
		case Succeeded:
			c.Succeeded++
		case Failed:
			c.Failed++
		case Withdrawn:
			c.Withdrawn++
		}
	}
	return out
}

// Decide returns what to do for a rollout in state st with devices devs.
// It is idempotent: applied again to the state it produced, with the same
// devices, it asks for nothing more.
//
// Running: the current wave's pending devices are assigned; if its
// failures are above the failure threshold the rollout halts (with the
// reason) and every device that has not started is withdrawn; if its
// successes reach the success threshold the next wave's devices are
// assigned, or after the last wave the rollout completes. Paused, halted
// and aborted: every assigned device that has not started is withdrawn
// (a paused rollout's withdrawn devices are pending again, so that resume
// assigns them).
func Decide(s *Spec, st State, devs []Device) Decision {
	d := Decision{Next: st}
	switch st.Status {
	case Running:
	case Paused, Halted, Aborted:
		d.Withdraw = notStarted(devs, func(Device) bool { return true })
		return d
	default:
		return d
	}
	wave := st.Wave
	for {
		if wave >= st.Waves {
			d.Next.Status, d.Reason = Completed, "every wave reached its success threshold"
			return d
		}
		c := Count(st.Waves, devs)[wave]
		for _, dev := range devs {
			if dev.Wave == wave && dev.Phase == Pending {
				d.Assign = append(d.Assign, dev.ID)
			}
		}
		if c.Devices > 0 && float64(c.Failed) > s.FailureThreshold*float64(c.Devices) {
			d.Next.Status, d.Next.Wave = Halted, wave
			d.Reason = haltReason(s, wave, c, devs)
			d.Assign = nil
			d.Withdraw = notStarted(devs, func(Device) bool { return true })
			return d
		}
		if float64(c.Succeeded) < s.SuccessThreshold*float64(c.Devices) {
			d.Next.Wave = wave
			return d
		}
		// This wave is done: on to the next (its devices start pending).
		wave++
		d.Next.Wave = wave
		if wave >= st.Waves {
			d.Next.Wave = st.Waves - 1
			d.Next.Status, d.Reason = Completed, fmt.Sprintf("all %d waves reached the success threshold (%s)", st.Waves, pct(s.SuccessThreshold))
			return d
		}
	}
}

// notStarted returns the IDs of assigned devices that have not begun
// installing and match keep.
func notStarted(devs []Device, keep func(Device) bool) []string {
	var out []string
	for _, dev := range devs {
		if (dev.Phase == Assigned || dev.Phase == Deferred) && keep(dev) {
			out = append(out, dev.ID)
		}
	}
	return out
}

func haltReason(s *Spec, wave int, c WaveCounts, devs []Device) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wave %d: %d of %d devices failed (%s), above the failure threshold %s", wave+1, c.Failed, c.Devices,
		pct(float64(c.Failed)/float64(c.Devices)), pct(s.FailureThreshold))
	var failed []string
	for _, dev := range devs {
		if dev.Wave == wave && dev.Phase == Failed {
			e := dev.ID
			if dev.Error != "" {
				e += ": " + dev.Error
			}
			failed = append(failed, e)
		}
	}
	slices.Sort(failed)
	if len(failed) > 3 {
		failed = append(failed[:3], fmt.Sprintf("and %d more", len(failed)-3))
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(failed, "; "))
	}
	return b.String()
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

// Operator actions on a rollout.
const (
	Start   = "start"
	Approve = "approve"
	Pause   = "pause"
	Resume  = "resume"
	Abort   = "abort"
)

// ErrTransition means an action does not apply to the rollout's state.
var ErrTransition = errors.New("action does not apply to the rollout in its state")

// Transition returns the status after an operator action on a rollout in
// status st (approval: the spec asks for an approval step).
func Transition(st Status, action string, approval bool) (Status, error) {
	switch {
	case action == Start && st == Created && approval:
		return WaitingApproval, nil
	case action == Start && st == Created, action == Approve && st == WaitingApproval:
		return Running, nil
	case action == Pause && st == Running:
		return Paused, nil
	case action == Resume && st == Paused:
		return Running, nil
	case action == Abort && !st.Terminal():
		return Aborted, nil
	}
	var hint string
	switch {
	case st.Terminal():
		hint = "it is " + string(st) + "; create a new rollout"
	case action == Approve && st == Created:
		hint = "start it first; approval comes after start"
	case action == Approve:
		hint = "it needs no approval now"
	default:
		hint = "it is " + string(st)
	}
	return st, fmt.Errorf("%w: cannot %s: %s", ErrTransition, action, hint)
}

// Anonymous is who a change is recorded as when it was made without an
// operator token ('fwrepo rollout' on the database without --token).
const Anonymous = "cli"

// ErrApproval means an approval is refused: it must come from a named
// operator other than the rollout's creator.
var ErrApproval = errors.New("approval refused")

// CheckApprover decides whether approver may approve a rollout that
// creator created. An approval is a second person's control, so it needs
// a named operator (an operator token's name, never Anonymous or empty)
// who is not the creator. Names are compared exactly: token names are the
// operators' identities.
func CheckApprover(creator, approver string) error {
	switch {
	case approver == "" || approver == Anonymous:
		return fmt.Errorf("%w: an approval needs a named operator: approve with an operator token ('fwrepo rollout approve --token TOKEN', the operator API or the fleet view)", ErrApproval)
	case approver == creator:
		return fmt.Errorf("%w: %s created this rollout; a second operator must approve it", ErrApproval, approver)
	}
	return nil
}
