package test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/agent/tufclient"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/verify"
)

func TestInstallConfirmUpdate(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 300_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())

	d.mustInstall(v1)
	if c, _ := d.store.Counter(context.Background()); c != 1 {
		t.Fatalf("counter %d after confirming v1, want 1", c)
	}
	res, err := d.update()
	if err != nil || res.Installed || !res.UpToDate {
		t.Fatalf("second update: %+v, %v; want up to date", res, err)
	}

	v2 := r.add("2.0.0", 5, 280_000)
	r.publish()
	before, _ := d.store.Counter(context.Background())
	res, err = d.update()
	if err != nil || !res.Installed {
		t.Fatalf("update to v2: %+v %v", res, err)
	}
	if c, _ := d.store.Counter(context.Background()); c != before {
		t.Fatalf("counter raised before confirm: %d", c)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
	if c, _ := d.store.Counter(context.Background()); c != 5 {
		t.Fatalf("counter %d after confirming v2, want 5", c)
	}
}

func TestFallbackWithoutConfirm(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 10_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	d.mustInstall(v1)

	r.add("2.0.0", 2, 10_000)
	r.publish()
	if res, err := d.update(); err != nil || !res.Installed {
		t.Fatalf("update: %v", err)
	}
	// The new slot is tried three times and never confirmed.
	for range 3 {
		if s := d.boot(); s != "A" {
			t.Fatalf("boot tried %s, want the new slot A", s)
		}
	}
	if s := d.boot(); s != "B" {
		t.Fatalf("after 3 unconfirmed boots the device runs %s, want fallback to B", s)
	}
	d.assertRunning(v1)
	st, err := d.ag.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Last == nil || st.Last.Outcome != "fell-back" || st.Slots["A"].Status != manifests.SlotBad {
		t.Fatalf("status after fallback: last %+v, slot A %+v", st.Last, st.Slots["A"])
	}
	if c, _ := d.store.Counter(context.Background()); c != 1 {
		t.Fatalf("counter %d after a fallback, want 1", c)
	}
}

// attack runs an update against a modified repository and checks that it
// is refused with the wanted error and changes nothing that boots.
func attack(t *testing.T, d *device, want error) error {
	t.Helper()
	before := d.snap()
	res, err := d.update()
	if err == nil {
		t.Fatalf("update succeeded (%+v), want %v", res, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("update error = %v, want %v", err, want)
	}
	d.assertUnchanged(before)
	return err
}

// installed returns a device running v1 from a repository that already
// offers v2 (counter 2), not yet installed.
func installed(t *testing.T) (*release, *device) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 50_000)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	d.mustInstall(v1)
	r.add("2.0.0", 2, 50_000)
	r.publish()
	return r, d
}

func targetFile(t *testing.T, r *release, version string) string {
	files, _ := filepath.Glob(filepath.Join(r.pub, "targets", hw, version, "*.firmware.img"))
	if len(files) != 1 {
		t.Fatalf("target files for %s: %v", version, files)
	}
	return files[0]
}

func TestAttackTamperedImage(t *testing.T) {
	r, d := installed(t)
	p := targetFile(t, r, "2.0.0")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	err := attack(t, d, agent.ErrRefused)
	if !errors.Is(err, tufclient.ErrTargetMismatch) {
		t.Fatalf("error %v, want a target mismatch", err)
	}
	// Once the server is repaired the update goes through.
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	d.mustInstall(b)
}

func TestAttackBadMetadataSignature(t *testing.T) {
	r, d := installed(t)
	p := filepath.Join(r.pub, "metadata", "timestamp.json")
	b, _ := os.ReadFile(p)
	// Push the expiry out by a year without re-signing.
	ts, _ := metadata.Timestamp().FromBytes(b)
	ts.Signed.Expires = ts.Signed.Expires.Add(365 * 24 * time.Hour)
	out, _ := ts.ToBytes(true)
	os.WriteFile(p, out, 0o644)
	err := attack(t, d, agent.ErrRefused)
	if !errors.Is(err, tuf.ErrSignature) {
		t.Fatalf("error %v, want unsigned metadata", err)
	}
}

func TestAttackRollback(t *testing.T) {
	r, d := installed(t)
	// Install and confirm v2 (counter 2), then ask for v1 explicitly.
	d.mustInstall(mustRead(t, targetFile(t, r, "2.0.0")))
	before := d.snap()
	_, err := d.ag.Update(context.Background(), agent.UpdateOptions{Target: hw + "/1.0.0/firmware.img"})
	if !errors.Is(err, agent.ErrRollback) || !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("explicit downgrade: %v, want a refused rollback", err)
	}
	d.assertUnchanged(before)

	// A repository whose newest release carries a lower counter than the
	// device's is refused too, even with a higher version number.
	r2 := newRelease(t)
	r2.add("9.0.0", 1, 10_000)
	r2.publish()
	d2 := newDevice(t, r2.serve(), hw)
	d2.provision(r2.rootJSON())
	d2.store.RaiseCounter(context.Background(), 2)
	attack(t, d2, agent.ErrRollback)
}

func TestAttackExpiredTimestamp(t *testing.T) {
	_, d := installed(t)
	// A freeze attack: the server keeps serving metadata that has expired.
	d.ag.Now = func() time.Time { return time.Now().Add(48 * time.Hour) }
	err := attack(t, d, agent.ErrRefused)
	if !errors.Is(err, tuf.ErrFreeze) {
		t.Fatalf("error %v, want expired metadata", err)
	}
}

func TestAttackWrongHardware(t *testing.T) {
	r, d := installed(t)
	r.add("3.0.0", 3, 10_000, "other-board")
	r.publish()
	// The newest release overall is for other hardware: the device
	// installs its own newest (v2), never the other board's image.
	res, err := d.update()
	if err != nil || !res.Installed || res.Available.Version != "2.0.0" {
		t.Fatalf("update picked %+v, %v; want this board's 2.0.0", res, err)
	}
	d.boot()
	d.ag.Confirm(context.Background())
	// Asked for the other board's image explicitly, it refuses.
	before := d.snap()
	_, err = d.ag.Update(context.Background(), agent.UpdateOptions{Target: "other-board/3.0.0/firmware.img"})
	if !errors.Is(err, agent.ErrWrongHardware) || !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("other board's image: %v, want wrong hardware", err)
	}
	d.assertUnchanged(before)
	// A device of another hardware sees nothing to install.
	d2 := newDevice(t, r.serve(), "third-board")
	d2.provision(r.rootJSON())
	if res, err := d2.update(); err != nil || res.Installed {
		t.Fatalf("third board: %+v %v", res, err)
	}
}

func TestAttackMixAndMatch(t *testing.T) {
	r, d := installed(t)
	md := filepath.Join(r.pub, "metadata")
	// Serve the old targets metadata under the new version's name.
	old, _ := os.ReadFile(filepath.Join(md, "1.targets.json"))
	os.WriteFile(filepath.Join(md, "2.targets.json"), old, 0o644)
	err := attack(t, d, agent.ErrRefused)
	if !errors.Is(err, tuf.ErrMixAndMatch) {
		t.Fatalf("error %v, want a repository error", err)
	}
}

func TestAttackEndlessData(t *testing.T) {
	r, d := installed(t)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if !strings.HasPrefix(req.URL.Path, "/targets/") {
			next.ServeHTTP(w, req)
			return
		}
		buf := make([]byte, 32<<10)
		for { // endless data, no Content-Length
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}
	err := attack(t, d, agent.ErrRefused)
	if !errors.Is(err, tufclient.ErrTargetMismatch) {
		t.Fatalf("error %v, want a target mismatch", err)
	}
}

func TestAttackInvalidTrustedRoot(t *testing.T) {
	r := newRelease(t)
	r.publish()
	d := newDevice(t, r.serve(), hw)
	for name, root := range map[string][]byte{
		"garbage":           []byte("not json"),
		"bad signature":     []byte(strings.Replace(string(r.rootJSON()), `"version": 1`, `"version": 7`, 1)),
		"targets, not root": mustRead(t, filepath.Join(r.pub, "metadata", "1.targets.json")),
	} {
		if _, err := d.ag.Provision(context.Background(), root); !errors.Is(err, agent.ErrInvalidRoot) {
			t.Errorf("%s: provision error %v, want invalid root", name, err)
		}
	}
	// A root.json swapped on disk after provisioning is refused.
	d.provision(r.rootJSON())
	other := newRelease(t)
	os.WriteFile(filepath.Join(d.cfg.StateDir, "metadata", "root.json"), other.rootJSON(), 0o600)
	if _, err := d.update(); !errors.Is(err, agent.ErrRootNotPinned) {
		t.Fatalf("update with swapped root.json: %v, want root not pinned", err)
	}
	// So is a swapped archived root.
	os.WriteFile(filepath.Join(d.cfg.StateDir, "roots", "1.root.json"), other.rootJSON(), 0o600)
	if _, err := d.update(); !errors.Is(err, agent.ErrRootNotPinned) {
		t.Fatalf("update with swapped root chain: %v, want root not pinned", err)
	}
	// Provisioning a different root over the pinned one is refused.
	if _, err := d.ag.Provision(context.Background(), other.rootJSON()); err == nil {
		t.Fatal("re-provisioning a different root succeeded")
	}
}

func TestServerDownMidDownload(t *testing.T) {
	r, d := installed(t)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if !strings.HasPrefix(req.URL.Path, "/targets/") {
			next.ServeHTTP(w, req)
			return
		}
		f, _ := os.Open(filepath.Join(r.pub, req.URL.Path))
		defer f.Close()
		fi, _ := f.Stat()
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		io.CopyN(w, f, fi.Size()/2)
		// The server dies: drop the connection mid-body.
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	}
	attack(t, d, agent.ErrNetwork)
	r.wrap = nil
	d.mustInstall(mustRead(t, targetFile(t, r, "2.0.0")))
}

func TestStalledDownload(t *testing.T) {
	r, d := installed(t)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if !strings.HasPrefix(req.URL.Path, "/targets/") {
			next.ServeHTTP(w, req)
			return
		}
		w.Header().Set("Content-Length", "50000")
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		select { // slow retrieval: send nothing more
		case <-req.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	err := attack(t, d, agent.ErrNetwork)
	if !errors.Is(err, tufclient.ErrStalled) {
		t.Fatalf("error %v, want stalled", err)
	}
}

func TestVerifyDir(t *testing.T) {
	r := newRelease(t)
	r.add("1.0.0", 1, 1000)
	r.publish()
	if _, err := verify.VerifyDir(r.pub, r.rootJSON(), time.Now()); err != nil {
		t.Fatal(err)
	}
	p := targetFile(t, r, "1.0.0")
	os.WriteFile(p, []byte("tampered"), 0o644)
	if _, err := verify.VerifyDir(r.pub, r.rootJSON(), time.Now()); err == nil {
		t.Fatal("verify accepted a tampered target")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResumeAfterBrokenConnection(t *testing.T) {
	r, d := installed(t)
	var (
		mu     sync.Mutex // the handler runs on the server's goroutines
		served int64
		ranges []string
		broken bool
	)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if !strings.HasPrefix(req.URL.Path, "/targets/") {
			next.ServeHTTP(w, req)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		ranges = append(ranges, req.Header.Get("Range"))
		if broken {
			rec := &countingWriter{ResponseWriter: w}
			next.ServeHTTP(rec, req)
			served += rec.n
			return
		}
		broken = true
		f, _ := os.Open(filepath.Join(r.pub, req.URL.Path))
		defer f.Close()
		fi, _ := f.Stat()
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		n, _ := io.CopyN(w, f, fi.Size()/2)
		served += n
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}
	d.mustInstall(mustRead(t, targetFile(t, r, "2.0.0")))
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("requests' Range headers %q, want a resumed second request", ranges)
	}
	if served > 50_000*11/10 {
		t.Fatalf("served %d bytes for a 50000-byte image: the download restarted instead of resuming", served)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func withConfig(t *testing.T, d *device, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(d.dir, "config.json")
	var m map[string]any
	json.Unmarshal(mustRead(t, p), &m)
	edit(m)
	b, _ := json.Marshal(m)
	os.WriteFile(p, b, 0o644)
	d.reload()
}

func TestHealthCheckFailureFallsBack(t *testing.T) {
	r, d := installed(t)
	v1 := mustRead(t, d.cfg.Slots["B"])
	flag := filepath.Join(d.dir, "healthy")
	withConfig(t, d, func(m map[string]any) {
		m["health_checks"] = []map[string]any{{"name": "app-up", "command": []string{"test", "-e", flag}, "timeout": "5s"}}
	})
	if res, err := d.update(); err != nil || !res.Installed {
		t.Fatalf("update: %v", err)
	}
	if s := d.boot(); s != "A" {
		t.Fatalf("booted %s, want the new slot A", s)
	}
	_, err := d.ag.Confirm(context.Background())
	if !errors.Is(err, agent.ErrUnhealthy) {
		t.Fatalf("confirm with a failing check: %v, want unhealthy", err)
	}
	if c, _ := d.store.Counter(context.Background()); c != 1 {
		t.Fatalf("counter raised to %d by an unhealthy slot", c)
	}
	if s := d.boot(); s != "B" {
		t.Fatalf("after an unhealthy confirm the device boots %s, want the old slot B", s)
	}
	d.assertRunning(v1)
	st, _ := d.ag.Status(context.Background())
	if st.Last.Outcome != "unhealthy" || st.Slots["A"].Status != manifests.SlotBad {
		t.Fatalf("status: %+v %+v", st.Last, st.Slots["A"])
	}
	// Healthy again: an update with --retry installs and confirms.
	os.WriteFile(flag, nil, 0o644)
	d.mustRetry(mustRead(t, targetFile(t, r, "2.0.0")))
}

func TestInstallHooks(t *testing.T) {
	_, d := installed(t)
	log := filepath.Join(d.dir, "hooks.log")
	withConfig(t, d, func(m map[string]any) {
		m["hooks"] = map[string]any{
			"pre_install":  []string{"sh", "-c", `echo "pre $FWAGENT_SLOT $FWAGENT_VERSION" >> ` + log},
			"post_install": []string{"sh", "-c", `echo "post $FWAGENT_SLOT $FWAGENT_TARGET" >> ` + log + `; exit 3`},
		}
	})
	before := d.snap()
	if _, err := d.update(); !errors.Is(err, agent.ErrHook) {
		t.Fatalf("update with a failing post-install hook: %v, want a hook error", err)
	}
	d.assertUnchanged(before)
	got := string(mustRead(t, log))
	want := "pre A 2.0.0\npost A acme-gw-v2/2.0.0/firmware.img\n"
	if got != want {
		t.Fatalf("hooks ran as %q, want %q", got, want)
	}
}
