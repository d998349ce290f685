package test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/manifests"
)

// reportLog counts the device API requests fwrepo sees and lets a test wait
// for a count or a condition without any timing window: every wait is on
// an event, bounded only by the test's own deadline.
type reportLog struct {
	t       *testing.T
	mu      sync.Mutex
	down    bool
	nonces  int           // nonce requests: one per report attempt
	changed chan struct{} // closed and replaced on every request
}

func newReportLog(t *testing.T) *reportLog {
	return &reportLog{t: t, down: true, changed: make(chan struct{})}
}

// wrap installs the log in front of rp's device API.
func (l *reportLog) wrap(rp *reporting) {
	serve := rp.r.wrap
	rp.r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		defer l.notify()
		if req.URL.Path == manifests.NoncePath {
			l.mu.Lock()
			l.nonces++
			isDown := l.down
			l.mu.Unlock()
			if isDown {
				http.Error(w, `{"error":"maintenance"}`, http.StatusServiceUnavailable)
				return
			}
		}
		serve(w, req, next)
	}
}

func (l *reportLog) notify() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *reportLog) setDown(down bool) { l.mu.Lock(); l.down = down; l.mu.Unlock() }

func (l *reportLog) attempts() int { l.mu.Lock(); defer l.mu.Unlock(); return l.nonces }

// until waits for ok to hold, re-checking after every device API request.
func (l *reportLog) until(what string, ok func() bool) {
	l.t.Helper()
	ctx := context.Background()
	if dl, has := l.t.Deadline(); has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
	}
	for {
		l.mu.Lock()
		ch := l.changed
		l.mu.Unlock()
		if ok() {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			l.t.Fatalf("test deadline reached waiting for %s (%d report attempts seen)", what, l.attempts())
		}
	}
}

// fakeClock is the agent's clock in the tests that drive Reporter.Tick
// directly: time moves only when the test says so.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// tickAttempts drives rep with its own clock in steps of step over span,
// calling Tick at every step as the daemon's watch would, and returns the
// offsets at which Tick made a report attempt. Tick is synchronous, so the
// count is exact whatever the machine's load.
func tickAttempts(t *testing.T, l *reportLog, rep *agent.Reporter, clk *fakeClock, step, span time.Duration) []time.Duration {
	t.Helper()
	var at []time.Duration
	start := clk.now
	for off := time.Duration(0); off <= span; off += step {
		clk.now = start.Add(off)
		n := l.attempts()
		_ = rep.Tick(context.Background())
		if got := l.attempts() - n; got > 1 {
			t.Fatalf("one Tick made %d report attempts", got)
		} else if got == 1 {
			at = append(at, off)
		}
	}
	return at
}

// TestDaemonReports runs 'fwagent daemon' with reports against fwrepo's
// device API (manifests signed in swtpm): while the API is down the reporter
// backs off (doubling from MinBackoff) and the daemon keeps running; once it
// is up the device's report arrives; an install and then a confirmation made
// by another fwagent process are each reported; with nothing new, reports
// repeat once per interval, not once per state check. The backoff and the
// interval are checked on the reporter's own clock, by count, so a busy
// machine cannot make them pass or fail.
func TestDaemonReports(t *testing.T) {
	rp := newReporting(t)
	d := rp.d
	d.cfg.PollInterval = agent.Duration(100 * time.Millisecond)
	l := newReportLog(t)
	l.wrap(rp)
	clocked := func() (*agent.Reporter, *fakeClock) {
		t.Helper()
		ag, err := agent.New(d.cfg, d.store, nil)
		if err != nil {
			t.Fatal(err)
		}
		clk := &fakeClock{now: time.Now()}
		ag.Now = clk.Now
		return &agent.Reporter{Agent: ag, Key: rp.key, Interval: 30 * time.Second,
			MinBackoff: 40 * time.Millisecond, Watch: 20 * time.Millisecond}, clk
	}

	// fwrepo is down: attempts at 0, then 40, 80, 160, 320 ms later (a
	// doubling backoff), not one per 20 ms state check.
	rep, clk := clocked()
	got := tickAttempts(t, l, rep, clk, 20*time.Millisecond, 620*time.Millisecond)
	if want := []time.Duration{0, 40 * time.Millisecond, 120 * time.Millisecond, 280 * time.Millisecond, 600 * time.Millisecond}; !slices.Equal(got, want) {
		t.Fatalf("report attempts while fwrepo was down at %v, want %v (a doubling backoff from 40 ms)", got, want)
	}

	daemon := func(interval time.Duration) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		rep := &agent.Reporter{Agent: d.ag, Key: rp.key, Interval: interval,
			MinBackoff: 40 * time.Millisecond, Watch: 20 * time.Millisecond}
		go func() { done <- d.ag.Daemon(ctx, agent.DaemonOptions{Reporter: rep}) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
		}
	}
	// stored waits until fwrepo holds a report that satisfies ok.
	stored := func(what string, ok func(m *manifests.DeviceManifest) bool) {
		t.Helper()
		l.until("a report of "+what, func() bool {
			dev, err := rp.db.Device(context.Background(), rp.key.KeyID())
			return err == nil && dev.Manifest != nil && ok(dev.Manifest)
		})
	}

	// A 30 s interval: everything reported below was reported because it
	// changed, not because it was time. The daemon keeps retrying while
	// fwrepo is down (two failed attempts: the one at start and a retry).
	n := l.attempts()
	stop := daemon(30 * time.Second)
	l.until("two report attempts while fwrepo is down", func() bool { return l.attempts() >= n+2 })
	l.setDown(false)
	stored("the running release", func(m *manifests.DeviceManifest) bool {
		return m.RunningSlot == "B" && m.Running().Version == "1.0.0" && m.LastResult != nil && m.LastResult.Outcome == manifests.OutcomeConfirmed
	})

	// A new release: the daemon installs it and reports the install.
	v2 := rp.r.add("2.0.0", 2, 20_000)
	rp.r.publish()
	stored("the install", func(m *manifests.DeviceManifest) bool {
		return m.NextBoot == "A" && m.LastResult != nil && m.LastResult.Outcome == manifests.OutcomeInstalled && m.LastResult.Version == "2.0.0"
	})
	stop()

	// Reboot into it; the new daemon reports at start, then the
	// confirmation another process makes.
	d.boot()
	n = l.attempts()
	stop = daemon(30 * time.Second)
	l.until("a report at daemon start", func() bool { return l.attempts() > n })
	other, err := agent.New(d.cfg, d.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored("the confirmation", func(m *manifests.DeviceManifest) bool {
		return m.RunningSlot == "A" && m.Counter == 2 && m.LastResult != nil && m.LastResult.Outcome == manifests.OutcomeConfirmed && m.LastResult.Version == "2.0.0"
	})
	d.assertRunning(v2)
	stop()

	// Nothing changes from here: a report at start, then one per 1 s
	// interval, however many 20 ms state checks come in between.
	rep, clk = clocked()
	rep.Interval = time.Second
	got = tickAttempts(t, l, rep, clk, 20*time.Millisecond, 2500*time.Millisecond)
	if want := []time.Duration{0, time.Second, 2 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("reports with a 1 s interval and nothing new at %v, want %v", got, want)
	}
}
