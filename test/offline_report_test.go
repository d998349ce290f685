package test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/test/harness"
)

// identityDevice is a device with a file identity key, provisioned with
// r's root; url is its repository (one that refuses for an offline site).
func identityDevice(t *testing.T, r *release, url string) *device {
	t.Helper()
	cfg := harness.DeviceConfig(url)
	cfg["hardware"] = hw
	cfg["bootloader"] = map[string]any{"type": "file", "path": "bootenv", "tries": 3}
	cfg["identity"] = map[string]any{"key_file": "state/identity.key"}
	hd, err := harness.WriteDevice(t.TempDir(), cfg, []byte("factory image"))
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, dir: hd.Dir}
	d.reload()
	d.provision(r.rootJSON())
	return d
}

// register adds d's identity to db and returns the key.
func (d *device) register(db *inventory.DB) agent.DeviceSigner {
	d.t.Helper()
	key, kind, err := d.ag.IdentityKey(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	pemBytes, err := agent.IdentityPEM(key, kind)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, _, err := db.AddDevice(context.Background(), key.KeyID(), pemBytes, inventory.AddOptions{}); err != nil {
		d.t.Fatal(err)
	}
	return key
}

// reportTo writes an offline report of d into dir and returns its path.
func (d *device) reportTo(key agent.DeviceSigner, dir string) (string, *manifests.DeviceManifest) {
	d.t.Helper()
	res, p, err := d.ag.ReportTo(context.Background(), key, agent.ReportOptions{}, dir)
	if err != nil {
		d.t.Fatal(err)
	}
	return p, res.Manifest
}

// fleetState is what an import may change: the stored report and the
// attempt history of a device.
func fleetState(t *testing.T, db *inventory.DB, id string) (env []byte, history int) {
	t.Helper()
	dev, err := db.Device(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	h, err := db.History(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return dev.Envelope, len(h)
}

// TestOfflineReportImport (issue 17): a device on an offline site writes
// its signed report (with the install attempt) to a directory, fwrepo
// imports it into the fleet view; a replayed, an older, a forged and an
// unknown device's report are refused with clear errors and change
// nothing. Online and offline reports share the sequence: an offline
// report written before an online one is refused after it.
func TestOfflineReportImport(t *testing.T) {
	ctx := context.Background()
	r := newRelease(t)
	p1, img1 := addTarget(r, "1.0.0", 1, 64<<10)
	r.publish()
	db := r.deviceAPI(t, func(w http.ResponseWriter, _ *http.Request, _ http.Handler) {
		http.Error(w, "an offline site", http.StatusServiceUnavailable)
	})
	d := identityDevice(t, r, r.serve())
	key := d.register(db)
	d.mustInstallFrom(writeBundle(t, r, p1), img1)

	stick := filepath.Join(t.TempDir(), "fwctl-reports")
	first, m1 := d.reportTo(key, stick)
	if m1.Nonce != "" || m1.Seq == 0 {
		t.Fatalf("offline report: nonce %q, seq %d; want none and a sequence", m1.Nonce, m1.Seq)
	}
	raw := mustRead(t, first)
	got, err := db.Import(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := db.Device(ctx, key.KeyID())
	if err != nil || dev.Manifest == nil || dev.Manifest.Running().Version != "1.0.0" || got.Seq != m1.Seq {
		t.Fatalf("after import: %+v, %v", dev, err)
	}
	hist, _ := db.History(ctx, key.KeyID(), 0)
	var confirmed bool
	for _, e := range hist {
		confirmed = confirmed || (e.Outcome == manifests.OutcomeConfirmed && e.Version == "1.0.0")
	}
	if !confirmed {
		t.Fatalf("the offline install is not in the attempt history: %+v", hist)
	}

	older, _ := d.reportTo(key, stick)
	newer, _ := d.reportTo(key, stick)
	if _, err := db.Import(ctx, mustRead(t, newer)); err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(mustRead(t, newer), []byte(`"counter":1`), []byte(`"counter":9`), 1)
	if bytes.Equal(forged, mustRead(t, newer)) {
		t.Fatal("the forgery changed nothing")
	}
	other := identityDevice(t, r, "http://127.0.0.1:1")
	okey, _, _ := other.ag.IdentityKey(ctx)
	unknown, _ := other.reportTo(okey, t.TempDir())

	for _, tc := range []struct {
		name, file string
		raw        []byte
		want       error
		msg        string
	}{
		{"replayed", newer, nil, inventory.ErrReplay, "already stored"},
		{"older after newer", older, nil, inventory.ErrReplay, "replayed or older report"},
		{"forged", "", forged, manifests.ErrBadSignature, "modified"},
		{"unknown device", unknown, nil, inventory.ErrUnknownDevice, "fwrepo devices add"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, n := fleetState(t, db, key.KeyID())
			b := tc.raw
			if b == nil {
				b = mustRead(t, tc.file)
			}
			_, err := db.Import(ctx, b)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("import: %v, want %v saying %q", err, tc.want, tc.msg)
			}
			env2, n2 := fleetState(t, db, key.KeyID())
			if !bytes.Equal(env, env2) || n != n2 {
				t.Fatal("a refused report changed the stored report or the history")
			}
		})
	}

	// One sequence online and offline: a report written to the stick
	// before the device reported online is older than what fwrepo holds.
	stale, _ := d.reportTo(key, stick)
	if res, err := d.ag.Report(ctx, key, agent.ReportOptions{}); err != nil || res.Manifest.Seq == 0 {
		t.Fatalf("online report: %+v, %v", res, err)
	}
	if _, err := db.Import(ctx, mustRead(t, stale)); !errors.Is(err, inventory.ErrReplay) {
		t.Fatalf("an offline report older than the online one: %v, want ErrReplay", err)
	}
	if ents, _ := os.ReadDir(stick); len(ents) != 4 {
		t.Fatalf("%d files in the report directory, want 4: %v", len(ents), ents)
	}
}
