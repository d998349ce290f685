// Package inventory is fwrepo's device registry and fleet inventory: the
// devices allowed to report (ID and public key), the nonces handed out for
// their reports, and the latest signed device manifest of each, in an
// embedded SQLite database (modernc.org/sqlite, pure Go) or, at fleet scale,
// in PostgreSQL (github.com/jackc/pgx/v5, pure Go), chosen by Open's
// argument; both keep the same tables and give the same answers.
//
// It also keeps the operators' view of the fleet (issue 15): each device's
// identity kind and tags (groups are tag filters), the history of every
// install attempt its reports listed, the rollouts and their devices'
// progress (decided by package rollout), and the operators' tokens, stored
// hashed. Schema migrations bring an older database up to date on open.
//
// It accepts a manifest only from a registered device, signed by that
// device's key, carrying a nonce it issued that is neither expired nor used.
// It keeps the envelope as received, so the stored report can be verified
// again later. The device agent never imports it.
package inventory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/fwctl/fwctl/manifests"
)

// Errors callers branch on.
var (
	// ErrUnknownDevice means no device with that ID is registered.
	ErrUnknownDevice = errors.New("device is not registered")
	// ErrDeviceRemoved means the device was registered and then removed
	// (decommissioned) with RemoveDevice: its reports are refused until
	// it is registered again.
	ErrDeviceRemoved = errors.New("device was removed from the inventory (decommissioned)")
	// ErrDeviceExists means the ID is registered with another key.
	ErrDeviceExists = errors.New("device is already registered with another key")
	// ErrKeyInUse means the key is registered for another device ID.
	ErrKeyInUse = errors.New("public key is already registered for another device")
	// ErrNonce means a manifest's nonce was never issued, has expired or
	// was already used: the device must fetch a fresh one and report again.
	ErrNonce = errors.New("nonce unknown, expired or already used")
	// ErrBusy means too many nonces are outstanding; retry later.
	ErrBusy = errors.New("too many outstanding nonces")
)

// Defaults for a DB.
const (
	DefaultNonceTTL       = 5 * time.Minute
	DefaultMaxOutstanding = 100_000
)

// DB is an open inventory database. It is safe for concurrent use, also by
// several processes on one file (fwrepo serve and fwrepo devices add).
type DB struct {
	db *sql.DB
	// pg: PostgreSQL, whose placeholders are $1, $2, … instead of ?.
	pg bool
	// Now is the clock (tests move it to expire nonces).
	Now func() time.Time
	// NonceTTL is how long an issued nonce stays valid.
	NonceTTL time.Duration
	// MaxOutstanding caps unexpired unused nonces, so that anonymous
	// nonce requests cannot grow the database without bound.
	MaxOutstanding int

	// rd serves the hot reads (a report's device, a reconcile's rollout
	// devices): on SQLite a pool of read-only connections beside the one
	// writer, so that they neither wait for nor hold up a commit; on
	// PostgreSQL db itself.
	rd *sql.DB
	// group, on SQLite, takes write transactions to group-commit
	// (batch.go); nil on PostgreSQL.
	group     chan *groupReq
	closed    chan struct{}
	groupDone chan struct{}
	closeOnce sync.Once
}

// Open opens (creating if needed) the inventory database dsn: a PostgreSQL
// URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?sslmode=…], the
// scheme in any case), a PostgreSQL keyword=value string (host=… user=…
// dbname=…), or else the path of an SQLite file, created readable by its
// owner only (0600: it holds the fleet's keys and reports). A name that
// looks like a connection string of neither form is refused rather than
// created as a file, and no error shows a password. It gives up on an unreachable PostgreSQL
// server after 15 seconds; OpenContext takes a context instead.
func Open(dsn string) (*DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return OpenContext(ctx, dsn)
}

// OpenContext is Open with a context bounding the connection and schema
// set-up.
func OpenContext(ctx context.Context, dsn string) (*DB, error) {
	if IsPostgres(dsn) {
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, dsn)
}

func newDB(db *sql.DB, pg bool) *DB {
	return &DB{db: db, rd: db, pg: pg, Now: time.Now, NonceTTL: DefaultNonceTTL, MaxOutstanding: DefaultMaxOutstanding}
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	if err := checkSQLitePath(path); err != nil {
		return nil, err
	}
	// SQLite would create the file with the umask's permissions (0644),
	// and its -wal and -shm files with the database file's.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create inventory %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=synchronous(full)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	// One connection: SQLite serialises writers anyway, and this keeps
	// busy errors out of a single process.
	db.SetMaxOpenConns(1)
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		db.Close()
		return nil, fmt.Errorf("open inventory %s: %w (is it an SQLite database?)", path, err)
	}
	if err := migrateSQLite(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	// Readers: in WAL mode they see the last commit and never block the
	// writer (query_only: nothing written through them by mistake).
	rd, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	rd.SetMaxOpenConns(4)
	d := newDB(db, false)
	d.rd = rd
	d.group, d.closed, d.groupDone = make(chan *groupReq), make(chan struct{}), make(chan struct{})
	go d.groupCommit()
	return d, nil
}

// q adapts a query written with ? placeholders to the database's dialect.
func (d *DB) q(query string) string {
	if !d.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Close closes the database (after the group commit under way, if any).
func (d *DB) Close() error {
	var err error
	d.closeOnce.Do(func() {
		if d.group != nil {
			close(d.closed)
			<-d.groupDone
			err = d.rd.Close()
		}
		err = errors.Join(d.db.Close(), err)
	})
	return err
}

// Device is a registered device and its latest accepted report.
type Device struct {
	ID           string    `json:"device_id"`
	KeyID        string    `json:"key_id"`
	PublicKeyPEM string    `json:"public_key"`
	AddedAt      time.Time `json:"added_at"`
	// LastSeen is when its latest manifest was accepted (nil: never).
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// Manifest is the latest accepted manifest, Envelope as it was sent.
	Manifest *manifests.DeviceManifest `json:"manifest,omitempty"`
	Envelope []byte                    `json:"-"`
	// Identity is where the device's key lives, as its PEM's Identity
	// header said at registration: IdentityTPM, IdentityFile (weaker: a
	// key file on the device's storage) or IdentityUnknown.
	Identity string `json:"identity"`
	// Tags are the operator's key=value labels (groups select by them).
	Tags map[string]string `json:"tags,omitempty"`
}

// AddOptions control AddDevice.
type AddOptions struct {
	// Replace re-registers an existing ID with a new key (a replaced
	// TPM); its stored report is dropped.
	Replace bool
}

// AddDevice registers device id with the ECDSA P-256 public key in pubPEM.
// Registering the same ID with the same key again changes nothing and
// reports added false.
func (d *DB) AddDevice(ctx context.Context, id string, pubPEM []byte, opt AddOptions) (dev *Device, added bool, err error) {
	if !manifests.ValidDeviceID(id) {
		return nil, false, fmt.Errorf("device ID %q: want 1-128 letters, digits, '.', '_', ':', '-' (the default is the key ID 'fwagent identity' prints)", id)
	}
	pub, err := manifests.ParsePublicKeyPEM(pubPEM)
	if err != nil {
		return nil, false, err
	}
	identity, err := IdentityOf(pubPEM)
	if err != nil {
		return nil, false, err
	}
	keyID, err := manifests.KeyID(pub)
	if err != nil {
		return nil, false, err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback()
	var oldKey string
	switch err := tx.QueryRowContext(ctx, d.q("SELECT key_id FROM devices WHERE id = ?"), id).Scan(&oldKey); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, false, err
	case oldKey == keyID:
		tx.Rollback() // release the single connection before reading
		dev, err := d.Device(ctx, id)
		return dev, false, err
	case !opt.Replace:
		return nil, false, fmt.Errorf("%w: %s has key %s, the new key is %s; use --replace if the device's TPM was replaced", ErrDeviceExists, id, oldKey, keyID)
	}
	var other string
	switch err := tx.QueryRowContext(ctx, d.q("SELECT id FROM devices WHERE key_id = ? AND id != ?"), keyID, id).Scan(&other); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, false, err
	default:
		return nil, false, fmt.Errorf("%w: key %s belongs to device %s; one key identifies one device", ErrKeyInUse, keyID, other)
	}
	now := d.Now().UTC()
	_, err = tx.ExecContext(ctx, d.q(`INSERT INTO devices (id, key_id, public_key, added_at, identity) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key,
		added_at = excluded.added_at, last_seen = NULL, manifest = NULL, identity = excluded.identity`),
		id, keyID, string(pubPEM), now.UnixNano(), identity)
	if keyConflict(err) {
		return nil, false, fmt.Errorf("%w: key %s was just registered for another device; one key identifies one device", ErrKeyInUse, keyID)
	}
	if err != nil {
		return nil, false, fmt.Errorf("register device %s: %w", id, err)
	}
	// Registering a removed device again puts it back into service.
	if _, err := tx.ExecContext(ctx, d.q("DELETE FROM removed WHERE id = ?"), id); err != nil {
		return nil, false, fmt.Errorf("register device %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, false, fmt.Errorf("register device %s: %w", id, err)
	}
	return &Device{ID: id, KeyID: keyID, PublicKeyPEM: string(pubPEM), AddedAt: now, Identity: identity}, true, nil
}

// Device returns the registered device id, or an error wrapping
// ErrDeviceRemoved (it was removed) or ErrUnknownDevice (never registered).
func (d *DB) Device(ctx context.Context, id string) (*Device, error) {
	row := d.rd.QueryRowContext(ctx, d.q("SELECT "+deviceCols+" FROM devices WHERE id = ?"), id)
	dev, err := scanDevice(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, d.notRegistered(ctx, d.db, id)
	}
	if err != nil {
		return nil, err
	}
	if dev.Tags, err = d.Tags(ctx, id); err != nil {
		return nil, err
	}
	return dev, nil
}

// deviceCols are the columns scanDevice reads.
const deviceCols = "id, key_id, public_key, added_at, last_seen, manifest, identity"

// notRegistered explains why id is not a registered device: removed (and
// when), or never registered.
func (d *DB) notRegistered(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) error {
	var at int64
	switch err := q.QueryRowContext(ctx, d.q("SELECT removed_at FROM removed WHERE id = ?"), id).Scan(&at); {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %q (register it with 'fwrepo devices add %s --pubkey FILE')", ErrUnknownDevice, id, id)
	case err != nil:
		return fmt.Errorf("look up device %s: %w", id, err)
	}
	return fmt.Errorf("%w: %q was removed at %s; its reports are refused (register it again with 'fwrepo devices add %s --pubkey FILE' if it returns to service)",
		ErrDeviceRemoved, id, time.Unix(0, at).UTC().Format(time.RFC3339), id)
}

// RemoveDevice removes (decommissions) the registered device id: its key
// and latest report are deleted and from then on its reports are refused
// with ErrDeviceRemoved. It returns the device as it was. An id that is not
// registered gives an error wrapping ErrUnknownDevice (also when it was
// already removed).
func (d *DB) RemoveDevice(ctx context.Context, id string) (*Device, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	row := tx.QueryRowContext(ctx, d.q("SELECT "+deviceCols+" FROM devices WHERE id = ?"), id)
	dev, err := scanDevice(row)
	if errors.Is(err, sql.ErrNoRows) {
		err := d.notRegistered(ctx, tx, id)
		if errors.Is(err, ErrDeviceRemoved) {
			return nil, fmt.Errorf("%w: %w", ErrUnknownDevice, err)
		}
		return nil, fmt.Errorf("%w; 'fwrepo devices list' shows the registered IDs", err)
	}
	if err != nil {
		return nil, fmt.Errorf("remove device %s: %w", id, err)
	}
	for _, stmt := range []string{"DELETE FROM devices WHERE id = ?", "DELETE FROM tags WHERE device_id = ?"} {
		if _, err := tx.ExecContext(ctx, d.q(stmt), id); err != nil {
			return nil, fmt.Errorf("remove device %s: %w", id, err)
		}
	}
	_, err = tx.ExecContext(ctx, d.q(`INSERT INTO removed (id, key_id, removed_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, removed_at = excluded.removed_at`),
		id, dev.KeyID, d.Now().UTC().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("remove device %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("remove device %s: %w", id, err)
	}
	return dev, nil
}

// List returns every registered device with its tags, ordered by ID.
func (d *DB) List(ctx context.Context) ([]*Device, error) {
	tags, err := d.allTags(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, d.q("SELECT "+deviceCols+" FROM devices ORDER BY id"))
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []*Device
	for rows.Next() {
		dev, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		dev.Tags = tags[dev.ID]
		out = append(out, dev)
	}
	return out, rows.Err()
}

// RemovedDevice is a device taken out of service ('fwrepo devices
// remove'): only its ID, the key it had and when it was removed are kept.
type RemovedDevice struct {
	ID        string    `json:"device_id"`
	KeyID     string    `json:"key_id"`
	RemovedAt time.Time `json:"removed_at"`
}

// ListRemoved returns every removed device that was not registered again,
// ordered by ID.
func (d *DB) ListRemoved(ctx context.Context) ([]*RemovedDevice, error) {
	rows, err := d.db.QueryContext(ctx, d.q("SELECT id, key_id, removed_at FROM removed ORDER BY id"))
	if err != nil {
		return nil, fmt.Errorf("list removed devices: %w", err)
	}
	defer rows.Close()
	var out []*RemovedDevice
	for rows.Next() {
		var (
			r  RemovedDevice
			at int64
		)
		if err := rows.Scan(&r.ID, &r.KeyID, &at); err != nil {
			return nil, fmt.Errorf("list removed devices: %w", err)
		}
		r.RemovedAt = time.Unix(0, at).UTC()
		out = append(out, &r)
	}
	return out, rows.Err()
}

func scanDevice(row interface{ Scan(...any) error }) (*Device, error) {
	var (
		dev      Device
		added    int64
		seen     sql.NullInt64
		envelope []byte
	)
	if err := row.Scan(&dev.ID, &dev.KeyID, &dev.PublicKeyPEM, &added, &seen, &envelope, &dev.Identity); err != nil {
		return nil, err
	}
	if dev.Identity == "" {
		dev.Identity = IdentityUnknown
	}
	dev.AddedAt = time.Unix(0, added).UTC()
	if seen.Valid {
		t := time.Unix(0, seen.Int64).UTC()
		dev.LastSeen = &t
	}
	if len(envelope) > 0 {
		s, err := manifests.ParseDeviceManifest(envelope)
		if err != nil {
			return nil, fmt.Errorf("stored manifest of %s: %w", dev.ID, err)
		}
		dev.Manifest, dev.Envelope = s.Manifest, envelope
	}
	return &dev, nil
}

// Nonce issues a fresh nonce (32 random bytes, hex) valid for NonceTTL.
func (d *DB) Nonce(ctx context.Context) (string, time.Time, error) {
	now := d.Now()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	nonce, exp := hex.EncodeToString(b[:]), now.Add(d.NonceTTL).UTC()
	err := d.writeTx(ctx, false, func(tx *sql.Tx) (bool, error) {
		// The count below must see every nonce issued before this one.
		// SQLite gives that already: the DELETE takes the database's
		// single write lock (and a group commit runs its transactions one
		// after the other in one). PostgreSQL's READ COMMITTED lets
		// concurrent transactions each count without the others' inserts,
		// overshooting the cap by the requests in flight, so there issuers
		// queue on an advisory lock held to commit; each statement after
		// it then sees all earlier commits.
		if d.pg {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(nonceLock)); err != nil {
				return false, fmt.Errorf("lock nonces: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, d.q("DELETE FROM nonces WHERE expires <= ?"), now.UnixNano()); err != nil {
			return false, fmt.Errorf("expire nonces: %w", err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, d.q("SELECT count(*) FROM nonces")).Scan(&n); err != nil {
			return false, err
		}
		if n >= d.MaxOutstanding {
			return false, fmt.Errorf("%w (%d); retry in %s", ErrBusy, n, d.NonceTTL)
		}
		if _, err := tx.ExecContext(ctx, d.q("INSERT INTO nonces (nonce, expires) VALUES (?, ?)"), nonce, exp.UnixNano()); err != nil {
			return false, fmt.Errorf("store nonce: %w", err)
		}
		return false, nil
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return nonce, exp, nil
}

// Accept verifies a signed device manifest and stores it as the device's
// latest. It refuses, in this order: a malformed manifest
// (manifests.ErrInvalidDeviceManifest), an unregistered device
// (ErrUnknownDevice) or a removed one (ErrDeviceRemoved), a signature that
// does not verify under the registered key (manifests.ErrBadSignature), and
// a nonce that was not issued, has expired or was used (ErrNonce). The nonce is consumed only
// by a correctly signed manifest, so forgeries cannot burn a device's nonce.
func (d *DB) Accept(ctx context.Context, envelope []byte) (*manifests.DeviceManifest, error) {
	m, err := d.verified(ctx, envelope)
	if err != nil {
		return nil, err
	}
	now := d.Now()
	err = d.writeTx(ctx, true, func(tx *sql.Tx) (bool, error) {
		var exp int64
		switch err := tx.QueryRowContext(ctx, d.q("DELETE FROM nonces WHERE nonce = ? RETURNING expires"), m.Nonce).Scan(&exp); {
		case errors.Is(err, sql.ErrNoRows):
			return false, fmt.Errorf("%w: device %s: nonce %.16s… was not issued by this server or was already used; fetch a fresh one", ErrNonce, m.DeviceID, m.Nonce)
		case err != nil:
			return false, fmt.Errorf("consume nonce: %w", err)
		case exp <= now.UnixNano():
			// Commit the deletion (keep): an expired nonce is dead either way.
			return true, fmt.Errorf("%w: device %s: nonce expired at %s; fetch a fresh one and report within %s", ErrNonce, m.DeviceID, time.Unix(0, exp).UTC().Format(time.RFC3339), d.NonceTTL)
		}
		res, err := tx.ExecContext(ctx, d.q("UPDATE devices SET last_seen = ?, manifest = ?, hardware = ? WHERE id = ?"), now.UnixNano(), envelope, m.Hardware, m.DeviceID)
		if err != nil {
			return false, fmt.Errorf("store manifest of %s: %w", m.DeviceID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			// Removed while its report was being checked: refuse it, and
			// keep the nonce (the rollback), as for any refusal before this
			// point.
			return false, errors.Join(d.notRegistered(ctx, tx, m.DeviceID), err)
		}
		if err := d.recordEvents(ctx, tx, m, now); err != nil {
			return false, fmt.Errorf("store the attempts of %s: %w", m.DeviceID, err)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// verified parses a signed device manifest and verifies it under the key
// registered for its device: a malformed manifest, an unregistered or
// removed device, or a bad signature is refused.
func (d *DB) verified(ctx context.Context, envelope []byte) (*manifests.DeviceManifest, error) {
	// A member named twice can be read two ways: refused before anything
	// else reads it.
	if err := manifests.RejectDuplicateKeys(envelope); err != nil {
		return nil, fmt.Errorf("%w: %w", manifests.ErrInvalidDeviceManifest, err)
	}
	s, err := manifests.ParseDeviceManifest(envelope)
	if err != nil {
		return nil, err
	}
	dev, err := d.Device(ctx, s.Manifest.DeviceID)
	if err != nil {
		return nil, err
	}
	pub, err := manifests.ParsePublicKeyPEM([]byte(dev.PublicKeyPEM))
	if err != nil {
		return nil, fmt.Errorf("registered key of %s: %w", dev.ID, err)
	}
	if err := s.Verify(pub); err != nil {
		return nil, err
	}
	return s.Manifest, nil
}
