// Package operator is fwrepo's operator side of the fleet: the rollout
// engine, which turns rollout decisions (package rollout) into signed
// director assignments, and the operator HTTP API under /api/v1/fleet/,
// where every request needs an operator token (deny by default: viewers
// read, operators change devices, tags and rollouts).
package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
	"github.com/fwctl/fwctl/repo/online/director"
	"github.com/fwctl/fwctl/repo/verify"
)

// Assigner publishes director assignments; *director.Director is one.
type Assigner interface {
	Assign(ctx context.Context, as []director.Assignment) error
	Unassign(ctx context.Context, deviceIDs []string) error
}

// Releases looks up a release of the image repository by target path,
// verified.
type Releases interface {
	Target(ctx context.Context, path string) (*verify.Target, error)
}

// ErrNoRelease means the rollout's target is not a verified target of the
// image repository.
var ErrNoRelease = errors.New("release is not a target of the image repository")

// StoreReleases reads releases from the image repository in Store,
// verified from TrustedRoot (empty: the store's metadata/1.root.json).
type StoreReleases struct {
	Store       blob.Store
	TrustedRoot []byte
}

// Target implements Releases.
func (s StoreReleases) Target(ctx context.Context, path string) (*verify.Target, error) {
	root := s.TrustedRoot
	if len(root) == 0 {
		var err error
		if root, err = blob.ReadAll(ctx, s.Store, "metadata/1.root.json"); err != nil {
			return nil, fmt.Errorf("read the image repository's root: %w", err)
		}
	}
	res, err := verify.Verify(ctx, verify.StoreSource(s.Store), root, time.Now())
	if err != nil {
		return nil, fmt.Errorf("the image repository does not verify: %w", err)
	}
	for i := range res.Targets {
		if res.Targets[i].Path == path {
			return &res.Targets[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s (see 'fwctl target list')", ErrNoRelease, path)
}

// Service runs rollouts on an inventory. Without a Director it only
// records operator actions; the fwrepo serve that has the director key
// then carries them out on its next Reconcile.
type Service struct {
	DB       *inventory.DB
	Director Assigner
	Releases Releases
	Log      *slog.Logger

	mu      sync.Mutex
	targets map[string]*verify.Target // by rollout ID
	kick    chan struct{}
	once    sync.Once
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Service) init() {
	s.once.Do(func() {
		s.kick = make(chan struct{}, 1)
		s.targets = map[string]*verify.Target{}
	})
}

// Create creates a rollout (see inventory.DB.CreateRollout).
func (s *Service) Create(ctx context.Context, id string, spec rollout.Spec, by string) (*inventory.Rollout, error) {
	return s.DB.CreateRollout(ctx, id, spec, by)
}

// Act applies an operator action (rollout.Start, Approve, Pause, Resume,
// Abort) by the named operator and, with a director, carries it out at
// once. An approval must come from a named operator other than the
// rollout's creator (rollout.CheckApprover).
func (s *Service) Act(ctx context.Context, id, action, by string) (*inventory.Rollout, error) {
	for range 5 {
		r, err := s.DB.Rollout(ctx, id)
		if err != nil {
			return nil, err
		}
		next, err := rollout.Transition(r.Status, action, r.Spec.Approval)
		if err != nil {
			return nil, fmt.Errorf("rollout %s: %w", id, err)
		}
		if action == rollout.Approve {
			if err := rollout.CheckApprover(r.CreatedBy, by); err != nil {
				s.log().Warn("rollout: approval refused", "id", id, "by", by, "created_by", r.CreatedBy)
				return nil, fmt.Errorf("rollout %s: %w", id, err)
			}
		}
		u := inventory.Update{State: r.State}
		u.State.Status = next
		var reason string
		switch action {
		case rollout.Approve:
			u.ApprovedBy = by
		case rollout.Pause, rollout.Abort:
			reason = fmt.Sprintf("%s by %s at %s", map[string]string{rollout.Pause: "paused", rollout.Abort: "aborted"}[action], by, time.Now().UTC().Format(time.RFC3339))
			u.Reason = &reason
		case rollout.Resume:
			u.Reason = &reason
		}
		nr, err := s.DB.UpdateRollout(ctx, r, u)
		if errors.Is(err, inventory.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log().Info("rollout", "id", id, "action", action, "by", by, "status", next)
		if s.Director != nil {
			if err := s.Reconcile(ctx, id); err != nil {
				return nr, fmt.Errorf("rollout %s is %s, but carrying it out failed (retried on the next reconcile): %w", id, next, err)
			}
			return s.DB.Rollout(ctx, id)
		}
		return nr, nil
	}
	return nil, fmt.Errorf("rollout %s: %w", id, inventory.ErrConflict)
}

// ReconcileAll reconciles every rollout that has not completed.
func (s *Service) ReconcileAll(ctx context.Context) error {
	rs, err := s.DB.Rollouts(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		switch r.Status {
		case rollout.Running, rollout.Paused, rollout.Halted, rollout.Aborted:
			if err := s.Reconcile(ctx, r.ID); err != nil {
				errs = append(errs, fmt.Errorf("rollout %s: %w", r.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Reconcile brings rollout id's director assignments and state in line
// with its devices' signed reports: it decides (rollout.Decide), stores the
// new state, withdraws the release from devices that have not started
// when the rollout is paused, halted or aborted, and assigns it to the
// devices of the waves that start.
func (s *Service) Reconcile(ctx context.Context, id string) error {
	if s.Director == nil {
		return errors.New("no director: rollouts are carried out by 'fwrepo serve --director-key'")
	}
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 5 {
		err := s.reconcile(ctx, id)
		if !errors.Is(err, inventory.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("rollout %s: %w", id, inventory.ErrConflict)
}

func (s *Service) reconcile(ctx context.Context, id string) error {
	r, err := s.DB.Rollout(ctx, id)
	if err != nil {
		return err
	}
	devs, err := s.DB.RolloutDevices(ctx, r)
	if err != nil {
		return err
	}
	d := rollout.Decide(&r.Spec, r.State, inventory.Plain(devs))
	var t *verify.Target
	if len(d.Assign) > 0 {
		if t, err = s.target(ctx, r); errors.Is(err, ErrNoRelease) {
			reason := err.Error()
			d = rollout.Decision{Next: rollout.State{Status: rollout.Halted, Wave: r.Wave, Waves: r.Waves}, Reason: reason}
		} else if err != nil {
			return err
		}
	}
	if d.Next != r.State || d.Reason != "" && d.Reason != r.Reason {
		u := inventory.Update{State: d.Next}
		if d.Reason != "" {
			u.Reason = &d.Reason
		}
		if r, err = s.DB.UpdateRollout(ctx, r, u); err != nil {
			return err
		}
		s.log().Info("rollout", "id", id, "status", d.Next.Status, "wave", d.Next.Wave+1, "waves", d.Next.Waves, "reason", d.Reason)
		if d.Next.Status == rollout.Halted {
			// A halt also withdraws (Decide said which devices).
			s.log().Warn("rollout halted", "id", id, "reason", d.Reason)
		}
	}
	if d.Next.Status.Terminal() || d.Next.Status == rollout.Paused {
		// Whatever the decision on the old state was, withdraw from the
		// devices that have not started.
		d.Withdraw = rollout.Decide(&r.Spec, r.State, inventory.Plain(devs)).Withdraw
		d.Assign = nil
	}
	if len(d.Withdraw) > 0 {
		if err := s.Director.Unassign(ctx, d.Withdraw); err != nil {
			return fmt.Errorf("withdraw %d devices: %w", len(d.Withdraw), err)
		}
		state := "withdrawn"
		if r.Status == rollout.Paused {
			state = "pending"
		}
		if err := s.DB.SetDeviceStates(ctx, r, d.Withdraw, state, time.Unix(0, 0)); err != nil {
			return err
		}
		s.log().Info("rollout: withdrew the release", "id", id, "devices", len(d.Withdraw), "now", state)
	}
	if len(d.Assign) > 0 && r.Status == rollout.Running {
		return s.assign(ctx, r, t, devs, d.Assign)
	}
	return nil
}

// target returns rollout r's release, verified once per rollout.
func (s *Service) target(ctx context.Context, r *inventory.Rollout) (*verify.Target, error) {
	if t := s.targets[r.ID]; t != nil {
		return t, nil
	}
	if s.Releases == nil {
		return nil, errors.New("no image repository to look the release up in")
	}
	t, err := s.Releases.Target(ctx, r.Spec.Target)
	if err != nil {
		return nil, err
	}
	s.targets[r.ID] = t
	return t, nil
}

func (s *Service) assign(ctx context.Context, r *inventory.Rollout, t *verify.Target, devs []inventory.RolloutDevice, ids []string) error {
	hw, err := s.DB.Hardware(ctx)
	if err != nil {
		return err
	}
	wave := make(map[string]int, len(devs))
	for _, dev := range devs {
		wave[dev.ID] = dev.Wave
	}
	var (
		as       []director.Assignment
		assigned []string
		skipped  []string
	)
	for _, id := range ids {
		a, err := director.ForTarget(id, hw[id], *t)
		if err != nil {
			// Another hardware (or none reported and the release is for
			// several): the release is not for this device.
			skipped = append(skipped, id)
			s.log().Warn("rollout: device skipped", "id", r.ID, "device", id, "err", err)
			continue
		}
		a.Maintenance = r.Spec.Maintenance
		a.Custom, _ = json.Marshal(map[string]any{"rollout": r.ID, "wave": wave[id] + 1})
		as = append(as, a)
		assigned = append(assigned, id)
	}
	if len(skipped) > 0 {
		if err := s.DB.SetDeviceStates(ctx, r, skipped, "withdrawn", time.Unix(0, 0)); err != nil {
			return err
		}
	}
	if len(as) == 0 {
		return nil
	}
	// Recorded first, so that a report racing the publication counts, and
	// a pause meanwhile withdraws them.
	at := time.Now()
	if err := s.DB.SetDeviceStates(ctx, r, assigned, "assigned", at); err != nil {
		return err
	}
	start := time.Now()
	if err := s.Director.Assign(ctx, as); err != nil {
		if e := s.DB.SetDeviceStates(ctx, r, assigned, "pending", time.Unix(0, 0)); e != nil {
			err = errors.Join(err, e)
		}
		return fmt.Errorf("assign %s to %d devices: %w", t.Path, len(as), err)
	}
	s.log().Info("rollout: assigned", "id", r.ID, "target", t.Path, "devices", len(as), "wave", r.Wave+1, "took", time.Since(start).String())
	return nil
}

// Kick asks Run to reconcile soon (after an accepted report or an
// operator action from another process).
func (s *Service) Kick() {
	s.init()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run reconciles every rollout every interval, and soon after Kick, until
// ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	s.init()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		if err := s.ReconcileAll(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("rollouts: reconcile failed", "err", err)
		}
		// Reports arrive all the time at fleet scale: reconciling (reading
		// every device of every running rollout) takes at most a twentieth
		// of the time, and runs at most once a second.
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(time.Second, 20*time.Since(start))):
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}
