package inventory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

// Errors of rollouts.
var (
	// ErrUnknownRollout means no rollout has that ID.
	ErrUnknownRollout = errors.New("no rollout with that ID")
	// ErrRolloutExists means a rollout of that ID exists.
	ErrRolloutExists = errors.New("a rollout with that ID exists")
	// ErrNoDevices means a rollout's filter selects no device.
	ErrNoDevices = errors.New("the rollout's filter selects no registered device")
	// ErrDeviceBusy means a device the filter selects is in another
	// rollout that has not ended.
	ErrDeviceBusy = errors.New("device is in another rollout that has not ended")
	// ErrConflict means the rollout changed meanwhile (another process
	// acted on it): read it again and retry.
	ErrConflict = errors.New("the rollout changed meanwhile; retry")
)

// Rollout is a stored rollout.
type Rollout struct {
	ID   string       `json:"id"`
	Spec rollout.Spec `json:"spec"`
	rollout.State
	// Sizes are the waves' device counts.
	Sizes []int `json:"sizes"`
	// Reason says why it halted or completed, or who paused or aborted it.
	Reason     string    `json:"reason,omitempty"`
	Rev        int64     `json:"rev"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	CreatedBy  string    `json:"created_by,omitempty"`
	ApprovedBy string    `json:"approved_by,omitempty"`
}

// RolloutDevice is one device of a rollout with its phase, read from the
// rollout's record and the device's reported attempts since it was
// assigned.
type RolloutDevice struct {
	rollout.Device
	AssignedAt *time.Time `json:"assigned_at,omitempty"`
	// LastAt is the time of the attempt its phase comes from.
	LastAt *time.Time `json:"last_at,omitempty"`
}

// ValidRolloutID reports whether id is an acceptable rollout ID.
func ValidRolloutID(id string) bool { return rollout.ValidTagKey(id) }

// CreateRollout stores a rollout of spec over the devices its filter
// selects now (the membership is fixed here), split into waves. An empty
// id is generated. by names who created it (an operator token's name, or
// "cli").
func (d *DB) CreateRollout(ctx context.Context, id string, spec rollout.Spec, by string) (*Rollout, error) {
	if spec.SuccessThreshold == 0 {
		spec.SuccessThreshold = rollout.DefaultSuccessThreshold
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if id == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id = "r-" + d.Now().UTC().Format("20060102") + "-" + hex.EncodeToString(b[:])
	}
	if !ValidRolloutID(id) {
		return nil, fmt.Errorf("%w: ID %q: want 1-64 letters, digits, '.', '_', '-'", rollout.ErrInvalidSpec, id)
	}
	devs, err := d.Group(ctx, spec.Filter)
	if err != nil {
		return nil, err
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("%w: filter %s ('fwrepo devices list' shows the tags; 'fwrepo devices tag' sets them)", ErrNoDevices, FormatFilter(spec.Filter))
	}
	busy, err := d.busyDevices(ctx)
	if err != nil {
		return nil, err
	}
	var clash []string
	for _, dev := range devs {
		if r, ok := busy[dev.ID]; ok {
			clash = append(clash, dev.ID+" (rollout "+r+")")
		}
	}
	if len(clash) > 0 {
		more := ""
		if len(clash) > 5 {
			more, clash = fmt.Sprintf(" and %d more", len(clash)-5), clash[:5]
		}
		return nil, fmt.Errorf("%w: %s%s; abort that rollout or narrow the filter", ErrDeviceBusy, strings.Join(clash, ", "), more)
	}
	sizes := rollout.Split(&spec, len(devs))
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	sizesJSON, _ := json.Marshal(sizes)
	now := d.Now().UTC()
	r := &Rollout{ID: id, Spec: spec, State: rollout.State{Status: rollout.Created, Waves: len(sizes)}, Sizes: sizes,
		Rev: 1, CreatedAt: now, UpdatedAt: now, CreatedBy: by}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, d.q(`INSERT INTO rollouts (id, spec, status, wave, waves, sizes, reason, rev, created_at, updated_at, created_by, approved_by)
		VALUES (?, ?, ?, 0, ?, ?, '', 1, ?, ?, ?, '') ON CONFLICT (id) DO NOTHING`),
		id, string(specJSON), string(r.Status), r.Waves, string(sizesJSON), now.UnixNano(), now.UnixNano(), by)
	if err != nil {
		return nil, fmt.Errorf("create rollout %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("%w: %q", ErrRolloutExists, id)
	}
	// Members in batches: one statement per 500 devices.
	i := 0
	for w, n := range sizes {
		for start := 0; start < n; start += 500 {
			m := min(500, n-start)
			var b strings.Builder
			b.WriteString("INSERT INTO rollout_devices (rollout_id, device_id, wave, state, assigned_at) VALUES ")
			args := make([]any, 0, 3*m)
			for j := range m {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, 'pending', 0)")
				args = append(args, id, devs[i].ID, w)
				i++
			}
			if _, err := tx.ExecContext(ctx, d.q(b.String()), args...); err != nil {
				return nil, fmt.Errorf("create rollout %s: %w", id, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("create rollout %s: %w", id, err)
	}
	return r, nil
}

// FormatFilter prints a tag filter as key=value,… ("all devices" when
// empty).
func FormatFilter(f map[string]string) string {
	if len(f) == 0 {
		return "(all devices)"
	}
	var parts []string
	for k, v := range f {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// busyDevices maps devices in a rollout that has not ended to its ID.
func (d *DB) busyDevices(ctx context.Context) (map[string]string, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT rd.device_id, rd.rollout_id FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
		WHERE r.status NOT IN (?, ?, ?)`), string(rollout.Halted), string(rollout.Aborted), string(rollout.Completed))
	if err != nil {
		return nil, fmt.Errorf("list devices in rollouts: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var dev, r string
		if err := rows.Scan(&dev, &r); err != nil {
			return nil, err
		}
		out[dev] = r
	}
	return out, rows.Err()
}

const rolloutCols = "id, spec, status, wave, waves, sizes, reason, rev, created_at, updated_at, created_by, approved_by"

func scanRollout(row interface{ Scan(...any) error }) (*Rollout, error) {
	var (
		r                 Rollout
		spec, sizes, st   string
		created, updated  int64
		wave, waves, rev_ int64
	)
	if err := row.Scan(&r.ID, &spec, &st, &wave, &waves, &sizes, &r.Reason, &rev_, &created, &updated, &r.CreatedBy, &r.ApprovedBy); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return nil, fmt.Errorf("stored rollout %s: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(sizes), &r.Sizes); err != nil {
		return nil, fmt.Errorf("stored rollout %s: %w", r.ID, err)
	}
	r.Status, r.Wave, r.Waves, r.Rev = rollout.Status(st), int(wave), int(waves), rev_
	r.CreatedAt, r.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return &r, nil
}

// Rollout returns rollout id.
func (d *DB) Rollout(ctx context.Context, id string) (*Rollout, error) {
	r, err := scanRollout(d.db.QueryRowContext(ctx, d.q("SELECT "+rolloutCols+" FROM rollouts WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q ('fwrepo rollout list' shows them)", ErrUnknownRollout, id)
	}
	return r, err
}

// Rollouts returns every rollout, newest first.
func (d *DB) Rollouts(ctx context.Context) ([]*Rollout, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT "+rolloutCols+" FROM rollouts ORDER BY created_at DESC, id")
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	defer rows.Close()
	out := []*Rollout{}
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RolloutDevices returns rollout id's devices, ordered by ID, with their
// phases: pending and withdrawn as recorded; an assigned device's from
// its latest attempt at the rollout's target reported since it was
// assigned (only signed, fresh reports are ever stored, see Accept).
func (d *DB) RolloutDevices(ctx context.Context, r *Rollout) ([]RolloutDevice, error) {
	rows, err := d.rd.QueryContext(ctx, d.q(`SELECT rd.device_id, rd.wave, rd.state, rd.assigned_at, e.outcome, e.error, e.at
		FROM rollout_devices rd LEFT JOIN events e
		ON rd.state = 'assigned' AND e.device_id = rd.device_id AND e.target = ? AND e.received >= rd.assigned_at
		WHERE rd.rollout_id = ? ORDER BY rd.device_id, e.at, e.received`), r.Spec.Target, r.ID)
	if err != nil {
		return nil, fmt.Errorf("devices of rollout %s: %w", r.ID, err)
	}
	defer rows.Close()
	var out []RolloutDevice
	for rows.Next() {
		var (
			id, state       string
			wave, assigned  int64
			outcome, errMsg sql.NullString
			at              sql.NullInt64
		)
		if err := rows.Scan(&id, &wave, &state, &assigned, &outcome, &errMsg, &at); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].ID != id {
			rd := RolloutDevice{Device: rollout.Device{ID: id, Wave: int(wave)}}
			switch state {
			case "pending":
				rd.Phase = rollout.Pending
			case "withdrawn":
				rd.Phase = rollout.Withdrawn
			default:
				rd.Phase = rollout.Assigned
				t := time.Unix(0, assigned).UTC()
				rd.AssignedAt = &t
			}
			out = append(out, rd)
		}
		if !at.Valid {
			continue
		}
		// Rows come oldest first: the last one decides.
		rd := &out[len(out)-1]
		rd.Phase, rd.Error = rollout.PhaseOf(outcome.String), ""
		if rd.Phase == rollout.Failed {
			rd.Error = outcome.String
			if errMsg.String != "" {
				rd.Error += ": " + errMsg.String
			}
		}
		t := time.Unix(0, at.Int64).UTC()
		rd.LastAt = &t
	}
	return out, rows.Err()
}

// RolloutStatus is a rollout with its devices and per-wave counts.
type RolloutStatus struct {
	*Rollout
	Counts  []rollout.WaveCounts `json:"wave_counts"`
	Devices []RolloutDevice      `json:"devices"`
}

// Status returns rollout id with its devices' phases and per-wave counts.
func (d *DB) Status(ctx context.Context, id string) (*RolloutStatus, error) {
	r, err := d.Rollout(ctx, id)
	if err != nil {
		return nil, err
	}
	devs, err := d.RolloutDevices(ctx, r)
	if err != nil {
		return nil, err
	}
	return &RolloutStatus{Rollout: r, Counts: rollout.Count(r.Waves, Plain(devs)), Devices: devs}, nil
}

// Plain returns the decision's view of devs.
func Plain(devs []RolloutDevice) []rollout.Device {
	out := make([]rollout.Device, len(devs))
	for i := range devs {
		out[i] = devs[i].Device
	}
	return out
}

// Update is a change to a stored rollout.
type Update struct {
	State  rollout.State
	Reason *string
	// ApprovedBy, when set, records who approved.
	ApprovedBy string
}

// UpdateRollout stores a new state for r if nobody changed it since r was
// read (its Rev), and returns it as updated; otherwise ErrConflict.
func (d *DB) UpdateRollout(ctx context.Context, r *Rollout, u Update) (*Rollout, error) {
	reason := r.Reason
	if u.Reason != nil {
		reason = *u.Reason
	}
	approved := r.ApprovedBy
	if u.ApprovedBy != "" {
		approved = u.ApprovedBy
	}
	now := d.Now().UTC()
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE rollouts SET status = ?, wave = ?, reason = ?, approved_by = ?, rev = rev + 1, updated_at = ?
		WHERE id = ? AND rev = ?`), string(u.State.Status), u.State.Wave, reason, approved, now.UnixNano(), r.ID, r.Rev)
	if err != nil {
		return nil, fmt.Errorf("update rollout %s: %w", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("%w: rollout %s", ErrConflict, r.ID)
	}
	nr := *r
	nr.State.Status, nr.State.Wave, nr.Reason, nr.ApprovedBy, nr.Rev, nr.UpdatedAt = u.State.Status, u.State.Wave, reason, approved, r.Rev+1, now
	return &nr, nil
}

// SetDeviceStates records rollout r's devices ids as "pending",
// "assigned" (since at) or "withdrawn".
func (d *DB) SetDeviceStates(ctx context.Context, r *Rollout, ids []string, state string, at time.Time) error {
	switch state {
	case "pending", "assigned", "withdrawn":
	default:
		return fmt.Errorf("rollout device state %q", state)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for start := 0; start < len(ids); start += 500 {
		batch := ids[start:min(start+500, len(ids))]
		args := []any{state, at.UnixNano(), r.ID}
		for _, id := range batch {
			args = append(args, id)
		}
		q := "UPDATE rollout_devices SET state = ?, assigned_at = ? WHERE rollout_id = ? AND device_id IN (?" + strings.Repeat(", ?", len(batch)-1) + ")"
		if _, err := tx.ExecContext(ctx, d.q(q), args...); err != nil {
			return fmt.Errorf("rollout %s: record devices %s: %w", r.ID, state, err)
		}
	}
	return tx.Commit()
}

// DeviceRollout returns the rollout that has not ended device id is in
// (nil: none).
func (d *DB) DeviceRollout(ctx context.Context, id string) (*Rollout, error) {
	var rid string
	err := d.db.QueryRowContext(ctx, d.q(`SELECT rd.rollout_id FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
		WHERE rd.device_id = ? AND r.status NOT IN (?, ?, ?)`), id, string(rollout.Halted), string(rollout.Aborted), string(rollout.Completed)).Scan(&rid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d.Rollout(ctx, rid)
}
