// Package test holds end-to-end tests across fwctl, fwrepo and fwagent:
// release → publish → serve → verify → install flows and attack scenarios.
package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/boot"
	"github.com/fwctl/fwctl/agent/bootenv"
	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/test/harness"
)

const hw = "acme-gw-v2"

// release is a signing workspace plus its published, served repository
// (harness.Release, under the names these tests use).
type release struct {
	t   *testing.T
	h   *harness.Release
	ws  *repo.Workspace
	pub string
	// wrap, when set, intercepts requests before the repository handler.
	wrap func(w http.ResponseWriter, r *http.Request, next http.Handler)
}

func newRelease(t *testing.T) *release {
	t.Helper()
	return wrapRelease(t, harness.NewRelease(t))
}

// releaseOf is a release over a workspace a test made itself (other keys,
// other options), publishing to pub.
func releaseOf(t *testing.T, ws *repo.Workspace, pub string) *release {
	t.Helper()
	return wrapRelease(t, &harness.Release{T: t, WS: ws, Dir: t.TempDir(), Pub: pub})
}

func wrapRelease(t *testing.T, h *harness.Release) *release {
	r := &release{t: t, h: h, ws: h.WS, pub: h.Pub}
	h.Wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if r.wrap != nil {
			r.wrap(w, req, next)
			return
		}
		next.ServeHTTP(w, req)
	}
	return r
}

// add writes a random image of n bytes and stages it.
func (r *release) add(version string, counter uint64, n int, hardware ...string) []byte {
	r.t.Helper()
	img := make([]byte, n)
	rand.Read(img)
	r.h.Add(img, repo.AddOptions{Hardware: hardware, Version: version, Counter: counter, Force: true})
	return img
}

func (r *release) publish() { r.t.Helper(); r.h.Publish() }

func (r *release) serve() string { r.t.Helper(); return r.h.Serve() }

func (r *release) rootJSON() []byte { r.t.Helper(); return r.h.Root() }

// device is a simulated device with two file slots.
type device struct {
	t     *testing.T
	dir   string
	cfg   *agent.Config
	ag    *agent.Agent
	store trust.Store
}

func newDevice(t *testing.T, url, hardware string) *device {
	t.Helper()
	cfg := harness.DeviceConfig(url)
	cfg["hardware"] = hardware
	cfg["bootloader"] = map[string]any{"type": "file", "path": "bootenv", "tries": 3}
	cfg["stall_timeout"], cfg["download_attempts"], cfg["retry_backoff"] = "2s", 3, "50ms"
	hd, err := harness.WriteDevice(t.TempDir(), cfg, []byte("factory image"))
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, dir: hd.Dir}
	d.reload()
	return d
}

func (d *device) reload() {
	d.t.Helper()
	cfg, err := agent.LoadConfig(filepath.Join(d.dir, "config.json"))
	if err != nil {
		d.t.Fatal(err)
	}
	d.cfg = cfg
	d.store = trust.File{Dir: filepath.Join(cfg.StateDir, "trust")}
	d.ag, err = agent.New(cfg, d.store, nil)
	if err != nil {
		d.t.Fatal(err)
	}
}

func (d *device) provision(root []byte) {
	d.t.Helper()
	if _, err := d.ag.Provision(context.Background(), root); err != nil {
		d.t.Fatal(err)
	}
}

// boot simulates a reboot: the bootloader picks a slot and "boots" it.
func (d *device) boot() string {
	d.t.Helper()
	slot, err := d.ag.SimulateBoot()
	if err != nil {
		d.t.Fatal(err)
	}
	return slot
}

func (d *device) update() (*agent.UpdateResult, error) {
	return d.ag.Update(context.Background(), agent.UpdateOptions{})
}

func (d *device) mustInstall(img []byte) {
	d.t.Helper()
	res, err := d.update()
	if err != nil {
		d.t.Fatal(err)
	}
	if !res.Installed {
		d.t.Fatalf("nothing installed: %s", res.Message)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		d.t.Fatal(err)
	}
	d.assertRunning(img)
}

// assertRunning checks that the running slot holds img.
func (d *device) assertRunning(img []byte) {
	d.t.Helper()
	st, err := d.ag.Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	got, _ := os.ReadFile(d.cfg.Slots[st.BootedSlot])
	if !bytes.Equal(got, img) {
		d.t.Fatalf("running slot %s does not hold the expected image (%d bytes, want %d)", st.BootedSlot, len(got), len(img))
	}
}

// snapshot captures what must not change when an update is refused: the
// running slot's bytes, the bootloader's next choice and its environment.
type snapshot struct {
	running  string
	image    []byte
	inactive []byte // the other slot's bytes
	env      map[string]string
	primary  string
	counter  uint64
}

func (d *device) snap() snapshot {
	d.t.Helper()
	st, err := d.ag.Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	img, _ := os.ReadFile(d.cfg.Slots[st.BootedSlot])
	env, err := bootenv.File{Path: d.cfg.Bootloader.Path}.Load()
	if err != nil || len(env) == 0 {
		d.t.Fatalf("read the boot environment %s: %v (%d variables)", d.cfg.Bootloader.Path, err, len(env))
	}
	primary, _, _ := d.ag.Switch().Primary()
	other, _ := os.ReadFile(d.cfg.Slots[d.other(st.BootedSlot)])
	return snapshot{running: st.BootedSlot, image: img, inactive: other, env: env, primary: primary, counter: st.Counter}
}

// other is the slot that is not slot.
func (d *device) other(slot string) string {
	for _, s := range d.cfg.SlotNames() {
		if s != slot {
			return s
		}
	}
	d.t.Fatalf("no slot other than %s", slot)
	return ""
}

// refusedEnv is the environment a refused update may leave: the same as
// before if it wrote nothing, or, if it wrote into the inactive slot, the
// same with only that slot disabled (what the agent does before writing).
func (d *device) refusedEnv(before snapshot, inactiveWritten bool) map[string]string {
	d.t.Helper()
	if !inactiveWritten {
		return before.env
	}
	tmp := bootenv.File{Path: filepath.Join(d.t.TempDir(), "bootenv")}
	if err := tmp.Save(before.env); err != nil {
		d.t.Fatal(err)
	}
	sw := &boot.Switch{Env: tmp, Slots: d.cfg.SlotNames(), Tries: d.cfg.Bootloader.Tries}
	if err := sw.Disable(d.other(before.running)); err != nil {
		d.t.Fatal(err)
	}
	want, err := tmp.Load()
	if err != nil {
		d.t.Fatal(err)
	}
	return want
}

// assertUnchanged checks the device still boots the same slot with the same
// image and counter, and that the boot environment is unchanged but for
// disabling the inactive slot if the update wrote into it.
func (d *device) assertUnchanged(before snapshot) {
	d.t.Helper()
	after := d.snap()
	if after.running != before.running || !bytes.Equal(after.image, before.image) {
		d.t.Fatalf("running slot changed: %s -> %s", before.running, after.running)
	}
	if after.primary != before.primary {
		d.t.Fatalf("bootloader's next slot changed: %s -> %s", before.primary, after.primary)
	}
	if after.counter != before.counter {
		d.t.Fatalf("counter changed: %d -> %d", before.counter, after.counter)
	}
	written := !bytes.Equal(after.inactive, before.inactive)
	if want := d.refusedEnv(before, written); !maps.Equal(after.env, want) {
		d.t.Fatalf("a refused update left the boot environment %v, want %v (before: %v; inactive slot written: %v)", after.env, want, before.env, written)
	}
	if slot := d.boot(); slot != before.running {
		d.t.Fatalf("after a reboot the device runs slot %s, want %s", slot, before.running)
	}
	d.assertRunning(before.image)
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		d.t.Fatal(err)
	}
}

var _ = time.Second

// deviceAPI opens a fresh inventory and serves its device API under /api/
// beside the repository; every other request goes to rest (nil: the
// repository). It returns the inventory.
func (r *release) deviceAPI(t *testing.T, rest func(w http.ResponseWriter, req *http.Request, next http.Handler)) *inventory.DB {
	t.Helper()
	db, err := inventory.Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	api := inventory.Handler(db, nil)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		switch {
		case strings.HasPrefix(req.URL.Path, "/api/"):
			api.ServeHTTP(w, req)
		case rest != nil:
			rest(w, req, next)
		default:
			next.ServeHTTP(w, req)
		}
	}
	return db
}
