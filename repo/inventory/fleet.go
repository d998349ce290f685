package inventory

import (
	"context"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

// Identity kinds: where a device's key lives, from the "Identity" header
// of the PEM 'fwagent identity --pem' prints.
const (
	IdentityTPM  = "tpm"  // generated in the TPM, never exported
	IdentityFile = "file" // a key file (0600) on the device: weaker, it can be copied
	// IdentityUnknown: the PEM had no Identity header (a key from an
	// older fwagent or from elsewhere).
	IdentityUnknown = "unknown"
)

// IdentityOf returns the identity kind a public key PEM declares in its
// "Identity" header ("" when it has none).
func IdentityOf(pubPEM []byte) (string, error) {
	b, _ := pem.Decode(pubPEM)
	if b == nil {
		return "", fmt.Errorf("%w: not a PEM public key", manifests.ErrInvalidDeviceManifest)
	}
	switch v := b.Headers["Identity"]; v {
	case "":
		return "", nil
	case IdentityTPM, IdentityFile:
		return v, nil
	default:
		return "", fmt.Errorf("public key PEM: Identity header %q, want tpm or file", v)
	}
}

// ErrInvalidTag means a tag key or value is malformed.
var ErrInvalidTag = errors.New("invalid tag")

// ParseTags parses key=value arguments.
func ParseTags(args []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !rollout.ValidTagKey(k) || !rollout.ValidTagValue(v) {
			return nil, fmt.Errorf("%w: %q: want key=value, the key 1-64 letters, digits, '.', '_', '-', the value at most 128 printable characters without '=' or ','", ErrInvalidTag, a)
		}
		out[k] = v
	}
	return out, nil
}

// SetTags sets (adding or replacing) tags on registered device id.
func (d *DB) SetTags(ctx context.Context, id string, tags map[string]string) error {
	for k, v := range tags {
		if !rollout.ValidTagKey(k) || !rollout.ValidTagValue(v) {
			return fmt.Errorf("%w: %s=%s", ErrInvalidTag, k, v)
		}
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, d.q("SELECT 1 FROM devices WHERE id = ?"), id).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return d.notRegistered(ctx, tx, id)
	} else if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO tags (device_id, key, value) VALUES (?, ?, ?)
			ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value`), id, k, tags[k]); err != nil {
			return fmt.Errorf("tag %s: %w", id, err)
		}
	}
	return tx.Commit()
}

// RemoveTags removes tag keys from registered device id (absent keys are
// ignored).
func (d *DB) RemoveTags(ctx context.Context, id string, keys []string) error {
	if _, err := d.Device(ctx, id); err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := d.db.ExecContext(ctx, d.q("DELETE FROM tags WHERE device_id = ? AND key = ?"), id, k); err != nil {
			return fmt.Errorf("untag %s: %w", id, err)
		}
	}
	return nil
}

// Tags returns device id's tags (nil: none).
func (d *DB) Tags(ctx context.Context, id string) (map[string]string, error) {
	rows, err := d.db.QueryContext(ctx, d.q("SELECT key, value FROM tags WHERE device_id = ?"), id)
	if err != nil {
		return nil, fmt.Errorf("tags of %s: %w", id, err)
	}
	defer rows.Close()
	var out map[string]string
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out, rows.Err()
}

func (d *DB) allTags(ctx context.Context) (map[string]map[string]string, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT device_id, key, value FROM tags")
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var id, k, v string
		if err := rows.Scan(&id, &k, &v); err != nil {
			return nil, err
		}
		if out[id] == nil {
			out[id] = map[string]string{}
		}
		out[id][k] = v
	}
	return out, rows.Err()
}

// Group returns the registered devices whose tags match every key=value
// of filter (all devices for an empty filter), ordered by ID.
func (d *DB) Group(ctx context.Context, filter map[string]string) ([]*Device, error) {
	all, err := d.List(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(dev *Device) bool { return !rollout.Matches(filter, dev.Tags) }), nil
}

// Event is one install attempt a device reported.
type Event struct {
	DeviceID string    `json:"device_id"`
	At       time.Time `json:"at"`
	Target   string    `json:"target,omitempty"`
	Version  string    `json:"version,omitempty"`
	Outcome  string    `json:"outcome"`
	Error    string    `json:"error,omitempty"`
	// Received is when the server first accepted a report listing it.
	Received time.Time `json:"received"`
}

// recordEvents stores the attempts of an accepted manifest not seen
// before, in one statement.
func (d *DB) recordEvents(ctx context.Context, tx *sql.Tx, m *manifests.DeviceManifest, now time.Time) error {
	atts := m.Attempts
	if r := m.LastResult; r != nil {
		atts = append(slices.Clip(atts), *r)
	}
	if len(atts) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("INSERT INTO events (device_id, at, target, version, outcome, error, received) VALUES ")
	args := make([]any, 0, 7*len(atts))
	for i, a := range atts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		args = append(args, m.DeviceID, a.At.UnixNano(), a.Target, a.Version, a.Outcome, a.Error, now.UnixNano())
	}
	b.WriteString(" ON CONFLICT DO NOTHING")
	_, err := tx.ExecContext(ctx, d.q(b.String()), args...)
	return err
}

// History returns device id's reported attempts, newest first, at most
// limit (0: all).
func (d *DB) History(ctx context.Context, id string, limit int) ([]Event, error) {
	if _, err := d.Device(ctx, id); err != nil {
		return nil, err
	}
	q := "SELECT device_id, at, target, version, outcome, error, received FROM events WHERE device_id = ? ORDER BY at DESC, received DESC"
	args := []any{id}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := d.db.QueryContext(ctx, d.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", id, err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var (
			e       Event
			at, rec int64
		)
		if err := rows.Scan(&e.DeviceID, &at, &e.Target, &e.Version, &e.Outcome, &e.Error, &rec); err != nil {
			return nil, err
		}
		e.At, e.Received = time.Unix(0, at).UTC(), time.Unix(0, rec).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Hardware maps every registered device that reported to the hardware ID
// of its latest report.
func (d *DB) Hardware(ctx context.Context) (map[string]string, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT id, hardware, manifest IS NOT NULL FROM devices")
	if err != nil {
		return nil, fmt.Errorf("hardware of the devices: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	var missing []string
	for rows.Next() {
		var (
			id, hw   string
			reported bool
		)
		if err := rows.Scan(&id, &hw, &reported); err != nil {
			return nil, err
		}
		switch {
		case hw != "":
			out[id] = hw
		case reported: // reported before schema 2
			missing = append(missing, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for _, id := range missing {
		dev, err := d.Device(ctx, id)
		if err != nil {
			continue
		}
		if dev.Manifest != nil {
			out[id] = dev.Manifest.Hardware
		}
	}
	return out, nil
}
