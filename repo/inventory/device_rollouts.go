package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

// DeviceRolloutEntry is one rollout a device was in, with its wave and
// phase there (as RolloutDevices reads them).
type DeviceRolloutEntry struct {
	Rollout *Rollout `json:"rollout"`
	RolloutDevice
}

// DeviceRollouts returns every rollout device id was in, newest first,
// ended ones included, each with the device's wave and phase: pending and
// withdrawn as recorded; an assigned device's from its latest attempt at
// the rollout's target reported since it was assigned. limit > 0 returns
// at most that many (the newest).
func (d *DB) DeviceRollouts(ctx context.Context, id string, limit int) ([]DeviceRolloutEntry, error) {
	q := `SELECT rd.rollout_id, rd.wave, rd.state, rd.assigned_at FROM rollout_devices rd
		JOIN rollouts r ON r.id = rd.rollout_id WHERE rd.device_id = ? ORDER BY r.created_at DESC, r.id`
	args := []any{id}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := d.db.QueryContext(ctx, d.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("rollouts of device %s: %w", id, err)
	}
	type rec struct {
		rid, state     string
		wave, assigned int64
	}
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.rid, &r.wave, &r.state, &r.assigned); err != nil {
			rows.Close()
			return nil, err
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]DeviceRolloutEntry, 0, len(recs))
	for _, r := range recs {
		ro, err := d.Rollout(ctx, r.rid)
		if err != nil {
			return nil, err
		}
		e := DeviceRolloutEntry{Rollout: ro, RolloutDevice: RolloutDevice{Device: rollout.Device{ID: id, Wave: int(r.wave)}}}
		switch r.state {
		case "pending":
			e.Phase = rollout.Pending
		case "withdrawn":
			e.Phase = rollout.Withdrawn
		default:
			e.Phase = rollout.Assigned
			t := time.Unix(0, r.assigned).UTC()
			e.AssignedAt = &t
			var outcome, msg string
			var at int64
			err := d.db.QueryRowContext(ctx, d.q(`SELECT outcome, error, at FROM events WHERE device_id = ? AND target = ? AND received >= ?
				ORDER BY at DESC, received DESC LIMIT 1`), id, ro.Spec.Target, r.assigned).Scan(&outcome, &msg, &at)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return nil, fmt.Errorf("rollout %s: attempts of device %s: %w", r.rid, id, err)
			default:
				e.Phase = rollout.PhaseOf(outcome)
				if e.Phase == rollout.Failed {
					e.Error = outcome
					if msg != "" {
						e.Error += ": " + msg
					}
				}
				t := time.Unix(0, at).UTC()
				e.LastAt = &t
			}
		}
		out = append(out, e)
	}
	return out, nil
}
