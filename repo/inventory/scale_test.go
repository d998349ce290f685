package inventory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

// TestReportsDuringReconcile reports the latency of signed reports (nonce,
// then the manifest) while a rollout of every device is reconciled the way
// fwrepo serve does it (RolloutDevices, then a pause of 20 times its time,
// at least a second), on each backend. It asserts nothing about time (make
// bench-fleet has the goals); FWCTL_INVENTORY_REPORTS=10000 runs it at
// fleet scale (default 200 devices for 2 s), FWCTL_INVENTORY_REPORTS_FOR
// sets how long.
func TestReportsDuringReconcile(t *testing.T) {
	n, dur := 200, 2*time.Second
	if v := os.Getenv("FWCTL_INVENTORY_REPORTS"); v != "" {
		fmt.Sscan(v, &n)
		dur = 30 * time.Second
	}
	if v := os.Getenv("FWCTL_INVENTORY_REPORTS_FOR"); v != "" {
		dur, _ = time.ParseDuration(v)
	}
	forEachBackend(t, func(t *testing.T, b backend, open func() *DB) {
		db := open()
		ctx := context.Background()
		devs := make([]*testDevice, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		start := time.Now()
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					devs[i] = newTestDevice(t, fmt.Sprintf("sim-%05d", i))
					if _, _, err := db.AddDevice(ctx, devs[i].id, devs[i].pem, AddOptions{}); err != nil {
						errs <- err
						return
					}
					if err := report(t, db, devs[i]); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		t.Logf("%s: %d devices registered and reported once in %s", b.name, n, time.Since(start).Round(time.Millisecond))
		r, err := db.CreateRollout(ctx, "r1", rollout.Spec{Target: "acme-gw-v2/2.0.0/firmware.img"}, "cli")
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = devs[i].id
		}
		if err := db.SetDeviceStates(ctx, r, ids, "assigned", time.Now()); err != nil {
			t.Fatal(err)
		}

		ctx, cancel := context.WithTimeout(ctx, dur)
		defer cancel()
		var (
			mu         sync.Mutex
			lat, recon []time.Duration
		)
		var bg sync.WaitGroup
		bg.Go(func() { // the reconcile loop of operator.Service.Run
			for ctx.Err() == nil {
				t0 := time.Now()
				if _, err := db.RolloutDevices(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
				el := time.Since(t0)
				mu.Lock()
				recon = append(recon, el)
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(max(time.Second, 20*el)):
				}
			}
		})
		// Reports at bench-fleet's rate: 10,000 devices every 10 minutes.
		tick := time.NewTicker(10 * time.Minute / 10000)
		defer tick.Stop()
	loop:
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				break loop
			case <-tick.C:
			}
			d := devs[(k*7919)%n]
			bg.Go(func() {
				t0 := time.Now()
				if err := report(t, db, d); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			})
		}
		bg.Wait()
		slices.Sort(lat)
		slices.Sort(recon)
		pct := func(s []time.Duration, p float64) time.Duration {
			if len(s) == 0 {
				return 0
			}
			return s[min(len(s)-1, int(p*float64(len(s))))].Round(10 * time.Microsecond)
		}
		t.Logf("%s: %d reports in %s: p50 %s, p99 %s, max %s; %d reconciles of %d devices: p50 %s, max %s", b.name, len(lat), dur,
			pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1), len(recon), n, pct(recon, 0.5), pct(recon, 1))
	})
}

// report sends one signed report of d with an attempt, as an agent does.
func report(t *testing.T, db *DB, d *testDevice) error {
	n, _, err := db.Nonce(context.Background())
	if err != nil {
		return err
	}
	m := d.manifest(n, "1.0.0")
	m.Attempts = []manifests.InstallResult{{At: time.Now().UTC().Truncate(time.Second).Add(-time.Hour), Target: "acme-gw-v2/1.0.0/firmware.img",
		Version: "1.0.0", Outcome: manifests.OutcomeConfirmed}}
	_, err = db.Accept(context.Background(), d.sign(t, m))
	return err
}

// TestGroupCommitIsolates: reports committed together (SQLite's group
// commit; one transaction each on PostgreSQL) succeed or fail each on its
// own. Accepted ones are committed when Accept returns (another handle
// sees them), a replayed one stores nothing, an expired nonce is consumed
// though its report is refused, and a forged report keeps its nonce.
func TestGroupCommitIsolates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, _ func() *DB) {
		ctx := context.Background()
		dsn := b.dsn(t)
		db, err := Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		const n = 40
		devs := make([]*testDevice, n)
		for i := range devs {
			devs[i] = newTestDevice(t, fmt.Sprintf("gw-%02d", i))
			if _, _, err := db.AddDevice(ctx, devs[i].id, devs[i].pem, AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		envs := make([][]byte, n)
		want := make([]error, n)
		nonces := make([]string, n)
		for i := range envs {
			nonces[i] = nonce(t, db)
			switch i % 4 {
			case 1: // a replay of device i-1's nonce: one of the two is refused
				nonces[i] = nonces[i-1]
			case 2: // forged: signed by another device's key
				m := devs[i].manifest(nonces[i], "2.0.0")
				envs[i] = devs[(i+1)%n].sign(t, m)
				want[i] = manifests.ErrBadSignature
				continue
			}
			envs[i] = devs[i].sign(t, devs[i].manifest(nonces[i], "2.0.0"))
		}
		// Device 3's nonce expires before it reports.
		expired := 3
		db.Now = func() time.Time { return now }
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				if i == expired {
					return
				}
				_, errs[i] = db.Accept(ctx, envs[i])
			})
		}
		close(start)
		wg.Wait()
		db.Now = func() time.Time { return now.Add(2 * db.NonceTTL) }
		if _, err := db.Accept(ctx, envs[expired]); !errors.Is(err, ErrNonce) {
			t.Fatalf("expired nonce: %v, want ErrNonce", err)
		}
		db.Now = time.Now
		other, err := Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		for i := range n {
			if i == expired {
				continue
			}
			dev, err := other.Device(ctx, devs[i].id)
			if err != nil {
				t.Fatal(err)
			}
			stored := dev.Manifest != nil && dev.Manifest.Nonce == nonces[i]
			switch {
			case i%4 == 1 || i%4 == 0 && i+1 < n:
				// The replayed pair: exactly one accepted, and only its
				// report stored.
				if i%4 == 1 {
					a, b := errs[i-1] == nil, errs[i] == nil
					if a == b {
						t.Errorf("devices %d and %d shared a nonce: accepted %v and %v, want exactly one", i-1, i, a, b)
					}
				}
				if stored != (errs[i] == nil) {
					t.Errorf("device %d: accepted %v (%v) but its report stored %v", i, errs[i] == nil, errs[i], stored)
				}
			case want[i] != nil:
				if !errors.Is(errs[i], want[i]) || stored {
					t.Errorf("device %d: %v, stored %v; want %v and nothing stored", i, errs[i], stored, want[i])
				}
			default:
				if errs[i] != nil || !stored {
					t.Errorf("device %d: %v, stored %v; want accepted and stored", i, errs[i], stored)
				}
			}
		}
		// The forged reports kept their nonces: the devices can still use
		// them. The expired one was consumed.
		for i := 2; i < n; i += 4 {
			db.Now = func() time.Time { return now }
			if _, err := db.Accept(ctx, devs[i].sign(t, devs[i].manifest(nonces[i], "2.0.1"))); err != nil {
				t.Errorf("device %d's nonce after a forgery: %v", i, err)
			}
		}
		if _, err := db.Accept(ctx, envs[expired]); !errors.Is(err, ErrNonce) {
			t.Errorf("an expired nonce was used again: %v", err)
		}
	})
}

// TestNonceLeavesWriterDurable: on SQLite nonces commit without an fsync
// (synchronous=NORMAL for their group), and the writer connection is back
// at synchronous=FULL afterwards, so that the next report is durable.
func TestNonceLeavesWriterDurable(t *testing.T) {
	db, err := Open(backends[0].dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 3 {
		nonce(t, db)
		var v int
		if err := db.db.QueryRow("PRAGMA synchronous").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != 2 {
			t.Fatalf("writer at synchronous=%d after a nonce, want 2 (FULL)", v)
		}
	}
}
