package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/tpm"
	"github.com/fwctl/fwctl/tpm/tpmtest"
)

// reporting is a release served together with fwrepo's device API, and a
// device with a TPM (swtpm) that runs v1 and is registered by its key.
type reporting struct {
	r   *release
	d   *device
	db  *inventory.DB
	key *tpm.Key
	sim *tpmtest.Sim
	url string
}

func newReporting(t *testing.T) *reporting {
	t.Helper()
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	db := r.deviceAPI(t, nil)
	d := newDevice(t, r.serve(), hw)
	sim := useTPM(t, d)
	d.provision(r.rootJSON())
	d.mustInstall(v1)
	key, err := d.store.(*tpm.TPM).DeviceKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.AddDevice(context.Background(), key.KeyID(), key.PublicKeyPEM(), inventory.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	return &reporting{r: r, d: d, db: db, key: key, sim: sim, url: r.serve()}
}

// nonce fetches a fresh nonce from fwrepo.
func (rp *reporting) nonce(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(rp.url + manifests.NoncePath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var nr manifests.NonceResponse
	if err := json.NewDecoder(resp.Body).Decode(&nr); err != nil {
		t.Fatal(err)
	}
	return nr.Nonce
}

// post sends env to fwrepo and returns the HTTP status and reply.
func (rp *reporting) post(t *testing.T, env []byte) (int, manifests.ReportResponse) {
	t.Helper()
	resp, err := http.Post(rp.url+manifests.ManifestPath, "application/json", bytes.NewReader(env))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rr manifests.ReportResponse
	json.NewDecoder(resp.Body).Decode(&rr)
	return resp.StatusCode, rr
}

// TestReportSignedByTPM: the agent's report, signed inside swtpm, verifies
// at fwrepo, which keeps it as the device's latest.
func TestReportSignedByTPM(t *testing.T) {
	rp := newReporting(t)
	res, err := rp.d.ag.Report(context.Background(), rp.key, agent.ReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Accepted || res.DeviceID != rp.key.KeyID() {
		t.Fatalf("report: %+v", res)
	}
	dev, err := rp.db.Device(context.Background(), rp.key.KeyID())
	if err != nil {
		t.Fatal(err)
	}
	m := dev.Manifest
	if m == nil || m.RunningSlot != "B" || m.Running().Version != "1.0.0" || m.Counter != 1 ||
		m.Hardware != hw || m.LastResult == nil || m.LastResult.Outcome != manifests.OutcomeConfirmed {
		t.Fatalf("stored manifest: %+v", m)
	}
	// The stored envelope verifies again, offline, under the registered key.
	s, err := manifests.ParseDeviceManifest(dev.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(rp.key.Public()); err != nil {
		t.Fatalf("stored envelope: %v", err)
	}
}

// TestReportForgeriesRefused: fwrepo refuses a manifest signed by another
// key, a modified one, a replayed one and one from an unregistered device,
// and none of them replaces the device's stored report.
func TestReportForgeriesRefused(t *testing.T) {
	rp := newReporting(t)
	ctx := context.Background()
	id := rp.key.KeyID()
	manifest := func() *manifests.DeviceManifest {
		m, err := rp.d.ag.Manifest(ctx, id, rp.nonce(t))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tpmSign := func(m *manifests.DeviceManifest) []byte {
		env, err := manifests.SignDeviceManifest(m, rp.key)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	genuine := tpmSign(manifest())
	if code, rr := rp.post(t, genuine); code != 200 || !rr.Accepted {
		t.Fatalf("genuine report: %d %+v", code, rr)
	}
	softKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := manifests.SignDeviceManifest(manifest(), softKey)
	if err != nil {
		t.Fatal(err)
	}
	// Claim a newer version the device does not run.
	modified := bytes.Replace(tpmSign(manifest()), []byte(`"version":"1.0.0"`), []byte(`"version":"9.9.9"`), -1)
	unregistered := manifest()
	unregistered.DeviceID = "gw-not-registered"
	tests := []struct {
		name string
		env  []byte
		msg  string
	}{
		{"signed by another key", wrongKey, "does not verify"},
		{"modified body", modified, "does not verify"},
		{"replayed nonce", genuine, "nonce unknown, expired or already used"},
		{"unregistered device", tpmSign(unregistered), "device is not registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, rr := rp.post(t, tt.env)
			if code != http.StatusForbidden || rr.Accepted || !strings.Contains(rr.Error, tt.msg) {
				t.Fatalf("fwrepo answered %d %+v, want 403 containing %q", code, rr, tt.msg)
			}
		})
	}
	dev, err := rp.db.Device(ctx, id)
	if err != nil || !bytes.Equal(dev.Envelope, genuine) {
		t.Fatalf("a refused report replaced the stored one (%v)", err)
	}
	// Through the agent: an unregistered ID is a refusal, not a network error.
	if _, err := rp.d.ag.Report(ctx, rp.key, agent.ReportOptions{DeviceID: "gw-not-registered"}); !errors.Is(err, agent.ErrReportRefused) {
		t.Fatalf("agent report as an unregistered device: %v, want ErrReportRefused", err)
	}
}
