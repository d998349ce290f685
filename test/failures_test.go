package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo"
)

// fellBack returns a device running v1 in slot B whose install of v2 into
// slot A was tried three times without a confirmation, so it fell back.
func fellBack(t *testing.T) (*release, *device) {
	t.Helper()
	r, d := installed(t)
	if res, err := d.update(); err != nil || !res.Installed || res.Slot != "A" {
		t.Fatalf("update to v2: %+v, %v", res, err)
	}
	for range 3 {
		if s := d.boot(); s != "A" {
			t.Fatalf("boot tried %s, want the new slot A", s)
		}
	}
	if s := d.boot(); s != "B" {
		t.Fatalf("after three unconfirmed boots the device runs %s, want B", s)
	}
	return r, d
}

// TestFellBackReleaseNotInstalledAgain: a release that fell back is not
// installed again by the next update (the daemon's next poll), status
// keeps showing the fallback, and only --retry installs it again.
func TestFellBackReleaseNotInstalledAgain(t *testing.T) {
	r, d := fellBack(t)
	before := d.snap()
	res, err := d.update()
	if !errors.Is(err, agent.ErrFailedBefore) {
		t.Fatalf("update after a fallback: %+v, %v; want %v", res, err, agent.ErrFailedBefore)
	}
	if !strings.Contains(err.Error(), "--retry") {
		t.Fatalf("error %q does not say how to retry", err)
	}
	st, err := d.ag.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Last == nil || st.Last.Outcome != "fell-back" || st.Last.Version != "2.0.0" {
		t.Fatalf("last result %+v, want the fallback of 2.0.0", st.Last)
	}
	if len(st.Failed) != 1 || st.Failed[0].Version != "2.0.0" {
		t.Fatalf("failed releases %+v, want 2.0.0", st.Failed)
	}
	if n := len(st.History); n < 3 || st.History[n-1].Outcome != "fell-back" || st.History[n-2].Outcome != "installed" {
		t.Fatalf("history %+v, want ... installed, fell-back", st.History)
	}
	d.assertUnchanged(before)

	// --retry installs it again; the failure is forgotten once it confirms.
	res, err = d.ag.Update(t.Context(), agent.UpdateOptions{Retry: true})
	if err != nil || !res.Installed || res.Slot != "A" {
		t.Fatalf("update --retry: %+v, %v", res, err)
	}
	d.boot()
	if _, err := d.ag.Confirm(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(mustRead(t, targetFile(t, r, "2.0.0")))
	if st, _ := d.ag.Status(t.Context()); len(st.Failed) != 0 {
		t.Fatalf("failed releases after a confirmed retry: %+v", st.Failed)
	}
}

// TestFellBackNewerReleaseInstalls: a newer release is installed although
// an older one fell back.
func TestFellBackNewerReleaseInstalls(t *testing.T) {
	r, d := fellBack(t)
	v3 := r.add("3.0.0", 3, 40_000)
	r.publish()
	d.mustInstall(v3)
}

// TestUnhealthyReleaseNotInstalledAgain: the same for a failed health check.
func TestUnhealthyReleaseNotInstalledAgain(t *testing.T) {
	_, d := installed(t)
	withConfig(t, d, func(m map[string]any) {
		m["health_checks"] = []map[string]any{{"name": "app-up", "command": []string{"false"}, "timeout": "5s"}}
	})
	if res, err := d.update(); err != nil || !res.Installed {
		t.Fatalf("update: %+v, %v", res, err)
	}
	d.boot()
	if _, err := d.ag.Confirm(t.Context()); !errors.Is(err, agent.ErrUnhealthy) {
		t.Fatalf("confirm: %v, want unhealthy", err)
	}
	if s := d.boot(); s != "B" {
		t.Fatalf("booted %s after an unhealthy confirm, want B", s)
	}
	if _, err := d.update(); !errors.Is(err, agent.ErrFailedBefore) {
		t.Fatalf("update after an unhealthy slot: %v, want %v", err, agent.ErrFailedBefore)
	}
	st, _ := d.ag.Status(t.Context())
	if st.Last == nil || st.Last.Outcome != "unhealthy" {
		t.Fatalf("last result %+v, want unhealthy", st.Last)
	}
}

// TestFailedAttemptLeavesDeviceUnchanged: a 503 for the image (after the
// metadata verified) touches neither the boot environment nor the
// inactive slot nor its recorded state: exit 4 means unchanged.
func TestFailedAttemptLeavesDeviceUnchanged(t *testing.T) {
	r, d := installed(t)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if strings.HasPrefix(req.URL.Path, "/targets/") {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, req)
	}
	env := mustRead(t, d.cfg.Bootloader.Path)
	slotA := mustRead(t, d.cfg.Slots["A"])
	st0, _ := d.ag.Status(t.Context())
	a0 := *st0.Slots["A"]
	if _, err := d.update(); !errors.Is(err, agent.ErrNetwork) {
		t.Fatalf("update with the image answering 503: %v, want %v", err, agent.ErrNetwork)
	}
	if got := mustRead(t, d.cfg.Bootloader.Path); !bytes.Equal(got, env) {
		t.Fatalf("boot environment changed by a failed download:\n%s\nwas\n%s", got, env)
	}
	if !bytes.Equal(mustRead(t, d.cfg.Slots["A"]), slotA) {
		t.Fatal("inactive slot A changed by a download that never sent a byte")
	}
	st, _ := d.ag.Status(t.Context())
	if *st.Slots["A"] != a0 {
		t.Fatalf("slot A's state %+v, was %+v", st.Slots["A"], a0)
	}
	if st.Last == nil || st.Last.Outcome != "failed" || !strings.Contains(st.Last.Error, "503") {
		t.Fatalf("last result %+v, want the failed attempt with its cause", st.Last)
	}
	r.wrap = nil
	d.mustInstall(mustRead(t, targetFile(t, r, "2.0.0")))
}

// TestHashFailureDiscardsCheckpoint: a download whose first part was
// tampered with leaves a resume checkpoint; once the server is fixed, the
// resumed download fails its hash, says the resumed data was wrong and
// discards the checkpoint, and the next attempt starts from zero and
// installs.
func TestHashFailureDiscardsCheckpoint(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 10_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	withConfig(t, d, func(m map[string]any) { m["download_attempts"] = 1 })
	d.provision(r.rootJSON())
	d.mustInstall(v1)
	const size = 17 << 20 // past the first 16 MiB checkpoint
	v2 := r.add("2.0.0", 2, size)
	r.publish()

	// A proxy alters the first bytes and drops the connection after
	// 16.5 MiB: the install fails after checkpointing 16 MiB of bad data.
	var ranges []string
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if !strings.HasPrefix(req.URL.Path, "/targets/") {
			next.ServeHTTP(w, req)
			return
		}
		ranges = append(ranges, req.Header.Get("Range"))
		bad := bytes.Clone(v2[:33<<19])
		rand.Read(bad[:4096])
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(bad)
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}
	if _, err := d.update(); !errors.Is(err, agent.ErrNetwork) {
		t.Fatalf("update through a proxy that drops the connection: %v, want %v", err, agent.ErrNetwork)
	}
	st, _ := d.ag.Status(t.Context())
	if w := st.Slots["A"].Written; w < 16<<20 {
		t.Fatalf("checkpoint at %d bytes, want at least 16 MiB (the test needs one)", w)
	}

	// The server is fixed; the resumed download fails its hash.
	wrap := func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if strings.HasPrefix(req.URL.Path, "/targets/") {
			ranges = append(ranges, req.Header.Get("Range"))
		}
		next.ServeHTTP(w, req)
	}
	r.wrap = wrap
	_, err := d.update()
	if !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("resumed update over a bad checkpoint: %v, want %v", err, agent.ErrRefused)
	}
	if !strings.Contains(err.Error(), "resumed") || strings.Contains(err.Error(), "the server or a mirror altered it") {
		t.Fatalf("error %q: want it to blame the resumed data, not the server", err)
	}
	if st, _ := d.ag.Status(t.Context()); st.Slots["A"].Written != 0 {
		t.Fatalf("checkpoint %d kept after a hash failure, want it discarded", st.Slots["A"].Written)
	}
	// The next attempt starts from zero and installs.
	n := len(ranges)
	d.mustInstall(v2)
	if ranges[n] != "" {
		t.Fatalf("the attempt after a hash failure asked for %q, want the whole image", ranges[n])
	}
}

// TestFullSlotIsNotANetworkError: a slot that cannot hold the image
// (ENOSPC while writing) is its own error, not "repository unreachable".
func TestFullSlotIsNotANetworkError(t *testing.T) {
	_, d := installed(t)
	withConfig(t, d, func(m map[string]any) {
		m["slots"] = map[string]string{"A": "/dev/full", "B": "slotB.img"}
	})
	_, err := d.update()
	if !errors.Is(err, agent.ErrNoSpace) || errors.Is(err, agent.ErrNetwork) {
		t.Fatalf("update into a full slot: %v, want %v and not %v", err, agent.ErrNoSpace, agent.ErrNetwork)
	}
	if next, _, _ := d.ag.Switch().Primary(); next != "B" {
		t.Fatalf("next boot %s after a failed write, want the running slot B", next)
	}
}

// TestSlotTooSmall: a block-device slot smaller than the signed length is
// refused before anything is touched.
func TestSlotTooSmall(t *testing.T) {
	losetup := loopTool(t)
	small := newLoopSlot(t, losetup, "A", 32<<10)
	_, d := installed(t) // v2 is 50 000 bytes
	withConfig(t, d, func(m map[string]any) {
		m["slots"] = map[string]string{"A": small.dev, "B": "slotB.img"}
	})
	env := mustRead(t, d.cfg.Bootloader.Path)
	_, err := d.update()
	if !errors.Is(err, agent.ErrNoSpace) || !strings.Contains(err.Error(), "holds at most 32768") {
		t.Fatalf("update into a 32 KiB slot: %v, want %v naming the sizes", err, agent.ErrNoSpace)
	}
	if !bytes.Equal(mustRead(t, d.cfg.Bootloader.Path), env) {
		t.Fatal("the boot environment changed although the image cannot fit")
	}
	small.check(t, nil)
}

// TestDeltaNotSmallerUsesFullImage: a delta that is not smaller than the
// image it rebuilds is not downloaded; the full image is.
func TestDeltaNotSmallerUsesFullImage(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 200_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	d.mustInstall(v1)
	v2 := make([]byte, 200_000) // unrelated to v1: a delta cannot pay
	rand.Read(v2)
	p := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(p, v2, 0o644)
	tg, err := r.ws.AddTarget(p, repo.AddOptions{Hardware: []string{hw}, Version: "2.0.0", Counter: 2})
	if err != nil {
		t.Fatal(err)
	}
	// fwctl would not stage such a delta (above 90 % of the image): stage it
	// anyway, as an older fwctl or another tool could, to see the agent
	// refuse to pay for it.
	dr, _ := r.ws.StageDeltas(context.Background(), tg.Path, repo.DeltaOptions{From: 3, MaxRatio: 100})
	ds := dr.Added
	r.publish()
	var fetched []string
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if strings.HasPrefix(req.URL.Path, "/targets/") {
			fetched = append(fetched, req.URL.Path)
		}
		next.ServeHTTP(w, req)
	}
	res, err := d.update()
	if err != nil || !res.Installed {
		t.Fatalf("update: %+v, %v", res, err)
	}
	if res.Delta != "" {
		t.Fatalf("installed by delta %s (%d deltas staged for a %d-byte image)", res.Delta, len(ds), len(v2))
	}
	for _, f := range fetched {
		if strings.Contains(f, "delta") {
			t.Fatalf("downloaded %s, a delta not smaller than the image", f)
		}
	}
	if len(ds) > 0 && !strings.Contains(res.DeltaError, "not smaller") {
		t.Fatalf("delta_error %q, want why the delta was skipped", res.DeltaError)
	}
	d.boot()
	if _, err := d.ag.Confirm(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
}

// TestStatusShowsTrial: status says which release is on trial, in which
// slot, how many boots are left and how to confirm it.
func TestStatusShowsTrial(t *testing.T) {
	_, d := installed(t)
	if _, err := d.update(); err != nil {
		t.Fatal(err)
	}
	st, _ := d.ag.Status(t.Context())
	if want := "2.0.0 installed in slot A, waits for a reboot"; !strings.Contains(st.State, want) {
		t.Fatalf("state %q, want %q", st.State, want)
	}
	d.boot()
	st, _ = d.ag.Status(t.Context())
	if want := "trying 2.0.0 in slot A, 2 boots left, confirm with 'fwagent confirm'"; !strings.Contains(st.State, want) {
		t.Fatalf("state %q, want %q", st.State, want)
	}
}

// mustRetry installs, boots and confirms img with --retry.
func (d *device) mustRetry(img []byte) {
	d.t.Helper()
	res, err := d.ag.Update(context.Background(), agent.UpdateOptions{Retry: true})
	if err != nil || !res.Installed {
		d.t.Fatalf("update --retry: %+v, %v", res, err)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		d.t.Fatal(err)
	}
	d.assertRunning(img)
}

// loopTool returns losetup, for slots on loop devices (root only).
func loopTool(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (loop devices)", "run as root; CI runs as root")
	}
	return testenv.LookPath(t, "losetup", "apt-get install mount")
}

// logTap records log messages and cancels when it sees stop.
type logTap struct {
	mu     sync.Mutex
	msgs   []string
	stop   string
	cancel context.CancelFunc
}

func (l *logTap) Enabled(context.Context, slog.Level) bool { return true }
func (l *logTap) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logTap) WithGroup(string) slog.Handler            { return l }
func (l *logTap) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.mu.Lock()
	l.msgs = append(l.msgs, line)
	l.mu.Unlock()
	if r.Message == l.stop {
		l.cancel()
	}
	return nil
}

// TestDaemonLogsConfigAndNextPoll: the daemon says what it runs with and
// when it polls next.
func TestDaemonLogsConfigAndNextPoll(t *testing.T) {
	_, d := installed(t)
	ctx, cancel := context.WithCancel(t.Context())
	tap := &logTap{stop: "next poll", cancel: cancel}
	ag, err := agent.New(d.cfg, d.store, slog.New(tap))
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.Daemon(ctx, agent.DaemonOptions{}); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(tap.msgs, "\n")
	for _, want := range []string{"fwagent daemon starting repository=" + d.cfg.Repository, "poll_interval=1h0m0s", "update installed; reboot needed", "next poll at="} {
		if !strings.Contains(all, want) {
			t.Errorf("daemon log lacks %q:\n%s", want, all)
		}
	}
}
