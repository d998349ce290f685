package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
	"github.com/fwctl/fwctl/repo/server/operator"
	"github.com/fwctl/fwctl/test/harness"
)

// fleet is fwrepo's fleet side as fwrepo serve composes it: the image
// repository and the director (newDirected), the device API on an
// inventory, and the operator API with the rollout engine; devices are real
// agents with file slots and file identities, reporting signed manifests.
type fleet struct {
	*directed
	db       *inventory.DB
	svc      *operator.Service
	operator string // operator token
	viewer   string // viewer token
	devices  map[string]*fleetDevice

	mu       sync.Mutex
	captured [][]byte // report bodies as sent
}

type fleetDevice struct {
	*device
	id  string
	key agent.DeviceSigner
}

// fleetBackends are the inventory databases the fleet tests run on.
func fleetBackends(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return filepath.Join(t.TempDir(), "fleet.db") },
		"postgres": func(t *testing.T) string {
			pg, err := testenv.StartPostgres()
			if errors.Is(err, testenv.ErrNoPostgres) {
				testenv.Missing(t, "PostgreSQL", err.Error())
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pg.Stop() })
			return pg.DSN
		},
	}
}

func newFleet(t *testing.T, dsn string) *fleet {
	t.Helper()
	dr := newDirected(t)
	db, err := inventory.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fleet{directed: dr, db: db, devices: map[string]*fleetDevice{}}
	f.svc = &operator.Service{DB: db, Director: dr.dir, Releases: operator.StoreReleases{Store: blob.Dir(dr.pub)}}
	devAPI, opAPI := inventory.Handler(db, nil), operator.Handler(f.svc, nil)
	inner := dr.wrap
	dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		switch {
		case strings.HasPrefix(req.URL.Path, operator.Prefix):
			opAPI.ServeHTTP(w, req)
		case strings.HasPrefix(req.URL.Path, "/api/"):
			if req.Method == http.MethodPost {
				b, _ := io.ReadAll(req.Body)
				f.mu.Lock()
				f.captured = append(f.captured, b)
				f.mu.Unlock()
				req.Body = io.NopCloser(bytes.NewReader(b))
			}
			devAPI.ServeHTTP(w, req)
		default:
			inner(w, req, next)
		}
	}
	if f.operator, _, err = db.CreateToken(context.Background(), "alice", inventory.RoleOperator); err != nil {
		t.Fatal(err)
	}
	if f.viewer, _, err = db.CreateToken(context.Background(), "victor", inventory.RoleViewer); err != nil {
		t.Fatal(err)
	}
	return f
}

// addDevice provisions a device with a file identity, registers it (its
// "Identity: file" PEM) and tags it.
func (f *fleet) addDevice(id string, tags map[string]string, unhealthy bool) *fleetDevice {
	t := f.t
	t.Helper()
	f.url = f.serve()
	cfg := harness.DeviceConfig(f.url)
	cfg["bootloader"] = map[string]any{"type": "file", "path": "bootenv", "tries": 3}
	cfg["stall_timeout"], cfg["download_attempts"], cfg["retry_backoff"] = "2s", 3, "50ms"
	cfg["director"] = map[string]any{"root": f.rootPath, "device_id": id}
	cfg["identity"] = map[string]any{"key_file": "state/identity.key"}
	if unhealthy {
		cfg["health_checks"] = []map[string]any{{"name": "app-up", "command": []string{"false"}, "timeout": "5s"}}
	}
	hd, err := harness.WriteDevice(t.TempDir(), cfg, []byte("factory image"))
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, dir: hd.Dir}
	d.reload()
	d.provision(f.rootJSON())
	key, kind, err := d.ag.IdentityKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := agent.IdentityPEM(key, kind)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.db.AddDevice(context.Background(), id, pemBytes, inventory.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.db.SetTags(context.Background(), id, tags); err != nil {
		t.Fatal(err)
	}
	fd := &fleetDevice{device: d, id: id, key: key}
	fd.report()
	f.devices[id] = fd
	return fd
}

// report sends the device's signed manifest.
func (d *fleetDevice) report() {
	d.t.Helper()
	if _, err := d.ag.Report(context.Background(), d.key, agent.ReportOptions{DeviceID: d.id}); err != nil {
		d.t.Fatalf("%s: report: %v", d.id, err)
	}
}

// poll is one device cycle: update, and when something was installed,
// reboot and confirm (an unhealthy device falls back); then report.
// It returns whether the device installed something.
func (d *fleetDevice) poll() bool {
	d.t.Helper()
	res, err := d.update()
	if err != nil && !errors.Is(err, agent.ErrFailedBefore) {
		d.t.Fatalf("%s: update: %v", d.id, err)
	}
	installed := err == nil && res.Installed
	if installed {
		d.boot()
		if _, err := d.ag.Confirm(context.Background()); err != nil {
			if !errors.Is(err, agent.ErrUnhealthy) {
				d.t.Fatalf("%s: confirm: %v", d.id, err)
			}
			d.boot() // falls back
		}
	}
	d.report()
	return installed
}

// call sends an operator API request with token (none: "").
func (f *fleet) call(method, path, token string, body any) (int, map[string]any) {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.url+operator.Prefix+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (f *fleet) mustCall(method, path string, body any) map[string]any {
	f.t.Helper()
	code, out := f.call(method, path, f.operator, body)
	if code/100 != 2 {
		f.t.Fatalf("%s %s: %d %v", method, path, code, out)
	}
	return out
}

func (f *fleet) reconcile(id string) *inventory.RolloutStatus {
	f.t.Helper()
	if err := f.svc.Reconcile(context.Background(), id); err != nil {
		f.t.Fatal(err)
	}
	st, err := f.db.Status(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// running reports which of ids run the image.
func (f *fleet) runs(img []byte, ids ...string) bool {
	for _, id := range ids {
		st, err := f.devices[id].ag.Status(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		if st.Slots[st.BootedSlot].SHA256 != sha256hex(img) {
			return false
		}
	}
	return true
}

func sha256hex(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// TestRolloutThreeWaves: a three-wave rollout (1, 2, rest) started over
// the operator API completes; each wave starts only once the previous one
// confirmed, and a device of a later wave installs nothing before.
func TestRolloutThreeWaves(t *testing.T) {
	for name, dsn := range fleetBackends(t) {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, dsn(t))
			img, tg := f.addRelease("2.0", 2)
			f.publish()
			ids := []string{"gw-1", "gw-2", "gw-3", "gw-4", "gw-5", "gw-6"}
			for _, id := range ids {
				f.addDevice(id, map[string]string{"site": "berlin"}, false)
			}
			f.addDevice("other-1", map[string]string{"site": "paris"}, false)
			f.mustCall("POST", "rollouts", map[string]any{"id": "r1", "target": tg.Path, "filter": map[string]string{"site": "berlin"},
				"waves": []map[string]any{{"count": 1}, {"count": 2}, {"count": 3}}, "success_threshold": 1.0, "failure_threshold": 0.2})
			if out := f.mustCall("POST", "rollouts/r1/start", nil); out["status"] != "running" {
				t.Fatalf("start: %v", out)
			}
			wave := func(w int) []string {
				st, _ := f.db.Status(context.Background(), "r1")
				var out []string
				for _, d := range st.Devices {
					if d.Wave == w {
						out = append(out, d.ID)
					}
				}
				return out
			}
			w1, w2, w3 := wave(0), wave(1), wave(2)
			if len(w1) != 1 || len(w2) != 2 || len(w3) != 3 {
				t.Fatalf("waves %v %v %v, want 1, 2, 3 devices", w1, w2, w3)
			}
			// Wave 1 assigned: a wave 3 device polls first and installs nothing.
			if f.devices[w3[0]].poll() {
				t.Fatalf("%s (wave 3) installed during wave 1", w3[0])
			}
			for round, w := range [][]string{w1, w2, w3} {
				for _, id := range w {
					if !f.devices[id].poll() {
						t.Fatalf("round %d: %s installed nothing", round+1, id)
					}
				}
				st := f.reconcile("r1")
				if round < 2 && (st.Status != rollout.Running || st.Wave != round+1) {
					t.Fatalf("after wave %d: %s wave %d (%s)", round+1, st.Status, st.Wave+1, st.Reason)
				}
				if round == 0 && f.devices[w3[1]].poll() {
					t.Fatalf("%s (wave 3) installed during wave 2", w3[1])
				}
			}
			st := f.reconcile("r1")
			if st.Status != rollout.Completed || st.Counts[0].Succeeded != 1 || st.Counts[1].Succeeded != 2 || st.Counts[2].Succeeded != 3 {
				t.Fatalf("status %s %+v (%s), want completed with every device succeeded", st.Status, st.Counts, st.Reason)
			}
			if !f.runs(img, ids...) || f.runs(img, "other-1") || f.devices["other-1"].poll() {
				t.Fatal("the rollout did not install exactly its group")
			}
			// The event history has every attempt, not only the latest.
			h, err := f.db.History(context.Background(), "gw-1", 0)
			if err != nil || len(h) < 2 || h[0].Outcome != manifests.OutcomeConfirmed {
				t.Fatalf("history of gw-1: %+v, %v", h, err)
			}
			if dev, _ := f.db.Device(context.Background(), "gw-1"); dev.Identity != inventory.IdentityFile {
				t.Errorf("identity %q, want file", dev.Identity)
			}
		})
	}
}

// TestRolloutHaltsOnFailures: the second wave's devices fail their health
// check (fall back) above the failure threshold: the rollout halts by
// itself, says why, withdraws the release from the wave's device that had
// not started, and the third wave never installs.
func TestRolloutHaltsOnFailures(t *testing.T) {
	for name, dsn := range fleetBackends(t) {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, dsn(t))
			img, tg := f.addRelease("2.0", 2)
			f.publish()
			// Wave 1: gw-1; wave 2: gw-2, gw-3 (unhealthy), gw-4; wave 3: gw-5, gw-6.
			for i := 1; i <= 6; i++ {
				f.addDevice(fmt.Sprintf("gw-%d", i), map[string]string{"ring": "all"}, i == 2 || i == 3)
			}
			if _, err := f.svc.Create(context.Background(), "r2", rollout.Spec{Target: tg.Path, Filter: map[string]string{"ring": "all"},
				Waves: []rollout.WaveSize{{Count: 1}, {Count: 3}, {Count: 2}}, SuccessThreshold: 1, FailureThreshold: 0.5}, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Act(context.Background(), "r2", rollout.Start, "test"); err != nil {
				t.Fatal(err)
			}
			f.devices["gw-1"].poll()
			if st := f.reconcile("r2"); st.Wave != 1 {
				t.Fatalf("wave 1 done: at wave %d, %s", st.Wave+1, st.Status)
			}
			f.devices["gw-2"].poll()
			if st := f.reconcile("r2"); st.Status != rollout.Running {
				t.Fatalf("one failure of 3 (threshold 50%%): %s, %s", st.Status, st.Reason)
			}
			f.devices["gw-3"].poll()
			st := f.reconcile("r2")
			if st.Status != rollout.Halted || !strings.Contains(st.Reason, "wave 2: 2 of 3 devices failed") || !strings.Contains(st.Reason, "gw-2: unhealthy") {
				t.Fatalf("status %s reason %q, want halted with the failures", st.Status, st.Reason)
			}
			if st.Counts[1].Withdrawn != 1 || st.Counts[2].Pending != 2 {
				t.Fatalf("counts %+v: want gw-4 withdrawn and wave 3 never started", st.Counts)
			}
			for _, id := range []string{"gw-4", "gw-5", "gw-6"} {
				if f.devices[id].poll() || f.runs(img, id) {
					t.Fatalf("%s installed after the halt", id)
				}
			}
			if st := f.reconcile("r2"); st.Status != rollout.Halted {
				t.Fatalf("after more reports: %s", st.Status)
			}
			if code, out := f.call("POST", "rollouts/r2/resume", f.operator, nil); code != http.StatusConflict {
				t.Fatalf("resume a halted rollout: %d %v, want 409", code, out)
			}
		})
	}
}

// TestRolloutForgedReports: reports that are forged (signed by another
// key) or replayed (a genuine report sent again) are refused, and neither
// advances nor halts a rollout.
func TestRolloutForgedReports(t *testing.T) {
	for name, dsn := range fleetBackends(t) {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, dsn(t))
			_, tg := f.addRelease("2.0", 2)
			f.publish()
			for _, id := range []string{"gw-1", "gw-2"} {
				f.addDevice(id, map[string]string{"ring": "all"}, false)
			}
			target := tg.Path
			if _, err := f.svc.Create(context.Background(), "r3", rollout.Spec{Target: target, Filter: map[string]string{"ring": "all"},
				Waves: []rollout.WaveSize{{Count: 1}, {Count: 1}}, SuccessThreshold: 1, FailureThreshold: 0}, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Act(context.Background(), "r3", rollout.Start, "test"); err != nil {
				t.Fatal(err)
			}
			st := f.reconcile("r3")
			first := st.Devices[0].ID
			if st.Devices[0].Wave != 0 {
				first = st.Devices[1].ID
			}
			// A genuine report, as sent, to replay later.
			f.devices[first].report()
			f.mu.Lock()
			genuine := f.captured[len(f.captured)-1]
			f.mu.Unlock()
			attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			post := func(body []byte) int {
				resp, err := http.Post(f.url+manifests.ManifestPath, "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			forged := func(outcome string) []byte {
				resp, err := http.Get(f.url + manifests.NoncePath)
				if err != nil {
					t.Fatal(err)
				}
				var nr manifests.NonceResponse
				_ = json.NewDecoder(resp.Body).Decode(&nr)
				resp.Body.Close()
				m, err := f.devices[first].ag.Manifest(context.Background(), first, nr.Nonce)
				if err != nil {
					t.Fatal(err)
				}
				a := manifests.InstallResult{At: time.Now().UTC().Add(time.Minute), Target: target, Version: "2.0", Outcome: outcome}
				m.Attempts, m.LastResult = append(m.Attempts, a), &a
				env, err := manifests.SignDeviceManifest(m, attacker)
				if err != nil {
					t.Fatal(err)
				}
				return env
			}
			for name, body := range map[string][]byte{
				"forged success": forged(manifests.OutcomeConfirmed),
				"forged failure": forged(manifests.OutcomeFailed),
				"replayed":       genuine,
			} {
				if code := post(body); code != http.StatusForbidden {
					t.Errorf("%s report: %d, want 403", name, code)
				}
				if st := f.reconcile("r3"); st.Status != rollout.Running || st.Counts[0].Assigned != 1 {
					t.Fatalf("after a %s report: %s %+v (%s), want running with the device assigned", name, st.Status, st.Counts, st.Reason)
				}
			}
			if h, _ := f.db.History(context.Background(), first, 0); len(h) != 0 {
				t.Fatalf("refused reports reached the history: %+v", h)
			}
			// The genuine device then completes it.
			f.devices[first].poll()
			if st := f.reconcile("r3"); st.Status != rollout.Running || st.Wave != 1 {
				t.Fatalf("after the genuine report: %s wave %d", st.Status, st.Wave+1)
			}
		})
	}
}

// TestOperatorAPIAuth: every operator request needs a token (401 without
// or with a wrong or revoked one), changes need the operator role (403 for
// a viewer); the device API stays open.
func TestOperatorAPIAuth(t *testing.T) {
	f := newFleet(t, filepath.Join(t.TempDir(), "fleet.db"))
	_, tg := f.addRelease("2.0", 2)
	f.publish()
	f.addDevice("gw-1", map[string]string{"ring": "all"}, false)
	create := map[string]any{"id": "r4", "target": tg.Path, "success_threshold": 1}
	for _, tc := range []struct {
		method, path, token string
		body                any
		want                int
	}{
		{"GET", "devices", "", nil, 401},
		{"GET", "nowhere", "", nil, 401},
		{"POST", "rollouts", "", create, 401},
		{"POST", "devices/gw-1/tags", "", map[string]any{"set": map[string]string{"a": "b"}}, 401},
		{"DELETE", "devices/gw-1", "", nil, 401},
		{"POST", "rollouts", "fwop_forged", create, 401},
		{"POST", "rollouts", f.viewer, create, 403},
		{"POST", "devices/gw-1/tags", f.viewer, map[string]any{"set": map[string]string{"a": "b"}}, 403},
		{"DELETE", "devices/gw-1", f.viewer, nil, 403},
		{"GET", "devices", f.viewer, nil, 200},
		{"GET", "devices/gw-1/history", f.viewer, nil, 200},
		{"POST", "rollouts", f.operator, create, 201},
		{"POST", "rollouts/r4/start", f.viewer, nil, 403},
		{"POST", "rollouts/r4/start", f.operator, nil, 200},
		{"POST", "devices/gw-1/tags", f.operator, map[string]any{"set": map[string]string{"site": "berlin"}}, 200},
	} {
		if code, out := f.call(tc.method, tc.path, tc.token, tc.body); code != tc.want {
			t.Errorf("%s %s (token %.9s): %d %v, want %d", tc.method, tc.path, tc.token, code, out, tc.want)
		}
	}
	if err := f.db.RevokeToken(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if code, _ := f.call("GET", "devices", f.operator, nil); code != 401 {
		t.Errorf("revoked token: %d, want 401", code)
	}
	// Device endpoints need no operator token.
	resp, err := http.Get(f.url + manifests.NoncePath)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("nonce: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestRolloutApprovalPauseResume: with an approval step, start assigns
// nothing until approved by an operator other than the creator (the
// creator's own approval is refused with 403); pause withdraws the release from a device that
// has not started (its poll finds nothing assigned), resume assigns it
// again, and the rollout completes.
func TestRolloutApprovalPauseResume(t *testing.T) {
	f := newFleet(t, filepath.Join(t.TempDir(), "fleet.db"))
	img, tg := f.addRelease("2.0", 2)
	f.publish()
	d := f.addDevice("gw-1", map[string]string{"ring": "all"}, false)
	f.mustCall("POST", "rollouts", map[string]any{"id": "r5", "target": tg.Path, "success_threshold": 1, "approval": true,
		"maintenance": map[string]any{"windows": []string{"daily 00:00-23:59"}, "timezone": "UTC"}})
	if out := f.mustCall("POST", "rollouts/r5/start", nil); out["status"] != string(rollout.WaitingApproval) {
		t.Fatalf("start with approval: %v", out)
	}
	if d.poll() {
		t.Fatal("installed before the approval")
	}
	// The approval is a second operator's: alice created the rollout.
	if code, out := f.call("POST", "rollouts/r5/approve", f.operator, nil); code != http.StatusForbidden || !strings.Contains(fmt.Sprint(out), "second operator") {
		t.Fatalf("the creator's own approval: %d %v, want 403", code, out)
	}
	if d.poll() {
		t.Fatal("installed after the creator's own approval")
	}
	bob, _, err := f.db.CreateToken(context.Background(), "bob", inventory.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	if code, out := f.call("POST", "rollouts/r5/approve", bob, nil); code != 200 || out["status"] != string(rollout.Running) || out["approved_by"] != "bob" {
		t.Fatalf("bob's approval: %d %v", code, out)
	}
	a, err := f.dir.Current(context.Background(), "gw-1")
	if err != nil || a == nil || a.Maintenance == nil || a.Maintenance.Timezone != "UTC" || !strings.Contains(string(a.Custom), `"rollout":"r5"`) {
		t.Fatalf("assignment %+v, %v: want the rollout's window and ID", a, err)
	}
	f.mustCall("POST", "rollouts/r5/pause", nil)
	if st := f.reconcile("r5"); st.Counts[0].Pending != 1 || !strings.Contains(st.Reason, "paused by alice") {
		t.Fatalf("paused: %+v %q", st.Counts, st.Reason)
	}
	if d.poll() {
		t.Fatal("installed while paused")
	}
	f.mustCall("POST", "rollouts/r5/resume", nil)
	if !d.poll() {
		t.Fatal("nothing installed after resume")
	}
	if st := f.reconcile("r5"); st.Status != rollout.Completed || !f.runs(img, "gw-1") {
		t.Fatalf("after resume: %s %+v", st.Status, st.Counts)
	}
}

// TestRolloutCrossAgent: a rollout's first wave is a device whose fwagent
// is the arm64 release build under qemu-aarch64 (file identity, director):
// it installs the assigned release, confirms and reports with the real
// binary, and its signed report starts the second wave (an amd64 device
// in-process).
func TestRolloutCrossAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles fwagent for arm64 and runs it under qemu-user; skipped with -short")
	}
	arch := shipped[1]
	if arch.name != "arm64" {
		t.Fatalf("shipped[1] is %s, want arm64", arch.name)
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "build-agent.sh"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "fwagent-linux-arm64")
	if out, err := exec.Command(script, arch.goarch, bin, arch.goarm).CombinedOutput(); err != nil {
		t.Fatalf("build fwagent for arm64: %v\n%s", err, out)
	}
	a := newCrossAgent(t, arch, bin)
	f := newFleet(t, filepath.Join(t.TempDir(), "fleet.db"))
	img, tg := f.addRelease("2.0", 2)
	f.publish()
	f.url = f.serve()
	// The emulated device: its own directory, run by the arm64 binary.
	cfg := harness.DeviceConfig(f.url)
	cfg["bootloader"] = map[string]any{"type": "file", "path": "bootenv", "tries": 3}
	cfg["director"] = map[string]any{"root": f.rootPath, "device_id": "arm-1"}
	cfg["identity"] = map[string]any{"key_file": "state/identity.key"}
	cfg["report"] = map[string]any{"device_id": "arm-1"}
	hd, err := harness.WriteDevice(t.TempDir(), cfg, []byte("factory image"))
	if err != nil {
		t.Fatal(err)
	}
	a.dir = hd.Dir
	root := filepath.Join(hd.Dir, "1.root.json")
	if err := os.WriteFile(root, f.rootJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	a.run(0, "provision", "--root", root)
	pemBytes := a.run(0, "identity", "--pem")
	if _, _, err := f.db.AddDevice(context.Background(), "arm-1", pemBytes, inventory.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.db.SetTags(context.Background(), "arm-1", map[string]string{"ring": "all"}); err != nil {
		t.Fatal(err)
	}
	a.run(0, "report")
	f.addDevice("x86-1", map[string]string{"ring": "all"}, false)
	if _, err := f.svc.Create(context.Background(), "r6", rollout.Spec{Target: tg.Path, Filter: map[string]string{"ring": "all"},
		Waves: []rollout.WaveSize{{Count: 1}, {Count: 1}}, SuccessThreshold: 1}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Act(context.Background(), "r6", rollout.Start, "test"); err != nil {
		t.Fatal(err)
	}
	st, _ := f.db.Status(context.Background(), "r6")
	if st.Devices[0].ID != "arm-1" || st.Devices[0].Wave != 0 {
		t.Fatalf("devices %+v: want arm-1 in wave 1", st.Devices)
	}
	if f.devices["x86-1"].poll() {
		t.Fatal("the wave 2 device installed during wave 1")
	}
	a.update("B")
	a.boot("B")
	a.run(0, "confirm")
	a.run(0, "report")
	if st := f.reconcile("r6"); st.Status != rollout.Running || st.Wave != 1 || st.Counts[0].Succeeded != 1 {
		t.Fatalf("after the arm64 device's report: %s wave %d %+v", st.Status, st.Wave+1, st.Counts)
	}
	if dev, _ := f.db.Device(context.Background(), "arm-1"); dev.Identity != inventory.IdentityFile || dev.Manifest.Running().SHA256 != sha256hex(img) {
		t.Fatalf("arm-1: identity %s, running %+v", dev.Identity, dev.Manifest.Running())
	}
	if !f.devices["x86-1"].poll() {
		t.Fatal("the wave 2 device installed nothing")
	}
	if st := f.reconcile("r6"); st.Status != rollout.Completed {
		t.Fatalf("status %s", st.Status)
	}
}
