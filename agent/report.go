package agent

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fwctl/fwctl/manifests"
)

// ErrReportRefused means fwrepo refused the device manifest: the device is
// not registered, the signature or the nonce did not verify, or the
// manifest was malformed. Reporting again does not help until the cause is
// fixed (usually: register the device with 'fwrepo devices add').
var ErrReportRefused = errors.New("fwrepo refused the device manifest")

// DeviceSigner is the device identity key: an ECDSA P-256 crypto.Signer
// that knows its key ID (the hex SHA-256 of its PKIX public key). The TPM
// device key (*tpm.Key) is one.
type DeviceSigner interface {
	crypto.Signer
	KeyID() string
}

// ReportOptions control Report.
type ReportOptions struct {
	// DeviceID names the device to fwrepo; empty means the key ID.
	DeviceID string
	// Client sends the requests (default: a client with a 30 s timeout).
	Client *http.Client
}

// ReportResult describes an accepted report.
type ReportResult struct {
	DeviceID   string                    `json:"device_id"`
	KeyID      string                    `json:"key_id"`
	Repository string                    `json:"repository"`
	Accepted   bool                      `json:"accepted"`
	Manifest   *manifests.DeviceManifest `json:"manifest"`
}

// Manifest builds the device manifest from the agent's state (no network):
// slots, running and next slot, counter, last install result and the
// recent attempts, the time and the given server nonce.
func (a *Agent) Manifest(ctx context.Context, deviceID, nonce string) (*manifests.DeviceManifest, error) {
	return a.manifest(ctx, deviceID, nonce, 0)
}

// manifest is Manifest with a report sequence number (an offline report
// has one and no nonce).
func (a *Agent) manifest(ctx context.Context, deviceID, nonce string, seq uint64) (*manifests.DeviceManifest, error) {
	st, err := a.Status(ctx)
	if err != nil {
		return nil, err
	}
	m := &manifests.DeviceManifest{
		Schema: manifests.DeviceSchema, DeviceID: deviceID, Hardware: st.Hardware,
		RunningSlot: st.BootedSlot, NextBoot: st.NextBoot, Counter: st.Counter,
		Slots: map[string]manifests.SlotReport{}, Time: a.Now().UTC().Truncate(time.Second), Nonce: nonce, Seq: seq,
	}
	for name, s := range st.Slots {
		m.Slots[name] = manifests.SlotReport{Status: s.Status, Image: s.Image}
	}
	if l := st.Last; l != nil {
		m.LastResult = installResult(*l, 1000)
	}
	for _, r := range st.History {
		m.Attempts = append(m.Attempts, *installResult(r, 300))
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("build device manifest: %w", err)
	}
	return m, nil
}

// installResult is r as a device manifest reports it, its error clipped to
// max bytes (on a rune boundary) so the manifest stays within its size cap.
func installResult(r Result, max int) *manifests.InstallResult {
	msg := r.Error
	if len(msg) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return &manifests.InstallResult{At: r.At.UTC(), Target: r.Target, Version: r.Version, Outcome: r.Outcome, Error: msg}
}

// Report sends a signed device manifest to fwrepo: it fetches a fresh
// nonce, builds the manifest, signs it with key and posts it. Errors wrap
// ErrNetwork (fwrepo unreachable: retry later) or ErrReportRefused.
func (a *Agent) Report(ctx context.Context, key DeviceSigner, opt ReportOptions) (*ReportResult, error) {
	id := opt.DeviceID
	if id == "" {
		id = key.KeyID()
	}
	hc := opt.Client
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	base := strings.TrimRight(a.cfg.Repository, "/")
	var nr manifests.NonceResponse
	if err := a.call(ctx, hc, http.MethodGet, base+manifests.NoncePath, nil, &nr); err != nil {
		return nil, fmt.Errorf("get a nonce: %w", err)
	}
	if !manifests.ValidNonce(nr.Nonce) {
		return nil, fmt.Errorf("%w: %s answered an invalid nonce %q", ErrReportRefused, base+manifests.NoncePath, nr.Nonce)
	}
	seq, err := a.nextReportSeq()
	if err != nil {
		return nil, err
	}
	m, err := a.manifest(ctx, id, nr.Nonce, seq)
	if err != nil {
		return nil, err
	}
	env, err := manifests.SignDeviceManifest(m, key)
	if err != nil {
		return nil, err
	}
	var rr manifests.ReportResponse
	if err := a.call(ctx, hc, http.MethodPost, base+manifests.ManifestPath, env, &rr); err != nil {
		return nil, fmt.Errorf("send device manifest: %w", err)
	}
	if !rr.Accepted {
		return nil, fmt.Errorf("%w: %s", ErrReportRefused, rr.Error)
	}
	a.log.Info("device manifest accepted", "device", id, "running_slot", m.RunningSlot, "version", m.Running().Version)
	return &ReportResult{DeviceID: id, KeyID: key.KeyID(), Repository: a.cfg.Repository, Accepted: true, Manifest: m}, nil
}

// call does one JSON request. A transport error or a 5xx wraps ErrNetwork;
// a 4xx wraps ErrReportRefused with fwrepo's reason.
func (a *Agent) call(ctx context.Context, hc *http.Client, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("repository URL %q: %w", url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNetwork, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("%w: read answer from %s: %w", ErrNetwork, url, err)
	}
	var reason struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(b, &reason)
	switch {
	case resp.StatusCode == http.StatusNotFound && reason.Error == "":
		return fmt.Errorf("%w: %s %s: 404: this fwrepo has no device API; start it with 'fwrepo serve --db PATH'", ErrReportRefused, method, url)
	case resp.StatusCode >= 500:
		return fmt.Errorf("%w: %s %s: %s %s", ErrNetwork, method, url, resp.Status, reason.Error)
	case resp.StatusCode >= 400:
		return fmt.Errorf("%w: %s %s: %s: %s", ErrReportRefused, method, url, resp.Status, reason.Error)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: %s %s: unexpected %s", ErrReportRefused, method, url, resp.Status)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %s %s: answer is not the expected JSON: %v", ErrReportRefused, method, url, err)
	}
	return nil
}
