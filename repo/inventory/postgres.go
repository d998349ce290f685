package inventory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

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
	if err := migratePostgres(ctx, db); err != nil {
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

// keyConflict reports whether err is PostgreSQL refusing a second device
// with the same key (devices.key_id is UNIQUE): two registrations raced.
func keyConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && strings.Contains(pe.ConstraintName, "key_id")
}
