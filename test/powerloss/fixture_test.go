package powerloss

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/test/harness"
)

const hw = harness.Hardware

// Image sizes: small enough for hundreds of runs, large enough that the
// throttled download spans most of an update.
const (
	factorySize = 1 << 20
	v1Size      = 5 << 19 // 2.5 MiB
	v2Size      = 7 << 19 // 3.5 MiB
	// throttleRate makes one v2 download take about 350 ms.
	throttleRate = 10 << 20
)

// fixture is one published repository, served twice: fast (for setting
// devices up and for recovery) and throttled (for the update that is killed).
type fixture struct {
	root       []byte
	factory    image
	v1, v2     image // the first and the newest release
	v1Target   string
	fast, slow string
	updateTime time.Duration // one throttled update, measured by calibrate

	mu     sync.Mutex
	ranges []string // Range headers of target requests, both servers
	// deltaGets counts downloads of delta targets.
	deltaGets atomic.Int64
	// delta, when set, is a second repository whose v2 is also offered as
	// a delta from v1 (runs that start from v1 install it by delta).
	delta *fixture
}

// image is a complete image a slot may legitimately hold.
type image struct {
	name   string
	sha256 string
	data   []byte
}

func newImage(name string, n int) image {
	b := make([]byte, n)
	rand.Read(b)
	return image{name: name, sha256: sha256hex(b), data: b}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newFixture publishes v1 and v2 (counters 1 and 2), v2 throttled to
// throttleRate.
func newFixture(t *testing.T) *fixture {
	return publishFixture(t, throttleRate, false, newImage("factory", factorySize),
		newImage("1.0.0", v1Size), newImage("2.0.0", v2Size))
}

// newDeltaFixture publishes v1, and v2 both as a full image and as a delta
// from v1: v2 is v1 with 1 MiB of new data inserted and a few bytes
// changed, so the delta is about 1 MiB.
func newDeltaFixture(t *testing.T) *fixture {
	v1 := newImage("1.0.0", v1Size)
	fresh := newImage("", 1<<20).data
	b := append(append(bytes.Clone(v1.data[:1<<20]), fresh...), v1.data[1<<20:]...)
	for _, off := range []int{1000, 2_500_000, 3_000_000} {
		b[off] ^= 0xff
	}
	v2 := image{name: "2.0.0", sha256: sha256hex(b), data: b}
	return publishFixture(t, throttleRate, true, newImage("factory", factorySize), v1, v2)
}

// publishFixture publishes releases with counters 1, 2, ... (and, with
// withDelta, a delta from the previous release to the last) and serves
// them, the slow server at rate bytes per second.
func publishFixture(t *testing.T, rate int, withDelta bool, factory image, releases ...image) *fixture {
	t.Helper()
	rel := harness.NewRelease(t)
	fx := &fixture{factory: factory, v1: releases[0], v2: releases[len(releases)-1]}
	for i, img := range releases {
		tg := rel.Add(img.data, repo.AddOptions{Hardware: []string{hw}, Version: img.name, Counter: uint64(i + 1), Name: "firmware.img"})
		if i == 0 {
			fx.v1Target = tg.Path
		}
		if withDelta && i == len(releases)-1 {
			if ds, err := rel.WS.AddDeltas(context.Background(), tg.Path, 1, nil); err != nil || len(ds) != 1 {
				t.Fatalf("delta to %s: %v, %v", tg.Path, ds, err)
			}
		}
	}
	rel.Publish()
	fx.root = rel.Root()
	h := rel.Handler()
	rec := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/targets/") {
			fx.mu.Lock()
			fx.ranges = append(fx.ranges, r.Header.Get("Range"))
			fx.mu.Unlock()
			if strings.HasSuffix(r.URL.Path, repo.DeltaSuffix) {
				fx.deltaGets.Add(1)
			}
		}
		h.ServeHTTP(w, r)
	})
	fast := httptest.NewServer(rec)
	slow := httptest.NewServer(throttle(rec, rate))
	t.Cleanup(fast.Close)
	t.Cleanup(slow.Close)
	fx.fast, fx.slow = fast.URL, slow.URL
	return fx
}

// sawRange reports whether a target request asked for bytes from offset on.
func (fx *fixture) sawRange(offset int64) bool {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return slices.Contains(fx.ranges, fmt.Sprintf("bytes=%d-", offset))
}

// throttle serves /targets/ at about rate bytes per second.
func throttle(next http.Handler, rate int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/targets/") {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&slowWriter{ResponseWriter: w, rate: rate, start: time.Now()}, r)
	})
}

// slowWriter deliberately does not implement io.ReaderFrom, so the file
// server copies through Write in small pieces.
type slowWriter struct {
	http.ResponseWriter
	rate  int
	start time.Time
	n     int64
}

func (s *slowWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		k := min(len(p), 32<<10)
		n, err := s.ResponseWriter.Write(p[:k])
		done += n
		s.n += int64(n)
		if err != nil {
			return done, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(time.Until(s.start.Add(time.Duration(float64(s.n) / float64(s.rate) * float64(time.Second)))))
		p = p[k:]
	}
	return done, nil
}

// calibrate measures one complete throttled update, from the factory
// image or (fromV1) from a confirmed v1.
func (fx *fixture) calibrate(t *testing.T, base string, fromV1 bool) time.Duration {
	t.Helper()
	d, err := fx.newDevice(base, fmt.Sprintf("calibrate-%p", fx), layouts[0])
	if err == nil {
		err = d.provisionAndBoot(fx)
	}
	if err == nil && fromV1 {
		err = d.installV1(fx)
	}
	if err == nil {
		d.setRepository(fx.slow)
		start := time.Now()
		if code, out := d.fwagent("update"); code != exitInstalled {
			err = fmt.Errorf("update exited %d, want %d:\n%s", code, exitInstalled, out)
		}
		if err == nil {
			os.RemoveAll(d.dir)
			return time.Since(start)
		}
	}
	t.Fatalf("calibration update: %v", err)
	return 0
}

// layout is a bootloader environment and boot-counting scheme.
type layout struct{ name, env, scheme string }

var layouts = []layout{
	{"uboot-rauc", "uboot", "rauc"},
	{"uboot-bootcount", "uboot", "bootcount"},
	{"file-rauc", "file", "rauc"},
	{"grub-rauc", "grub", "rauc"},
}

// Copy size and offsets of the redundant U-Boot environment in uboot.env.
const envCopySize = 0x4000

// device is a simulated device: two file slots, a bootloader environment
// and a kernel command line file, driven by the real fwagent binary. The
// boots are simulated in-process with the agent's own boot.Scheme.Select,
// which is what the bootloader scripts in examples/boot do.
type device struct {
	dir string
	lay layout
	ag  *agent.Agent // only for Switch(): the bootloader's side
	cfg *agent.Config
	// patient, when set, makes the agent wait this long on a server that
	// sends nothing (stall timeout and slow-retrieval grace) instead of
	// 10s: for a kill that must land while a server holds the download.
	patient string
}

func (fx *fixture) newDevice(base, name string, lay layout) (*device, error) {
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d := &device{dir: dir, lay: lay}
	if lay.env == "uboot" {
		env := filepath.Join(dir, "uboot.env")
		if err := os.WriteFile(env, make([]byte, 2*envCopySize), 0o644); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf("%s 0x0000 0x%x\n%s 0x%x 0x%x\n", env, envCopySize, env, envCopySize, envCopySize)
		if err := os.WriteFile(filepath.Join(dir, "fw_env.config"), []byte(cfg), 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := harness.WriteDevice(dir, d.config(fx.fast), fx.factory.data); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), fx.root, 0o644); err != nil {
		return nil, err
	}
	if err := d.setRepository(fx.fast); err != nil {
		return nil, err
	}
	return d, nil
}

// config is the agent configuration of this device for repository url.
func (d *device) config(url string) map[string]any {
	bl := map[string]any{"type": d.lay.env, "path": filepath.Base(d.envPath()), "tries": 3, "scheme": d.lay.scheme}
	if d.lay.env == "uboot" {
		bl["path"] = "fw_env.config"
	}
	cfg := harness.DeviceConfig(url)
	cfg["bootloader"] = bl
	cfg["stall_timeout"], cfg["download_attempts"], cfg["retry_backoff"] = "10s", 2, "50ms"
	if d.patient != "" {
		cfg["stall_timeout"], cfg["rate_grace"] = d.patient, d.patient
	}
	return cfg
}

// setRepository (re)writes config.json pointing at url.
func (d *device) setRepository(url string) error {
	hd := &harness.Device{Dir: d.dir, Config: d.config(url)}
	if err := hd.WriteConfig(); err != nil {
		return err
	}
	c, err := agent.LoadConfig(hd.ConfigPath())
	if err != nil {
		return err
	}
	d.cfg = c
	d.ag, err = agent.New(c, trust.File{Dir: filepath.Join(c.StateDir, "trust")}, nil)
	return err
}

// Exit codes of fwagent (README).
const (
	exitOK        = 0
	exitInstalled = 10
)

// fwagent runs the real binary on this device and returns its exit code
// and combined output.
func (d *device) fwagent(args ...string) (int, string) {
	cmd := exec.Command(fwagentBin, append([]string{"-c", filepath.Join(d.dir, "config.json")}, args...)...)
	cmd.Env = append(os.Environ(), "CI=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	return -1, fmt.Sprintf("%v\n%s", err, out)
}

// must runs fwagent and requires one of the exit codes.
func (d *device) must(want []int, args ...string) (int, error) {
	code, out := d.fwagent(args...)
	for _, w := range want {
		if code == w {
			return code, nil
		}
	}
	return code, fmt.Errorf("fwagent %s exited %d, want %v:\n%s", strings.Join(args, " "), code, want, strings.TrimSpace(out))
}

// boot acts as the bootloader: choose a slot (counting the attempt) and
// "boot" it by writing the kernel command line (agent.SimulateBoot).
func (d *device) boot() (string, error) { return d.ag.SimulateBoot() }

// provisionAndBoot is the factory step and the first boot: provision, boot,
// confirm (a device confirms its running slot on every healthy boot).
func (d *device) provisionAndBoot(fx *fixture) error {
	if _, err := d.must([]int{exitOK}, "provision", "--root", filepath.Join(d.dir, "root.json")); err != nil {
		return err
	}
	if _, err := d.boot(); err != nil {
		return err
	}
	_, err := d.must([]int{exitOK}, "confirm")
	return err
}

// installV1 puts v1 into slot B and confirms it, so that the update under
// test overwrites the slot that held the factory image.
func (d *device) installV1(fx *fixture) error {
	if _, err := d.must([]int{exitInstalled}, "update", "--target", fx.v1Target); err != nil {
		return err
	}
	if slot, err := d.boot(); err != nil || slot != "B" {
		return fmt.Errorf("after installing v1 into B the bootloader chose %q (%v)", slot, err)
	}
	_, err := d.must([]int{exitOK}, "confirm")
	return err
}

func (d *device) slotPath(slot string) string { return d.cfg.Slots[slot] }

// running returns the slot named on the kernel command line.
func (d *device) running() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "cmdline"))
	_, v, _ := strings.Cut(strings.TrimSpace(string(b)), "fwctl.slot=")
	return v
}

// state reads fwagent's state file (nil if missing or unreadable).
func (d *device) state() *agent.State {
	b, err := os.ReadFile(filepath.Join(d.cfg.StateDir, "state.json"))
	if err != nil {
		return nil
	}
	var st agent.State
	if json.Unmarshal(b, &st) != nil {
		return nil
	}
	return &st
}

// envPath is the file holding the bootloader environment.
func (d *device) envPath() string {
	switch d.lay.env {
	case "uboot":
		return filepath.Join(d.dir, "uboot.env")
	case "grub":
		return filepath.Join(d.dir, "grubenv")
	}
	return filepath.Join(d.dir, "bootenv")
}

// envSnapshot identifies the environment's bytes and inode, to tell later
// whether anything wrote it (the file and GRUB backends replace it by
// rename, so an identical rewrite still changes the inode).
type envSnapshot struct {
	data []byte
	ino  uint64
}

func (d *device) envSnapshot() envSnapshot {
	var s envSnapshot
	s.data, _ = os.ReadFile(d.envPath())
	if fi, err := os.Stat(d.envPath()); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			s.ino = st.Ino
		}
	}
	return s
}

func (s envSnapshot) same(o envSnapshot) bool { return s.ino == o.ino && bytes.Equal(s.data, o.data) }
