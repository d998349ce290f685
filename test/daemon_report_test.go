package test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/manifests"
)

// TestDaemonReports runs 'fwagent daemon' with reports against fwrepo's
// device API (manifests signed in swtpm): while the API is down the daemon
// keeps running and backs off; once it is up the device's report arrives;
// an install and then a confirmation made by another fwagent process are
// each reported soon after, and reports repeat every interval.
func TestDaemonReports(t *testing.T) {
	rp := newReporting(t)
	d := rp.d
	d.cfg.PollInterval = agent.Duration(100 * time.Millisecond)

	var mu sync.Mutex
	down := true
	var nonces []time.Time // nonce requests: one per report attempt
	serve := rp.r.wrap
	rp.r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if req.URL.Path == manifests.NoncePath {
			mu.Lock()
			nonces = append(nonces, time.Now())
			isDown := down
			mu.Unlock()
			if isDown {
				http.Error(w, `{"error":"maintenance"}`, http.StatusServiceUnavailable)
				return
			}
		}
		serve(w, req, next)
	}
	attempts := func() int { mu.Lock(); defer mu.Unlock(); return len(nonces) }
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
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if dev, err := rp.db.Device(context.Background(), rp.key.KeyID()); err == nil && dev.Manifest != nil && ok(dev.Manifest) {
				return
			}
		}
		t.Fatalf("fwrepo never received a report of %s", what)
	}

	// A 30 s interval: everything reported below within the test's
	// deadlines was reported because it changed, not because it was time.
	stop := daemon(30 * time.Second)
	time.Sleep(600 * time.Millisecond)
	// Backoff 40, 80, 160, 320 ms: about 5 tries in 600 ms, not one per
	// 20 ms state check.
	if n := attempts(); n < 2 || n > 8 {
		t.Fatalf("%d report attempts in 600 ms while fwrepo was down, want 2 to 8 (a doubling backoff from 40 ms)", n)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	stored("the running release", func(m *manifests.DeviceManifest) bool {
		return m.RunningSlot == "B" && m.Running().Version == "1.0.0" && m.LastResult != nil && m.LastResult.Outcome == manifests.OutcomeConfirmed
	})

	// A new release: the daemon installs it and reports the install.
	v2 := rp.r.add("2.0.0", 2, 20_000)
	rp.r.publish()
	stored("the install", func(m *manifests.DeviceManifest) bool {
		return m.NextBoot == "A" && m.LastResult != nil && m.LastResult.Outcome == "installed" && m.LastResult.Version == "2.0.0"
	})
	stop()

	// Reboot into it; the new daemon reports at start, then the
	// confirmation another process makes.
	d.boot()
	stop = daemon(30 * time.Second)
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

	// Nothing changes from here: a report at start, then one per interval.
	n := attempts()
	stop = daemon(time.Second)
	defer stop()
	time.Sleep(2500 * time.Millisecond)
	if got := attempts() - n; got < 2 || got > 4 {
		t.Fatalf("%d reports in 2.5 s with a 1 s interval and nothing new, want 2 to 4", got)
	}
}
