package inventory

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// schemaVersion is the version of the tables this package creates and reads.
// Version 1: devices, nonces, removed. Version 2 (issue 15): devices'
// identity kind, tags, the event history, rollouts and their devices,
// operator tokens.
const schemaVersion = 2

// migrations[i] brings a database from version i to i+1. Statements are
// written for SQLite; pgStmt adapts the types. Each version's statements
// run in one transaction, under a lock, so that fwrepo processes opening
// an older database at once migrate it once.
var migrations = [][]string{
	{ // 0 → 1
		`CREATE TABLE IF NOT EXISTS devices (
			id         TEXT PRIMARY KEY,
			key_id     TEXT NOT NULL UNIQUE,
			public_key TEXT NOT NULL,
			added_at   INT64 NOT NULL,
			last_seen  INT64,
			manifest   BLOB
		)`,
		`CREATE TABLE IF NOT EXISTS nonces (
			nonce   TEXT PRIMARY KEY,
			expires INT64 NOT NULL
		)`,
		// Removed (decommissioned) devices, kept so that a report from one
		// is refused as such.
		`CREATE TABLE IF NOT EXISTS removed (
			id         TEXT PRIMARY KEY,
			key_id     TEXT NOT NULL,
			removed_at INT64 NOT NULL
		)`,
	},
	{ // 1 → 2
		// identity: "tpm", "file" or "" (the key's PEM did not say).
		`ALTER TABLE devices ADD COLUMN identity TEXT NOT NULL DEFAULT ''`,
		// hardware: of the latest accepted report ('' before the first),
		// so that assigning a wave need not parse every stored report.
		`ALTER TABLE devices ADD COLUMN hardware TEXT NOT NULL DEFAULT ''`,
		`CREATE TABLE IF NOT EXISTS tags (
			device_id TEXT NOT NULL,
			key       TEXT NOT NULL,
			value     TEXT NOT NULL,
			PRIMARY KEY (device_id, key)
		)`,
		// Every install attempt a device reported, once (a report repeats
		// its recent attempts); received is when the server first saw it.
		`CREATE TABLE IF NOT EXISTS events (
			device_id TEXT NOT NULL,
			at        INT64 NOT NULL,
			target    TEXT NOT NULL,
			version   TEXT NOT NULL,
			outcome   TEXT NOT NULL,
			error     TEXT NOT NULL,
			received  INT64 NOT NULL,
			PRIMARY KEY (device_id, at, target, outcome)
		)`,
		`CREATE TABLE IF NOT EXISTS rollouts (
			id          TEXT PRIMARY KEY,
			spec        TEXT NOT NULL,
			status      TEXT NOT NULL,
			wave        INT64 NOT NULL,
			waves       INT64 NOT NULL,
			sizes       TEXT NOT NULL,
			reason      TEXT NOT NULL,
			rev         INT64 NOT NULL,
			created_at  INT64 NOT NULL,
			updated_at  INT64 NOT NULL,
			created_by  TEXT NOT NULL,
			approved_by TEXT NOT NULL
		)`,
		// state: pending (its wave has not started, or the rollout is
		// paused), assigned (the director names the release since
		// assigned_at), withdrawn (the rollout stopped first).
		`CREATE TABLE IF NOT EXISTS rollout_devices (
			rollout_id  TEXT NOT NULL,
			device_id   TEXT NOT NULL,
			wave        INT64 NOT NULL,
			state       TEXT NOT NULL,
			assigned_at INT64 NOT NULL,
			PRIMARY KEY (rollout_id, device_id)
		)`,
		`CREATE INDEX IF NOT EXISTS rollout_devices_device ON rollout_devices (device_id)`,
		// Operator tokens: only their SHA-256 is kept.
		`CREATE TABLE IF NOT EXISTS tokens (
			name       TEXT PRIMARY KEY,
			role       TEXT NOT NULL,
			hash       TEXT NOT NULL UNIQUE,
			created_at INT64 NOT NULL,
			last_used  INT64
		)`,
	},
}

// pgStmt adapts a migration statement to PostgreSQL.
func pgStmt(s string) string {
	s = strings.ReplaceAll(s, "INT64", "BIGINT")
	s = strings.ReplaceAll(s, "BLOB", "BYTEA")
	return strings.Replace(s, "ADD COLUMN", "ADD COLUMN IF NOT EXISTS", 1)
}

func sqliteStmt(s string) string { return strings.ReplaceAll(s, "INT64", "INTEGER") }

// migrateSQLite brings an SQLite database to schemaVersion. BEGIN
// IMMEDIATE takes the write lock before the version is read, so that a
// second process waits and then finds the database migrated.
func migrateSQLite(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("schema version %d, this fwrepo knows %d: upgrade fwrepo", v, schemaVersion)
	}
	if v == 0 {
		// A database of the first fwrepo releases may have the version
		// 1 tables without user_version set.
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'devices'").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			v = 1
		}
	}
	for ; v < schemaVersion; v++ {
		for _, stmt := range migrations[v] {
			if _, err := conn.ExecContext(ctx, sqliteStmt(stmt)); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
		}
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	done = true
	return nil
}

// migratePostgres brings a PostgreSQL database to schemaVersion, under an
// advisory lock held to commit.
func migratePostgres(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS fwrepo_schema (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema (does the user have CREATE on the database's public schema?): %w", err)
	}
	var v sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(version) FROM fwrepo_schema").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v.Int64 > schemaVersion {
		return fmt.Errorf("schema version %d, this fwrepo knows %d: upgrade fwrepo", v.Int64, schemaVersion)
	}
	for i := int(v.Int64); i < schemaVersion; i++ {
		for _, stmt := range migrations[i] {
			if _, err := tx.ExecContext(ctx, pgStmt(stmt)); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", i+1, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM fwrepo_schema"); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO fwrepo_schema (version) VALUES ($1)", schemaVersion); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}
