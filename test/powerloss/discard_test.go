package powerloss

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Kill points of the resumed download whose hash fails (TestPowerLossDiscard).
const (
	trigResumeWrite = "resume-write" // the first write into the slot after the checkpoint
	trigDiscard     = "discard"      // the state file records the checkpoint discarded
)

// Phases of the failing run, read back after the kill.
const (
	phaseResume    = "fail:resume"    // resumed bytes being written, checkpoint kept
	phaseHash      = "fail:hash"      // every byte written, checkpoint still kept
	phaseDiscarded = "fail:discarded" // checkpoint discarded, the agent not yet exited
	phaseRefused   = "fail:refused"   // the failing run ended (exit 3) before the kill
)

// TestPowerLossDiscard kills fwagent around the discard of a resume
// checkpoint (issue 13). An install killed after its first durable 16 MiB
// checkpoint (its server stalled after 16.5 MiB) is resumed against a
// server that alters the resumed range, so the image fails its hash and
// the agent discards the checkpoint. Each run
// kills either that failing run (while it writes the resumed bytes, after
// the slot is full, right after the discard) or, once it has ended, the
// next clean attempt from zero (at the kill points of TestPowerLoss). After
// the kill the device boots only complete images, and recovery against the
// fixed server installs the release.
func TestPowerLossDiscard(t *testing.T) {
	runs := 4
	if n := runCount(t); n >= 1000 {
		runs = 40
	} else if *flagRuns > 0 {
		runs = n
	}
	s := seed(t) ^ 0xd15c
	const size, rate = 24 << 20, 16 << 20
	// 8 MiB to go after the checkpoint (500 ms), 1.5 s in all.
	fx := publishFixture(t, rate, false, newImage("factory", factorySize), newImage("3.0.0", size))
	var stall string
	fx.slow, stall = tamperResumes(t, fx.fast, rate)
	base, err := os.MkdirTemp("", "powerloss-discard-")
	if err != nil {
		t.Fatal(err)
	}
	results := make([]*result, runs)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rng := rand.New(rand.NewPCG(s, uint64(i)))
			// The set-up (an update killed at its first checkpoint while
			// the server holds the download) sometimes misses its kill;
			// that run then proves nothing either way and is set up again
			// on a new device. Only the set-up is retried, never a check.
			for attempt := range 3 {
				results[i] = fx.runDiscard(base, stall, i, attempt, rng)
				if !results[i].failed() || !strings.HasPrefix(results[i].problems[0], setupMissed) {
					break
				}
			}
		}()
	}
	wg.Wait()
	failed, unbootable, corrupted := 0, 0, 0
	phases := map[string]int{}
	for _, r := range results {
		phases[r.phase]++
		if r.unbootable {
			unbootable++
		}
		if r.corrupted {
			corrupted++
		}
		if r.failed() {
			failed++
			t.Errorf("discard run %d failed (seed %d): %s\n  kill point: %s\n  device kept in %s\n  reproduce: go test ./test/powerloss/ -run TestPowerLossDiscard -seed %d",
				r.index, s^0xd15c, strings.Join(r.problems, "\n  "), r.describe(), r.dir, s^0xd15c)
		}
	}
	if failed == 0 && !*flagKeep {
		os.RemoveAll(base)
	}
	var parts []string
	for _, p := range append([]string{phaseResume, phaseHash, phaseDiscarded, phaseRefused}, phaseOrder...) {
		if !strings.HasPrefix(p, "fail:") {
			p = "clean:" + p
		}
		parts = append(parts, fmt.Sprintf("%s=%d", p, phases[p]))
		delete(phases, p)
	}
	for p, n := range phases { // only a run that failed before its kill
		parts = append(parts, fmt.Sprintf("%q=%d", p, n))
	}
	t.Logf("%d discard runs, %d unbootable, %d corrupted; kills by phase: %s", runs, unbootable, corrupted, strings.Join(parts, " "))
}

// runDiscard performs one run of TestPowerLossDiscard. Even runs kill the
// failing resumed run, odd runs the clean attempt after it; run 0 is killed
// right after the discard and run 1 at a random time of the clean download,
// so both paths are hit whatever else is drawn.
// setupMissed begins the problem of a run whose set-up kill did not land.
const setupMissed = "the first update was not killed after its checkpoint"

func (fx *fixture) runDiscard(base, stall string, i, attempt int, rng *rand.Rand) *result {
	p := plan{layout: layouts[i%len(layouts)], start: "factory", boots: 1 + rng.IntN(3)}
	r := &result{index: i, plan: p}
	d, err := fx.newDevice(base, fmt.Sprintf("discard-%04d-%d", i, attempt), p.layout)
	if err != nil {
		r.problem("set up device: %v", err)
		return r
	}
	r.dir = d.dir
	defer func() {
		if !r.failed() && !*flagKeep {
			os.RemoveAll(d.dir)
		}
	}()
	if err := d.provisionAndBoot(fx); err != nil {
		r.problem("provision: %v", err)
		return r
	}
	allowed := map[string]string{fx.factory.sha256: "factory", fx.v2.sha256: "v2 " + fx.v2.name}
	target := "B"
	// The stalling server holds the download until the kill: the agent
	// must not give up on it first, however slowly a busy machine lets the
	// watcher see the checkpoint.
	d.patient = "30s"
	if err := d.setRepository(stall); err != nil {
		r.problem("config: %v", err)
		return r
	}
	// The interrupted download: the server stops sending after 16.5 MiB,
	// and the agent is killed as soon as its first checkpoint is durable.
	if killed, err := fx.killUpdate(d, target, plan{trigger: trigCheckpoint}, rng); err != nil || !killed {
		r.problem(setupMissed+" (%v)", err)
		return r
	}
	st := d.state()
	if st == nil || st.Slots[target] == nil || st.Slots[target].Written == 0 {
		r.problem("no durable checkpoint after the first kill: %+v", st)
		return r
	}
	r.checkpoint = st.Slots[target].Written
	d.patient = ""
	if err := d.setRepository(fx.slow); err != nil {
		r.problem("config: %v", err)
		return r
	}

	// The resumed run, against a server that alters the resumed range.
	fail := plan{trigger: []string{trigResumeWrite, trigSlotFull, trigDiscard}[rng.IntN(3)]}
	fail.delay = time.Duration(rng.Int64N(int64(map[string]time.Duration{
		trigResumeWrite: 500 * time.Millisecond, trigSlotFull: 3 * time.Millisecond, trigDiscard: time.Millisecond}[fail.trigger])))
	if i%2 == 1 {
		fail = plan{} // not killed
	} else if i == 0 {
		fail = plan{trigger: trigDiscard}
	}
	killed, code, out, err := d.killResumed(target, int64(len(fx.v2.data)), fail)
	if err != nil {
		r.problem("resumed update: %v", err)
		return r
	}
	// (The fast server behind the tampering proxy records Range headers.)
	if !fx.sawRange(r.checkpoint) {
		r.problem("the run after the checkpoint at %d did not resume from it (no Range: bytes=%d- request):\n%s", r.checkpoint, r.checkpoint, out)
		return r
	}
	st = d.state()
	switch {
	case !killed:
		r.phase = phaseRefused
		if code != 3 || !strings.Contains(out, "resumed at byte") {
			r.problem("the resumed update over altered bytes exited %d, want 3 (refused, blaming the resumed data):\n%s", code, out)
		}
		if st == nil || st.Slots[target] == nil {
			r.problem("no state for slot %s after the failed resume: %+v", target, st)
		} else if w := st.Slots[target].Written; w != 0 {
			r.problem("the checkpoint (%d bytes) was kept after the resumed image failed its hash: the next attempt would resume over the same bytes", w)
		}
	case st != nil && st.Slots[target] != nil && st.Slots[target].Written == 0:
		r.phase = phaseDiscarded
	default:
		r.phase = phaseResume
		if fi, err := os.Stat(d.slotPath(target)); err == nil && fi.Size() >= int64(len(fx.v2.data)) {
			r.phase = phaseHash
		}
	}
	r.plan.trigger, r.plan.delay = fail.trigger, fail.delay
	if r.failed() {
		return r
	}

	if !killed && i%2 == 1 {
		// The clean attempt from zero (the server sends the whole image
		// unaltered), killed at one of TestPowerLoss's points.
		cp := plan{trigger: trigTime, delay: time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))}
		if i != 1 && rng.IntN(2) == 0 {
			tr := triggers[rng.IntN(len(triggers))]
			cp = plan{trigger: tr.name, delay: time.Duration(rng.Int64N(int64(tr.maxDelay)))}
		}
		r.plan.trigger, r.plan.delay = "clean "+cp.trigger, cp.delay
		// The failed run left a full-length slot, and the agent writes a
		// slot in place (as on a block device): the harness reads the
		// phase from the slot's size (classify, slot-full), so the stale
		// bytes are dropped first. The agent starts from zero and never
		// reads them; the slot is not bootable either way.
		if err := os.Truncate(d.slotPath(target), 0); err != nil {
			r.problem("empty the failed slot: %v", err)
			return r
		}
		envBefore := d.envSnapshot()
		killed, err := fx.killUpdate(d, target, cp, rng)
		if err != nil {
			r.problem("clean attempt: %v", err)
			return r
		}
		r.phase = "clean:" + classify(d, target, fx.v2, killed, envBefore)
	}

	for range r.plan.boots {
		if !r.bootAndCheck(d, allowed) {
			return r
		}
	}
	if err := fx.recover(d); err != nil {
		r.stuck = true
		r.problem("recovery: %v", err)
	}
	return r
}

// killResumed runs fwagent update and, unless p.trigger is empty, SIGKILLs
// it p.delay after the trigger event. It returns whether the kill ended
// it, the exit code and the output.
func (d *device) killResumed(target string, size int64, p plan) (bool, int, string, error) {
	w, err := newWatcher(d.dir, d.cfg.StateDir)
	if err != nil {
		return false, 0, "", err
	}
	defer w.close()
	cmd := exec.Command(fwagentBin, "-c", filepath.Join(d.dir, "config.json"), "update")
	cmd.Env = append(os.Environ(), "CI=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return false, 0, "", err
	}
	kill := func() { cmd.Process.Signal(syscall.SIGKILL) }
	if p.trigger != "" {
		go w.until(func(ev event) bool {
			var hit bool
			switch {
			case p.trigger == trigResumeWrite:
				hit = ev.path == d.slotPath(target) && ev.mask&unix.IN_MODIFY != 0
			case p.trigger == trigDiscard && ev.path == filepath.Join(d.cfg.StateDir, "state.json"):
				st := d.state()
				hit = st != nil && st.Slots[target] != nil && st.Slots[target].Written == 0
			default:
				hit = fires(d, target, size, p.trigger, ev, w)
			}
			if hit {
				time.AfterFunc(p.delay, kill)
			}
			return hit
		})
	}
	cmd.Wait()
	w.close()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled(), cmd.ProcessState.ExitCode(), out.String(), nil
}

// tamperResumes serves the repository at upstream twice: at rate bytes per
// second (targets), altering one byte of every response to a Range
// request; and unthrottled, unaltered, but sending no target bytes past
// 16.5 MiB (it holds the connection open until the client goes away).
func tamperResumes(t *testing.T, upstream string, rate int) (tamper, stall string) {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Header.Get("Range") != "" && resp.StatusCode == http.StatusPartialContent {
			resp.Body = &tamperBody{ReadCloser: resp.Body}
		}
		return nil
	}
	srv := httptest.NewServer(throttle(proxy, rate))
	t.Cleanup(srv.Close)
	st := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/targets/") {
			proxy.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(&stallWriter{ResponseWriter: w, left: 33 << 19, done: r.Context().Done()}, r)
	}))
	t.Cleanup(st.Close)
	return srv.URL, st.URL
}

// stallWriter passes left bytes on, then blocks until done.
type stallWriter struct {
	http.ResponseWriter
	left int
	done <-chan struct{}
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if len(p) <= s.left {
		s.left -= len(p)
		return s.ResponseWriter.Write(p)
	}
	n, _ := s.ResponseWriter.Write(p[:s.left])
	s.left = 0
	s.ResponseWriter.(http.Flusher).Flush()
	<-s.done
	return n, io.ErrClosedPipe
}

// tamperBody flips the bits of the first byte read.
type tamperBody struct {
	io.ReadCloser
	done bool
}

func (b *tamperBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 && !b.done {
		p[0] ^= 0xff
		b.done = true
	}
	return n, err
}
