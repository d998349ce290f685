// Package agent is the device side of fwctl: it verifies release metadata
// against the provisioned root, picks the newest release for this hardware
// that is not a rollback, streams it into the inactive A/B slot, verifies
// the slot, and only then asks the bootloader to try it; after the new slot
// boots it confirms (raising the anti-rollback counter) or falls back.
//
// It never writes the running slot, never marks a slot bootable before its
// contents are verified, and raises the counter only after confirmation.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwctl/fwctl/agent/boot"
	"github.com/fwctl/fwctl/agent/bootenv"
	"github.com/fwctl/fwctl/agent/policy"
	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/agent/tufclient"
	"github.com/fwctl/fwctl/internal/atomicfile"
)

// Errors callers branch on (exit codes).
var (
	// ErrRefused means a security check refused an update: bad signature,
	// expired or inconsistent metadata, hash mismatch, rollback, wrong
	// hardware, or an untrusted root.
	ErrRefused = errors.New("update refused")
	// ErrRollback means the release's counter is below the device's.
	ErrRollback = policy.ErrRollback
	// ErrWrongHardware means the release is not for this hardware.
	ErrWrongHardware = policy.ErrWrongHardware
	// ErrUnknownTarget means an explicitly named target is not in the
	// repository: a mistyped path, not a security refusal.
	ErrUnknownTarget = policy.ErrUnknownTarget
	// ErrRootNotPinned means the trusted root chain does not start at the
	// digest pinned at provisioning.
	ErrRootNotPinned = errors.New("trusted root does not match the pinned root")
	// ErrInvalidRoot means a root.json offered for provisioning is invalid.
	ErrInvalidRoot = errors.New("invalid root metadata")
	// ErrConfirmPending means the running slot still awaits confirmation.
	ErrConfirmPending = policy.ErrConfirmPending
	// ErrRebootPending means an update is installed and waits for a reboot.
	ErrRebootPending = errors.New("an installed update is waiting for a reboot")
	// ErrNetwork means the repository could not be reached or the
	// download broke off; trying again later is safe.
	ErrNetwork = errors.New("repository unreachable")
	// ErrFailedBefore means the chosen release failed on this device (fell
	// back, unhealthy, or its slot did not read back): it is installed
	// again only with UpdateOptions.Retry, or superseded by a newer one.
	ErrFailedBefore = errors.New("release failed on this device before")
	// ErrNoSpace means the inactive slot cannot hold the image.
	ErrNoSpace = errors.New("slot too small")
)

// Agent runs updates for one device.
type Agent struct {
	cfg    *Config
	trust  trust.Store
	sw     boot.Scheme
	env    bootenv.Env
	client *tufclient.Client
	log    *slog.Logger
	swept  bool // sweepTemp ran
	// metadataGrace moves the expiry reference back while an offline
	// bundle is installed under cfg.Offline (bundle.go).
	metadataGrace time.Duration
	// Now is the clock (tests move it to check expiry).
	Now func() time.Time
	// Progress, when set, reports download progress.
	Progress func(done, total int64)
}

// New returns an agent for cfg with the given trust store.
func New(cfg *Config, store trust.Store, log *slog.Logger) (*Agent, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var env bootenv.Env
	switch cfg.Bootloader.Type {
	case "file":
		env = bootenv.File{Path: cfg.Bootloader.Path}
	case "grub":
		env = bootenv.GRUB{Path: cfg.Bootloader.Path}
	case "uboot":
		u, err := bootenv.OpenUBoot(cfg.Bootloader.Path, nil)
		if err != nil {
			return nil, fmt.Errorf("bootloader: %w", err)
		}
		env = u
	default:
		return nil, fmt.Errorf("bootloader type %q not supported", cfg.Bootloader.Type)
	}
	var sw boot.Scheme = &boot.Switch{Env: env, Slots: cfg.SlotNames(), Tries: cfg.Bootloader.Tries}
	if cfg.Bootloader.Scheme == "bootcount" {
		sw = &boot.BootCount{Env: env, Slots: cfg.SlotNames(), Tries: cfg.Bootloader.Tries}
	}
	c := tufclient.New(cfg.Repository, filepath.Join(cfg.StateDir, "metadata"))
	c.StallTimeout = time.Duration(cfg.StallTimeout)
	c.Retry = tufclient.DefaultRetry
	switch {
	case cfg.MinDownloadRate < 0:
		c.Rate = tufclient.Rate{}
	case cfg.MinDownloadRate > 0:
		c.Rate.MinRate = cfg.MinDownloadRate
	}
	if cfg.RateWindow > 0 {
		c.Rate.Window = time.Duration(cfg.RateWindow)
	}
	if cfg.RateGrace > 0 {
		c.Rate.Grace = time.Duration(cfg.RateGrace)
	}
	if cfg.DownloadAttempts > 0 {
		c.Retry.Attempts = cfg.DownloadAttempts
	}
	if cfg.RetryBackoff > 0 {
		c.Retry.Backoff = time.Duration(cfg.RetryBackoff)
	}
	c.OnRetry = func(attempt int, offset int64, err error) {
		log.Warn("download broke off; resuming", "attempt", attempt, "offset", offset, "err", err)
	}
	return &Agent{cfg: cfg, trust: store, log: log, Now: time.Now, client: c, sw: sw, env: env}, nil
}

// Trust returns the trust store.
func (a *Agent) Trust() trust.Store { return a.trust }

// Switch exposes the boot switch (for the simulated bootloader).
func (a *Agent) Switch() boot.Scheme { return a.sw }

func (a *Agent) rootsDir() string { return filepath.Join(a.cfg.StateDir, "roots") }

// Provisioned reports the outcome of Provision.
type Provisioned struct {
	trust.Provisioned
	RootVersion int64  `json:"root_version"`
	RootSHA256  string `json:"root_sha256"`
	TrustStore  string `json:"trust_store"`
	BootedSlot  string `json:"booted_slot"`
	// DeviceKeyID and DeviceKeyPEM name the device identity key (TPM only).
	DeviceKeyID  string `json:"device_key_id,omitempty"`
	DeviceKeyPEM string `json:"device_key_pem,omitempty"`
	// FileIdentityKeyID is the file identity key's ID (identity.key_file).
	FileIdentityKeyID string `json:"file_identity_key_id,omitempty"`
}

// Provision installs rootJSON as the device's trust anchor. It is safe to
// run twice with the same root.
func (a *Agent) Provision(ctx context.Context, rootJSON []byte) (*Provisioned, error) {
	tm, err := tuf.NewTrusted(rootJSON, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRoot, err)
	}
	a.sweepTemp()
	booted, err := a.bootedSlot()
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(rootJSON)
	p, err := a.trust.Provision(ctx, digest)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{a.rootsDir(), a.client.MetadataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	v := tm.Root.Version
	first := filepath.Join(a.rootsDir(), fmt.Sprintf("%d.root.json", v))
	if _, err := os.Stat(first); errors.Is(err, os.ErrNotExist) {
		if err := atomicfile.Write(first, rootJSON, 0o600); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(filepath.Join(a.client.MetadataDir, "root.json"), rootJSON, 0o600); err != nil {
			return nil, err
		}
	}
	if _, err := a.sw.Init(booted); err != nil {
		return nil, fmt.Errorf("initialise boot environment: %w", err)
	}
	fileID, err := a.ensureFileIdentity() // identity.go
	if err != nil {
		return nil, err
	}
	if err := a.provisionDirector(ctx); err != nil { // director.go
		return nil, err
	}
	st, err := a.loadState()
	if err != nil {
		return nil, err
	}
	if err := a.saveState(st); err != nil {
		return nil, err
	}
	return &Provisioned{Provisioned: p, RootVersion: v, RootSHA256: fmt.Sprintf("%x", digest),
		TrustStore: a.trust.Kind(), BootedSlot: booted, FileIdentityKeyID: fileID}, nil
}

// bootedSlot finds the running slot from the kernel command line, the
// boot environment, or both (which must then agree). Anything unclear is
// boot.ErrAmbiguous, and the agent writes nothing.
func (a *Agent) bootedSlot() (string, error) {
	bs := a.cfg.BootedSlot
	var fromCmdline, fromEnv string
	var err error
	if bs.Source != "env" {
		if fromCmdline, err = boot.BootedSlot(bs.Cmdline, bs.Param, a.cfg.SlotNames()); err != nil {
			return "", err
		}
	}
	if bs.Source == "env" || bs.Source == "both" {
		vars, err := a.env.Load()
		if err != nil {
			return "", fmt.Errorf("%w: %v", boot.ErrAmbiguous, err)
		}
		if fromEnv, err = boot.BootedSlotFromEnv(vars, bs.Variable, a.cfg.SlotNames()); err != nil {
			return "", err
		}
	}
	switch {
	case bs.Source == "env":
		return fromEnv, nil
	case bs.Source == "both" && fromEnv != fromCmdline:
		return "", fmt.Errorf("%w: the kernel command line says slot %s, the environment's %s says %s", boot.ErrAmbiguous, fromCmdline, bs.Variable, fromEnv)
	}
	return fromCmdline, nil
}

// Env exposes the boot environment (for the simulated bootloader).
func (a *Agent) Env() bootenv.Env { return a.env }

func (a *Agent) inactive(booted string) string {
	for _, s := range a.cfg.SlotNames() {
		if s != booted {
			return s
		}
	}
	return ""
}

// trustedRoot verifies the archived root chain from the pinned digest and
// returns the newest root, which must be the one in the metadata directory.
func (a *Agent) trustedRoot(ctx context.Context) ([]byte, int64, error) {
	pinned, err := a.trust.PinnedRoot(ctx)
	if err != nil {
		return nil, 0, err
	}
	files, err := filepath.Glob(filepath.Join(a.rootsDir(), "*.root.json"))
	if err != nil || len(files) == 0 {
		return nil, 0, fmt.Errorf("%w: no archived root chain in %s: re-provision the device", ErrRootNotPinned, a.rootsDir())
	}
	var first []byte
	var firstV int64
	for _, f := range files {
		v, rest, ok := leadingInt(filepath.Base(f), 64)
		if !ok || !strings.HasPrefix(rest, ".root.json") {
			continue
		}
		if first == nil || v < firstV {
			first, firstV = nil, v
			if first, err = os.ReadFile(f); err != nil {
				return nil, 0, err
			}
		}
	}
	if sha256.Sum256(first) != pinned {
		return nil, 0, fmt.Errorf("%w: %s does not hash to the pinned digest %x: the trust anchor was tampered with", ErrRootNotPinned, filepath.Join(a.rootsDir(), fmt.Sprintf("%d.root.json", firstV)), pinned[:8])
	}
	tm, err := tuf.NewTrusted(first, time.Time{})
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrRootNotPinned, err)
	}
	cur := first
	for v := firstV + 1; ; v++ {
		b, err := os.ReadFile(filepath.Join(a.rootsDir(), fmt.Sprintf("%d.root.json", v)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		if err := tm.UpdateRoot(b); err != nil {
			return nil, 0, fmt.Errorf("%w: archived root version %d does not follow from version %d: %v", ErrRootNotPinned, v, v-1, err)
		}
		cur = b
	}
	onPath := filepath.Join(a.client.MetadataDir, "root.json")
	onDisk, err := os.ReadFile(onPath)
	if err != nil || !json.Valid(onDisk) {
		// root.json was once rewritten on every refresh by rename without
		// an fsync, so a power cut can leave it missing, empty or garbled. That
		// is damage, not a swapped root: restore it from the verified chain
		// (found by test/powerloss). A different valid document is refused.
		a.log.Warn("restoring damaged metadata root.json from the verified root chain", "path", onPath, "err", err)
		if err := atomicfile.Write(onPath, cur, 0o600); err != nil {
			return nil, 0, err
		}
		onDisk = cur
	}
	if string(onDisk) != string(cur) {
		return nil, 0, fmt.Errorf("%w: %s differs from the verified root chain (version %d): refusing it; it was modified on disk",
			ErrRootNotPinned, onPath, tm.Root.Version)
	}
	return cur, tm.Root.Version, nil
}

// archiveRoots appends root versions fetched during a refresh to the
// archived chain once they verify from its head.
func (a *Agent) archiveRoots(head []byte, fetched map[int64][]byte) error {
	tm, err := tuf.NewTrusted(head, time.Time{})
	if err != nil {
		return err
	}
	for v := tm.Root.Version + 1; ; v++ {
		b, ok := fetched[v]
		if !ok {
			return nil
		}
		if err := tm.UpdateRoot(b); err != nil {
			return nil // the updater refused it too; nothing to archive
		}
		if err := atomicfile.Write(filepath.Join(a.rootsDir(), fmt.Sprintf("%d.root.json", v)), b, 0o600); err != nil {
			return err
		}
	}
}
