package inventory

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// The device reports' writes (a nonce issued, a report accepted) are small
// transactions that each end in a commit, and on SQLite each commit is an
// fsync of the write-ahead log. With one writer, reports then queue behind
// each other's fsyncs: on a busy disk a report waited for the fsyncs of
// every report before it. So on SQLite they are committed in groups: one
// goroutine runs the transactions waiting when it is free in one database
// transaction, each in its own savepoint (a refused one is rolled back to
// it, alone), and commits them with one fsync. Every caller returns only
// after that commit: an accepted report is as durable as before
// (synchronous=FULL), it only shares its fsync.
//
// A nonce need not survive a power cut (a device whose nonce was lost
// fetches another; consuming one is what must last, and that is in the
// report's transaction): a group of nonces alone commits without the fsync
// (synchronous=NORMAL for that transaction; the write-ahead log keeps it
// atomic, and the next durable commit syncs it too).
//
// PostgreSQL runs each in its own transaction (its pool has several
// connections, and the server groups concurrent commits itself).

// maxGroup bounds the transactions of one group commit.
const maxGroup = 128

// txFunc is one write transaction's work. keep: commit its changes even
// though it returns an error (an expired nonce is consumed and refused).
type txFunc func(tx *sql.Tx) (keep bool, err error)

type groupReq struct {
	ctx     context.Context
	fn      txFunc
	durable bool
	done    chan error
}

// writeTx runs fn in a transaction and commits it (unless fn fails
// without keep), alone or, on SQLite, with the others waiting. durable:
// the commit must survive a power cut when writeTx returns (on SQLite a
// group is durable if any of its transactions asks for it).
func (d *DB) writeTx(ctx context.Context, durable bool, fn txFunc) error {
	if d.group == nil {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		keep, err := fn(tx)
		if err != nil && !keep {
			return err
		}
		if cerr := tx.Commit(); cerr != nil {
			return cerr
		}
		return err
	}
	r := &groupReq{ctx: ctx, fn: fn, durable: durable, done: make(chan error, 1)}
	select {
	case d.group <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-d.closed:
		return errClosed
	}
	// Once queued, it runs (or fails on its own context): wait for the
	// commit, so that an accepted report is durable when it returns.
	return <-r.done
}

var errClosed = errors.New("inventory database closed")

// groupCommit runs queued transactions in groups until d.closed.
func (d *DB) groupCommit() {
	defer close(d.groupDone)
	var batch []*groupReq
	for {
		select {
		case r := <-d.group:
			batch = append(batch[:0], r)
		case <-d.closed:
			return
		}
	more:
		for len(batch) < maxGroup {
			select {
			case r := <-d.group:
				batch = append(batch, r)
			default:
				break more
			}
		}
		d.runGroup(batch)
	}
}

// runGroup runs batch in one transaction, each in a savepoint, and
// commits once. A commit that fails fails them all.
func (d *DB) runGroup(batch []*groupReq) {
	errs := make([]error, len(batch))
	durable := false
	for _, r := range batch {
		durable = durable || r.durable
	}
	err := func() error {
		// Not a caller's context: one caller's cancellation must not roll
		// back the others' work.
		ctx := context.Background()
		conn, err := d.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if !durable {
			if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
				return err
			}
			defer func() {
				// The connection goes back to the pool durable, or not at
				// all: a connection left at NORMAL would commit reports
				// without their fsync.
				if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
					_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				}
			}()
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for i, r := range batch {
			if err := r.ctx.Err(); err != nil {
				errs[i] = err
				continue
			}
			if _, err := tx.Exec("SAVEPOINT g"); err != nil {
				return err
			}
			keep, err := r.fn(tx)
			errs[i] = err
			if err != nil && !keep {
				if _, rerr := tx.Exec("ROLLBACK TO g"); rerr != nil {
					return fmt.Errorf("roll back a refused transaction: %w", rerr)
				}
			}
			if _, err := tx.Exec("RELEASE g"); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	for i, r := range batch {
		if err != nil {
			errs[i] = err
		}
		r.done <- errs[i]
	}
}
