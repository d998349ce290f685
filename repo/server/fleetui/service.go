package fleetui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/fwctl/fwctl/repo/exposure"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
	"github.com/fwctl/fwctl/repo/server/operator"
)

// ErrUnavailable means the fleet is not served now (fwrepo serve without
// --db, or shutting down).
var ErrUnavailable = errors.New("the fleet is not available: fwrepo serve needs --db for the fleet view")

// MaxRollouts bounds how many rollouts (the newest) the view shows.
const MaxRollouts = 20

// MaxDeviceRollouts bounds how many of a device's rollouts (the newest)
// its page shows.
const MaxDeviceRollouts = 100

// ended reports whether a rollout in status st has ended.
func ended(st rollout.Status) bool {
	return st == rollout.Halted || st == rollout.Aborted || st == rollout.Completed
}

// FromService adapts fwrepo's rollout service to Fleet. svc is called on
// every request (it returns nil while there is none).
func FromService(svc func() *operator.Service) Fleet {
	return serviceFleet{svc: svc, cache: &exposureCache{}}
}

type serviceFleet struct {
	svc   func() *operator.Service
	cache *exposureCache
}

func (f serviceFleet) get() (*operator.Service, error) {
	s := f.svc()
	if s == nil || s.DB == nil {
		return nil, ErrUnavailable
	}
	return s, nil
}

func (f serviceFleet) Authenticate(ctx context.Context, token string) (*Operator, error) {
	s, err := f.get()
	if err != nil {
		return nil, err
	}
	t, err := s.DB.Authenticate(ctx, token)
	if errors.Is(err, inventory.ErrBadToken) {
		return nil, fmt.Errorf("%w", ErrBadToken)
	}
	if err != nil {
		return nil, err
	}
	return &Operator{Name: t.Name, Role: t.Role, CanChange: t.Allows(inventory.RoleOperator)}, nil
}

func (f serviceFleet) Devices(ctx context.Context) ([]Device, error) {
	s, err := f.get()
	if err != nil {
		return nil, err
	}
	devs, err := s.DB.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Device, 0, len(devs))
	for _, d := range devs {
		out = append(out, deviceView(d))
	}
	return out, nil
}

// deviceView is what the view shows of d.
func deviceView(d *inventory.Device) Device {
	v := Device{ID: d.ID, Identity: d.Identity, LastSeen: d.LastSeen}
	if len(d.Tags) > 0 {
		v.Tags = inventory.FormatFilter(d.Tags)
	}
	if m := d.Manifest; m != nil {
		v.Hardware, v.RunningSlot, v.NextBoot, v.Counter = m.Hardware, m.RunningSlot, m.NextBoot, m.Counter
		v.Version = m.Running().Version
		for name, sl := range m.Slots {
			v.Slots = append(v.Slots, Slot{Name: name, Status: sl.Status, Version: sl.Version, Running: name == m.RunningSlot})
		}
		sort.Slice(v.Slots, func(i, j int) bool { return v.Slots[i].Name < v.Slots[j].Name })
		last := m.LastResult
		if n := len(m.Attempts); last == nil && n > 0 {
			last = &m.Attempts[n-1]
		}
		if last != nil {
			v.LastOutcome, v.LastError = last.Outcome, last.Error
		}
	}
	return v
}

func (f serviceFleet) Device(ctx context.Context, id string, maxEvents int) (*DeviceDetail, error) {
	s, err := f.get()
	if err != nil {
		return nil, err
	}
	d, err := s.DB.Device(ctx, id)
	if errors.Is(err, inventory.ErrUnknownDevice) || errors.Is(err, inventory.ErrDeviceRemoved) {
		return nil, fmt.Errorf("%w: %w", ErrNoDevice, err)
	}
	if err != nil {
		return nil, err
	}
	v := &DeviceDetail{Device: deviceView(d), KeyID: d.KeyID, Registered: d.AddedAt}
	if d.Manifest != nil {
		v.Target = d.Manifest.Running().Target
	}
	ev, err := s.DB.History(ctx, id, maxEvents+1)
	if err != nil {
		return nil, err
	}
	if len(ev) > maxEvents {
		ev, v.More = ev[:maxEvents], true
	}
	for _, e := range ev {
		v.Events = append(v.Events, Event{At: e.At, Received: e.Received, Target: e.Target, Version: e.Version, Outcome: e.Outcome, Error: e.Error})
	}
	rs, err := s.DB.DeviceRollouts(ctx, id, MaxDeviceRollouts)
	if err != nil {
		return nil, err
	}
	for _, e := range rs {
		r := DeviceRollout{ID: e.Rollout.ID, Status: string(e.Rollout.Status), Wave: e.Wave, Phase: string(e.Phase),
			Target: e.Rollout.Spec.Target, Reason: e.Rollout.Reason, Error: e.Error, Created: e.Rollout.CreatedAt, LastAt: e.LastAt}
		v.Rollouts = append(v.Rollouts, r)
		if v.Rollout == nil && !ended(e.Rollout.Status) {
			v.Rollout = &r
		}
	}
	return v, nil
}

// exposureTTL is how long an exposure answer is reused: it walks every
// imported advisory, too much for every page refresh.
const exposureTTL = time.Minute

// exposureCache holds the last exposure answer of a fleet.
type exposureCache struct {
	mu  sync.Mutex
	at  time.Time
	exp *Exposure
}

func (f serviceFleet) Exposure(ctx context.Context) (*Exposure, error) {
	s, err := f.get()
	if err != nil {
		return nil, err
	}
	c := f.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exp != nil && time.Since(c.at) < exposureTTL {
		return c.exp, nil
	}
	rep, err := exposure.Query(ctx, s.DB, "", time.Now())
	if err != nil {
		return nil, err
	}
	c.exp, c.at = exposureView(rep), time.Now()
	return c.exp, nil
}

// exposureView turns an exposure report into the view's.
func exposureView(rep *exposure.Report) *Exposure {
	e := &Exposure{ByDevice: map[string][]Advisory{}, PastSupport: map[string]string{}}
	for _, v := range rep.Vulnerabilities {
		a := Advisory{ID: v.ID, Aliases: v.Aliases, Summary: v.Summary, Devices: v.Devices}
		if a.Devices == 0 {
			continue
		}
		e.Advisories = append(e.Advisories, a)
		for _, r := range v.Releases {
			da := a
			da.FixedBy = r.FixedBy
			for _, h := range r.Components {
				da.Components = append(da.Components, h.Name+" "+h.Version)
			}
			for _, id := range r.Devices {
				e.ByDevice[id] = append(e.ByDevice[id], da)
			}
		}
	}
	sort.SliceStable(e.Advisories, func(i, j int) bool { return e.Advisories[i].Devices > e.Advisories[j].Devices })
	for _, p := range rep.PastSupport {
		e.PastSupport[p.Device] = p.SupportUntil
	}
	return e
}

func (f serviceFleet) Rollouts(ctx context.Context) ([]Rollout, error) {
	s, err := f.get()
	if err != nil {
		return nil, err
	}
	rs, err := s.DB.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	if len(rs) > MaxRollouts {
		rs = rs[:MaxRollouts]
	}
	out := make([]Rollout, 0, len(rs))
	for _, r := range rs {
		st, err := s.DB.Status(ctx, r.ID)
		if err != nil {
			return nil, fmt.Errorf("rollout %s: %w", r.ID, err)
		}
		v := Rollout{ID: r.ID, Target: r.Spec.Target, Filter: inventory.FormatFilter(r.Spec.Filter), Status: string(r.Status),
			Reason: r.Reason, Wave: r.Wave, Created: r.CreatedAt,
			SuccessThreshold: r.Spec.SuccessThreshold, FailureThreshold: r.Spec.FailureThreshold,
			Approval: r.Spec.Approval, CreatedBy: r.CreatedBy, ApprovedBy: r.ApprovedBy}
		for _, c := range st.Counts {
			v.Waves = append(v.Waves, Wave{Devices: c.Devices, Pending: c.Pending, Assigned: c.Assigned, Deferred: c.Deferred,
				Installing: c.Installing, Succeeded: c.Succeeded, Failed: c.Failed, Withdrawn: c.Withdrawn})
		}
		for _, d := range st.Devices {
			if d.Phase == rollout.Failed {
				v.Failures = append(v.Failures, Failure{DeviceID: d.ID, Wave: d.Wave, Reason: d.Error})
			}
		}
		sort.Slice(v.Failures, func(i, j int) bool { return v.Failures[i].DeviceID < v.Failures[j].DeviceID })
		for _, a := range []string{rollout.Start, rollout.Approve, rollout.Pause, rollout.Resume, rollout.Abort} {
			if _, err := rollout.Transition(r.Status, a, r.Spec.Approval); err == nil {
				v.Actions = append(v.Actions, a)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func (f serviceFleet) Act(ctx context.Context, id, action string, op *Operator) error {
	s, err := f.get()
	if err != nil {
		return err
	}
	_, err = s.Act(ctx, id, action, op.Name)
	return err
}
