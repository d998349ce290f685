package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// DaemonOptions control Daemon.
type DaemonOptions struct {
	// Once polls (and reports, if due) once, then returns.
	Once bool
	// Reporter, when set, sends signed device manifests.
	Reporter *Reporter
	// Reboot, when set, runs after an install (once it is reported).
	Reboot func(ctx context.Context) error
}

// Daemon polls the repository every poll_interval ± poll_jitter and
// installs updates until ctx ends. A failed poll or report is logged and
// tried again later; only ctx ending or Reboot returns.
//
// With Once it returns the update's error, so a timer sees the failure.
func (a *Agent) Daemon(ctx context.Context, opt DaemonOptions) error {
	rep := opt.Reporter
	a.logStart(opt)
	next := a.Now()
	for {
		if !a.Now().Before(next) {
			res, err := a.Update(ctx, UpdateOptions{})
			switch {
			case errors.Is(err, ErrFailedBefore):
				a.log.Warn("not installing a release that failed here before", "err", err)
			case err != nil:
				a.log.Error("update failed", "err", err)
			case res.Installed:
				a.log.Info("update installed; reboot needed", "version", res.Available.Version, "slot", res.Slot)
			case res.RebootPending:
				a.log.Info("update installed earlier; waiting for a reboot", "version", res.Available.Version, "slot", res.Slot)
			default:
				a.log.Info("no update", "message", res.Message)
			}
			wait := time.Duration(a.cfg.PollInterval)
			if j := int64(a.cfg.PollJitter); j > 0 {
				wait += time.Duration(rand.Int64N(2*j) - j)
			}
			next = a.Now().Add(wait)
			// With maintenance windows a reboot may wait for a later poll
			// (window.go): an install pending its reboot is rebooted then.
			reboot := err == nil && opt.Reboot != nil && (res.Installed || res.RebootPending && a.cfg.Maintenance != nil)
			if reboot {
				if ok, why := a.MayReboot(ctx); !ok {
					a.log.Info("reboot deferred", "reason", why)
					reboot = false
				}
			}
			if reboot {
				if rep != nil {
					_ = rep.Tick(ctx) // report the install before the reboot
				}
				return opt.Reboot(ctx)
			}
			if opt.Once {
				if rep != nil {
					_ = rep.Tick(ctx)
				}
				return err
			}
			a.log.Info("next poll", "at", next.UTC().Format(time.RFC3339), "in", wait.Round(time.Second))
		}
		if rep != nil {
			_ = rep.Tick(ctx)
		}
		wake := next
		if rep != nil && rep.wake(a.Now()).Before(wake) {
			wake = rep.wake(a.Now())
		}
		a.log.Debug("sleeping", "until", wake)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wake.Sub(a.Now())):
		}
	}
}

// logStart logs what the daemon will do, so an operator reading the
// journal sees the configuration it runs with.
func (a *Agent) logStart(opt DaemonOptions) {
	c := a.cfg
	args := []any{"repository", c.Repository, "hardware", c.Hardware, "state_dir", c.StateDir,
		"poll_interval", time.Duration(c.PollInterval), "poll_jitter", time.Duration(c.PollJitter),
		"bootloader", c.Bootloader.Type, "trust", c.Trust.Type, "once", opt.Once,
		"reports", opt.Reporter != nil, "reboot_command", strings.Join(c.RebootCommand, " ")}
	if opt.Reporter != nil {
		args = append(args, "report_interval", orDefault(opt.Reporter.Interval, 6*time.Hour))
	}
	a.log.Info("fwagent daemon starting", args...)
}

// Reporter sends signed device manifests for the daemon: at start, soon
// after the last install result changes (an install, a confirmation or a
// fallback, by whichever fwagent process), and every Interval. A failed
// report is retried after MinBackoff, doubling up to Interval.
type Reporter struct {
	Agent   *Agent
	Key     DeviceSigner
	Options ReportOptions
	// Interval between reports (default 6h).
	Interval time.Duration
	// MinBackoff is the first wait after a failure (default 30s).
	MinBackoff time.Duration
	// Watch is how often the state is checked for a new result (default 1m).
	Watch time.Duration

	next  time.Time
	fails int
	sent  *manifests.InstallResult // last result in the last accepted report
	done  bool                     // a report was accepted
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Tick sends a report if one is due, and returns its error.
func (r *Reporter) Tick(ctx context.Context) error {
	a := r.Agent
	now := a.Now()
	changed := !r.done
	if st, err := a.loadState(); err == nil && r.done {
		changed = !sameResult(st.Last, r.sent)
	}
	if now.Before(r.next) && (!changed || r.fails > 0) {
		return nil
	}
	interval := orDefault(r.Interval, 6*time.Hour)
	res, err := a.Report(ctx, r.Key, r.Options)
	if err != nil {
		r.fails++
		b := orDefault(r.MinBackoff, 30*time.Second) << min(r.fails-1, 30)
		if b <= 0 || b > interval {
			b = interval
		}
		r.next = now.Add(b)
		a.log.Warn("device report failed; trying again later", "in", b, "failures", r.fails, "err", err)
		return err
	}
	r.fails, r.done, r.sent, r.next = 0, true, res.Manifest.LastResult, now.Add(interval)
	return nil
}

// wake returns when Tick next has work: the next report, or, while reports
// succeed, the next look at the state for a new result.
func (r *Reporter) wake(now time.Time) time.Time {
	if w := now.Add(orDefault(r.Watch, time.Minute)); r.fails == 0 && w.Before(r.next) {
		return w
	}
	return r.next
}

func sameResult(x *Result, y *manifests.InstallResult) bool {
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	return x.At.Equal(y.At) && x.Outcome == y.Outcome && x.Target == y.Target
}
