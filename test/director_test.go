package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/online/director"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/test/harness"
)

// directed is a release served together with a director (the real
// repo/online/director publishing into the release's store, served by
// director.Handler in front of fwrepo's server).
type directed struct {
	*release
	dir      *director.Director
	rootPath string // the director's 1.root.json
	opt      director.Options
	url      string // set by device
}

func newDirected(t *testing.T) *directed {
	t.Helper()
	r := newRelease(t)
	keys := t.TempDir()
	res, err := director.Init(director.InitOptions{Out: keys}) // plaintext test keys
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(res.Root)
	if err != nil {
		t.Fatal(err)
	}
	st := blob.Dir(r.pub)
	opt := director.Options{Store: st, KeyURI: res.OnlineKey, TrustedRoot: root}
	d, err := director.Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		director.Handler(st, next).ServeHTTP(w, req)
	}
	return &directed{release: r, dir: d, rootPath: res.Root, opt: opt}
}

// addRelease stages and returns a random full image and its target.
func (dr *directed) addRelease(version string, counter uint64) ([]byte, *verify.Target) {
	dr.t.Helper()
	img := make([]byte, 8192)
	rand.Read(img)
	tg := dr.h.Add(img, repo.AddOptions{Version: version, Counter: counter, Force: true, Name: "fw-" + version + ".img"})
	return img, tg
}

func (dr *directed) assign(id string, tg *verify.Target) {
	dr.t.Helper()
	a, err := director.ForTarget(id, hw, *tg)
	if err != nil {
		dr.t.Fatal(err)
	}
	if err := dr.dir.Assign(context.Background(), []director.Assignment{a}); err != nil {
		dr.t.Fatal(err)
	}
}

// device is a provisioned device configured for the director
// under device ID id.
func (dr *directed) device(id string) *device {
	dr.t.Helper()
	dr.url = dr.serve()
	return dr.deviceAt(dr.url, id)
}

// deviceAt is a provisioned director device whose repository and
// director URL are both url (fwrepo itself, or a site mirror).
func (dr *directed) deviceAt(url, id string) *device {
	t := dr.t
	t.Helper()
	cfg := harness.DeviceConfig(url)
	cfg["bootloader"] = map[string]any{"type": "file", "path": "bootenv", "tries": 3}
	cfg["stall_timeout"], cfg["download_attempts"], cfg["retry_backoff"] = "2s", 3, "50ms"
	cfg["director"] = map[string]any{"root": dr.rootPath, "device_id": id}
	hd, err := harness.WriteDevice(t.TempDir(), cfg, []byte("factory image"))
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, dir: hd.Dir}
	d.reload()
	d.provision(dr.rootJSON())
	return d
}

// TestDirectorChoosesTheRelease: the image repository offers 1.0 and 2.0;
// the director assigns 1.0 to one device and nothing to another: the first
// installs 1.0 (not the newer 2.0), the second installs nothing, and a
// device without a director takes 2.0 as before.
func TestDirectorChoosesTheRelease(t *testing.T) {
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	img2, _ := dr.addRelease("2.0", 2)
	dr.publish()
	dr.assign("dev-1", tg1)

	d1 := dr.device("dev-1")
	d1.mustInstall(img1)
	if res, err := d1.update(); err != nil || res.Installed || !res.UpToDate {
		t.Fatalf("second update: %+v, %v", res, err)
	}

	d2 := dr.device("dev-2")
	before := d2.snap()
	res, err := d2.update()
	if err != nil || res.Installed || !res.UpToDate || !strings.Contains(res.Message, "not assigned") {
		t.Fatalf("unassigned device: %+v, %v", res, err)
	}
	d2.assertUnchanged(before)

	plain := newDevice(t, dr.serve(), hw)
	plain.provision(dr.rootJSON())
	plain.mustInstall(img2)

	// A halted rollout: the director unassigns; dev-1 stays where it is.
	if err := dr.dir.Unassign(context.Background(), []string{"dev-1"}); err != nil {
		t.Fatal(err)
	}
	if res, err := d1.update(); err != nil || res.Installed || !strings.Contains(res.Message, "not assigned") {
		t.Fatalf("after Unassign: %+v, %v", res, err)
	}
}

// TestDirectorAloneCannotInstall: a director (its online key compromised)
// names a release the image repository never signed, or a signed path with
// another hash, length or counter: the device refuses, its slots unchanged.
func TestDirectorAloneCannotInstall(t *testing.T) {
	dr := newDirected(t)
	_, tg1 := dr.addRelease("1.0", 1)
	dr.publish()
	evil := strings.Repeat("e", 64)
	for name, mod := range map[string]func(a *director.Assignment){
		"unsigned target": func(a *director.Assignment) { a.TargetName = "acme-gw-v2/9.9/evil.img" },
		"another hash":    func(a *director.Assignment) { a.Hashes = map[string]string{"sha256": evil} },
		"another length":  func(a *director.Assignment) { a.Length++ },
		"another counter": func(a *director.Assignment) { a.Counter = 99 },
	} {
		t.Run(name, func(t *testing.T) {
			a, err := director.ForTarget("dev-"+strings.ReplaceAll(name, " ", "-"), hw, *tg1)
			if err != nil {
				t.Fatal(err)
			}
			mod(&a)
			if err := dr.dir.Assign(context.Background(), []director.Assignment{a}); err != nil {
				t.Fatal(err)
			}
			dr.t = t
			d := dr.device(a.DeviceID)
			before := d.snap()
			_, err = d.update()
			if !errors.Is(err, agent.ErrRefused) || !strings.Contains(err.Error(), "disagree") {
				t.Fatalf("update = %v, want a refusal: the director and the image repository disagree", err)
			}
			d.assertUnchanged(before)
		})
	}
}

// TestDirectorReplayRefused: after the device saw director metadata v2, an
// attacker serves the older v1 (which assigned another release): refused.
func TestDirectorReplayRefused(t *testing.T) {
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	_, tg2 := dr.addRelease("2.0", 2)
	dr.publish()
	dr.assign("dev-1", tg2)
	tsPath := filepath.Join(dr.pub, "director", "devices", "dev-1", "metadata", "timestamp.json")
	old, err := os.ReadFile(tsPath)
	if err != nil {
		t.Fatal(err)
	}
	dr.assign("dev-1", tg1)
	d := dr.device("dev-1")
	d.mustInstall(img1)
	if err := os.WriteFile(tsPath, old, 0o644); err != nil {
		t.Fatal(err)
	}
	before := d.snap()
	_, err = d.update()
	if !errors.Is(err, agent.ErrRefused) || !errors.Is(err, tuf.ErrRollback) {
		t.Fatalf("update with replayed director metadata = %v, want a rollback refusal", err)
	}
	d.assertUnchanged(before)
}

// TestDirectorOtherDevicesMetadata: director metadata signed for another
// device (a mix-and-match by the network) is refused.
func TestDirectorOtherDevicesMetadata(t *testing.T) {
	dr := newDirected(t)
	_, tg1 := dr.addRelease("1.0", 1)
	dr.publish()
	dr.assign("dev-2", tg1)
	// The network answers dev-1's requests with dev-2's metadata.
	inner := dr.wrap
	dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		req.URL.Path = strings.Replace(req.URL.Path, "/devices/dev-1/", "/devices/dev-2/", 1)
		inner(w, req, next)
	}
	d := dr.device("dev-1")
	before := d.snap()
	_, err := d.update()
	if !errors.Is(err, agent.ErrRefused) || !strings.Contains(err.Error(), `for device "dev-2"`) {
		t.Fatalf("update with another device's metadata = %v", err)
	}
	d.assertUnchanged(before)
}

// TestDeferredOutsideWindow: a device whose maintenance window (its own,
// or the director assignment's) is closed defers: nothing written, a
// "deferred" attempt (not "failed"), and it installs once the window opens.
func TestDeferredOutsideWindow(t *testing.T) {
	now := time.Now().UTC()
	window := func(from time.Time) string { // one hour from from's hour, daily, UTC
		return fmt.Sprintf("daily %02d:00-%02d:00", from.Hour(), (from.Hour()+1)%24)
	}
	later := now.Add(3 * time.Hour)
	inWindow := time.Date(later.Year(), later.Month(), later.Day(), later.Hour(), 30, 0, 0, time.UTC)
	for _, where := range []string{"device", "director"} {
		t.Run(where, func(t *testing.T) {
			dr := newDirected(t)
			img1, tg1 := dr.addRelease("1.0", 1)
			dr.publish()
			a, err := director.ForTarget("dev-1", hw, *tg1)
			if err != nil {
				t.Fatal(err)
			}
			m := &manifests.Maintenance{Windows: []string{window(later)}, Timezone: "UTC"}
			if where == "director" {
				a.Maintenance = m
			}
			if err := dr.dir.Assign(context.Background(), []director.Assignment{a}); err != nil {
				t.Fatal(err)
			}
			dr.t = t
			d := dr.device("dev-1")
			if where == "device" {
				hd := &harness.Device{Dir: d.dir}
				b, _ := os.ReadFile(hd.ConfigPath())
				var cfg map[string]any
				if err := json.Unmarshal(b, &cfg); err != nil {
					t.Fatal(err)
				}
				cfg["maintenance"] = m
				hd.Config = cfg
				if err := hd.WriteConfig(); err != nil {
					t.Fatal(err)
				}
				d.reload()
			}
			before := d.snap()
			res, err := d.update()
			if err != nil || !res.Deferred || res.Installed || !strings.Contains(res.Message, "deferred") {
				t.Fatalf("update outside the window = %+v, %v; want deferred", res, err)
			}
			st, err := d.ag.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(st.History); n == 0 || st.History[n-1].Outcome != manifests.OutcomeDeferred {
				t.Fatalf("attempts %+v, want the last one deferred", st.History)
			}
			d.assertUnchanged(before)
			d.ag.Now = func() time.Time { return inWindow }
			d.mustInstall(img1)
		})
	}
}

// TestDirectorOtherDevicesMetadataNoFreeze: the network serves dev-1 the
// validly signed director metadata of dev-2, whose versions are higher
// (dev-2 was assigned more often), once assigning a release and once
// empty (no assignment, so naming no device). dev-1 refuses it and
// stores none of it: afterwards its own genuine metadata, of lower
// versions, is accepted and its assignment installed. (Before the device
// binding, dev-1 kept dev-2's metadata as trusted and refused its own as
// a rollback until its versions overtook dev-2's.)
func TestDirectorOtherDevicesMetadataNoFreeze(t *testing.T) {
	for _, tc := range []string{"assigned", "empty"} {
		t.Run(tc, func(t *testing.T) {
			dr := newDirected(t)
			img1, tg1 := dr.addRelease("1.0", 1)
			_, tg2 := dr.addRelease("2.0", 2)
			dr.publish()
			dr.t = t
			dr.assign("dev-2", tg1)
			dr.assign("dev-2", tg2)
			dr.assign("dev-2", tg1)
			if tc == "empty" {
				if err := dr.dir.Unassign(context.Background(), []string{"dev-2"}); err != nil {
					t.Fatal(err)
				}
			}
			dr.assign("dev-1", tg1)
			attack := true
			inner := dr.wrap
			dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
				if attack {
					req.URL.Path = strings.Replace(req.URL.Path, "/devices/dev-1/", "/devices/dev-2/", 1)
				}
				inner(w, req, next)
			}
			d := dr.device("dev-1")
			before := d.snap()
			meta := filepath.Join(d.dir, "state", "director", "metadata")
			res, err := d.update()
			if !errors.Is(err, agent.ErrRefused) {
				t.Fatalf("update with dev-2's metadata = %+v, %v; want refused", res, err)
			}
			d.assertUnchanged(before)
			for _, f := range []string{"timestamp.json", "snapshot.json", "targets.json"} {
				if _, err := os.Stat(filepath.Join(meta, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("refused metadata stored as trusted: %s (%v)", f, err)
				}
			}
			attack = false
			d.mustInstall(img1)
		})
	}
}

// TestDirectorOtherDevicesTimestampNoFreeze: dev-2's timestamp was
// re-signed (a higher version) for a snapshot of the same version as
// dev-1's. The network serves dev-1 that timestamp alone, its own
// snapshot and targets otherwise: refused (the timestamp lists another
// snapshot's hash), not stored, and dev-1's own timestamp is accepted
// afterwards. (Before, the cached snapshot's hash was not compared with
// the new timestamp: dev-1 kept dev-2's timestamp and then refused its
// own as a rollback.)
func TestDirectorOtherDevicesTimestampNoFreeze(t *testing.T) {
	dr := newDirected(t)
	img1, tg1 := dr.addRelease("1.0", 1)
	dr.publish()
	dr.assign("dev-2", tg1)
	later := dr.opt
	later.Now = func() time.Time { return time.Now().Add(13 * time.Hour) } // past half the timestamp's lifetime
	d2, err := director.Open(context.Background(), later)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := d2.Refresh(context.Background()); err != nil || res.Timestamps != 1 {
		t.Fatalf("Refresh = %+v, %v; want dev-2's timestamp re-signed", res, err)
	}
	d2.Close()
	dr.assign("dev-1", tg1)
	attack := false
	inner := dr.wrap
	dr.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if attack {
			req.URL.Path = strings.Replace(req.URL.Path, "/devices/dev-1/metadata/timestamp.json", "/devices/dev-2/metadata/timestamp.json", 1)
		}
		inner(w, req, next)
	}
	d := dr.device("dev-1")
	d.mustInstall(img1)
	ts := filepath.Join(d.dir, "state", "director", "metadata", "timestamp.json")
	stored, err := os.ReadFile(ts)
	if err != nil {
		t.Fatal(err)
	}
	attack = true
	if res, err := d.update(); !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("update with dev-2's timestamp = %+v, %v; want refused", res, err)
	}
	if now, err := os.ReadFile(ts); err != nil || !bytes.Equal(now, stored) {
		t.Fatalf("the refused timestamp replaced the stored one (%v)", err)
	}
	attack = false
	if res, err := d.update(); err != nil || !res.UpToDate {
		t.Fatalf("update after the attack = %+v, %v", res, err)
	}
}
