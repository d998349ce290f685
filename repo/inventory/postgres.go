package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgSchema is schema's PostgreSQL form: the same tables and columns, with
// 64-bit integers for the UnixNano times and BYTEA for the envelope. The
// schema version lives in fwrepo_schema (PostgreSQL has no user_version).
var pgSchema = []string{
	`CREATE TABLE IF NOT EXISTS fwrepo_schema (version INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS devices (
		id         TEXT PRIMARY KEY,
		key_id     TEXT NOT NULL UNIQUE,
		public_key TEXT NOT NULL,
		added_at   BIGINT NOT NULL,
		last_seen  BIGINT,
		manifest   BYTEA
	)`,
	`CREATE TABLE IF NOT EXISTS nonces (
		nonce   TEXT PRIMARY KEY,
		expires BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS removed (
		id         TEXT PRIMARY KEY,
		key_id     TEXT NOT NULL,
		removed_at BIGINT NOT NULL
	)`,
}

// schemaLock is the advisory lock key under which fwrepo processes create
// the schema: concurrent CREATE TABLE IF NOT EXISTS can otherwise fail.
const schemaLock = 0x667772_65706f // "fwrepo"

// nonceLock is the advisory lock key under which Nonce counts the
// outstanding nonces and inserts one, so that the cap is exact across
// connections and fwrepo servers.
const nonceLock = 0x667772_6e6f6e // "fwrnon"

const pgURLForm = "postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?sslmode=disable|require|verify-full] or host=HOST port=PORT user=USER dbname=DBNAME"

func openPostgres(ctx context.Context, dsn string) (db *DB, err error) {
	dsn = normalizeDSN(dsn)
	name := RedactDSN(dsn)
	// Errors from the driver may quote the connection string or parts of
	// it: none leaves here with a password in it.
	defer func() { err = redactErr(err, dsn) }()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("inventory database %s is not a valid PostgreSQL URL or connection string (want %s): %w", name, pgURLForm, err)
	}
	return openPgConfig(ctx, cfg, name)
}

func openPgConfig(ctx context.Context, cfg *pgx.ConnConfig, name string) (*DB, error) {
	db := stdlib.OpenDB(*cfg)
	// Enough for fwrepo serve's concurrent reports; PostgreSQL's default
	// max_connections is 100, shared with whatever else uses the server.
	db.SetMaxOpenConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("inventory database %s: %w", name, pgConnectHint(err))
	}
	if err := createPgSchema(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("inventory database %s: %w", name, err)
	}
	return newDB(db, true), nil
}

// pgConnectHint says what to do about a failed connection.
func pgConnectHint(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "3D000":
			return fmt.Errorf("%w; create the database first (createdb, or CREATE DATABASE) and grant the user access", err)
		case pe.Code == "28P01" || pe.Code == "28000":
			return fmt.Errorf("%w; check the user and password in the URL (or use a .pgpass file, $PGPASSWORD)", err)
		}
	}
	return fmt.Errorf("cannot connect to PostgreSQL: %w; check that the server runs and accepts TCP connections at the URL's host and port", err)
}

// createPgSchema creates the tables if missing and records the schema
// version, refusing a database written by a newer fwrepo.
func createPgSchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, pgSchema[0]); err != nil {
		return fmt.Errorf("create schema (does the user have CREATE on the database's public schema?): %w", err)
	}
	var v sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(version) FROM fwrepo_schema").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v.Int64 > schemaVersion {
		return fmt.Errorf("schema version %d, this fwrepo knows %d: upgrade fwrepo", v.Int64, schemaVersion)
	}
	for _, stmt := range pgSchema[1:] {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	if !v.Valid {
		if _, err := tx.ExecContext(ctx, "INSERT INTO fwrepo_schema (version) VALUES ($1)", schemaVersion); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

// keyConflict reports whether err is PostgreSQL refusing a second device
// with the same key (devices.key_id is UNIQUE): two registrations raced.
func keyConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && strings.Contains(pe.ConstraintName, "key_id")
}
