package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fwctl/fwctl/manifests"
)

// ErrReplay means an offline device manifest is not newer than the latest
// report stored for its device: its sequence number is not above the
// stored one (a report imported twice, or an older one after a newer).
var ErrReplay = errors.New("report is not newer than the latest one stored for the device")

// Import verifies an offline device manifest (one 'fwagent report --to'
// wrote to removable media) and stores it as the device's latest, with its
// attempts, as Accept does for an online one. Its freshness is its
// sequence number instead of a nonce: it must carry one, and it must be
// above the sequence of the device's latest stored report (online or
// offline), else ErrReplay. It refuses a malformed manifest, an unknown or
// removed device and a bad signature as Accept does. A refused report
// changes nothing.
func (d *DB) Import(ctx context.Context, envelope []byte) (*manifests.DeviceManifest, error) {
	m, err := d.verified(ctx, envelope)
	if err != nil {
		return nil, err
	}
	if m.Seq == 0 {
		return nil, fmt.Errorf("%w: device %s: the report carries no sequence number (written by an fwagent older than offline reports); it cannot be ordered, so it is not imported", manifests.ErrInvalidDeviceManifest, m.DeviceID)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	lock := ""
	if d.pg {
		lock = " FOR UPDATE" // two imports of one device at once: one waits
	}
	var stored []byte
	switch err := tx.QueryRowContext(ctx, d.q("SELECT manifest FROM devices WHERE id = ?"+lock), m.DeviceID).Scan(&stored); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, d.notRegistered(ctx, tx, m.DeviceID)
	case err != nil:
		return nil, fmt.Errorf("look up device %s: %w", m.DeviceID, err)
	}
	if len(stored) > 0 {
		s, err := manifests.ParseDeviceManifest(stored)
		if err != nil {
			return nil, fmt.Errorf("stored report of %s: %w", m.DeviceID, err)
		}
		if last := s.Manifest.Seq; m.Seq <= last {
			why := "a replayed or older report; its attempts are in the newer one"
			if m.Seq == last {
				why = "a replayed report: this one is already stored"
			}
			return nil, fmt.Errorf("%w: device %s: report sequence %d, the latest stored is %d (of %s): %s",
				ErrReplay, m.DeviceID, m.Seq, last, s.Manifest.Time.Format("2006-01-02T15:04:05Z"), why)
		}
	}
	now := d.Now()
	if _, err := tx.ExecContext(ctx, d.q("UPDATE devices SET last_seen = ?, manifest = ?, hardware = ? WHERE id = ?"), now.UnixNano(), envelope, m.Hardware, m.DeviceID); err != nil {
		return nil, fmt.Errorf("store manifest of %s: %w", m.DeviceID, err)
	}
	if err := d.recordEvents(ctx, tx, m, now); err != nil {
		return nil, fmt.Errorf("store the attempts of %s: %w", m.DeviceID, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store manifest of %s: %w", m.DeviceID, err)
	}
	return m, nil
}
