package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/manifests"
)

// Config is the agent's configuration file (JSON).
type Config struct {
	// Repository is the base URL of the fwrepo server (serving /metadata
	// and /targets).
	Repository string `json:"repository"`
	// Hardware is this device's hardware ID.
	Hardware string `json:"hardware"`
	// StateDir holds trusted metadata, the install state and, without a
	// TPM, the trust anchor and counter.
	StateDir string `json:"state_dir"`
	// Slots maps slot names ("A", "B") to a file or block device.
	Slots map[string]string `json:"slots"`
	// Bootloader selects the boot environment backend.
	Bootloader BootloaderConfig `json:"bootloader"`
	// BootedSlot says how to find the running slot.
	BootedSlot BootedSlotConfig `json:"booted_slot"`
	// Trust selects where the pinned root and counter live.
	Trust TrustConfig `json:"trust"`
	// PollInterval and PollJitter drive 'fwagent daemon'.
	PollInterval Duration `json:"poll_interval"`
	PollJitter   Duration `json:"poll_jitter"`
	// StallTimeout aborts downloads that receive nothing for this long.
	StallTimeout Duration `json:"stall_timeout"`
	// MinDownloadRate (bytes/s, default 1024) is the least average rate a
	// download (metadata or image) must keep over every RateWindow
	// (default 30s) after the first RateGrace (default 10s); a slower one
	// is refused as a slow retrieval attack. -1 switches the check off.
	MinDownloadRate int64    `json:"min_download_rate,omitempty"`
	RateWindow      Duration `json:"rate_window,omitempty"`
	RateGrace       Duration `json:"rate_grace,omitempty"`
	// DownloadAttempts is how often a broken download is tried (default 5);
	// RetryBackoff the first wait between tries, doubling (default 1s).
	DownloadAttempts int      `json:"download_attempts,omitempty"`
	RetryBackoff     Duration `json:"retry_backoff,omitempty"`
	// Transparency is the policy on transparency-log proofs.
	Transparency TransparencyConfig `json:"transparency,omitempty"`
	// HealthChecks run before 'fwagent confirm' accepts a new slot.
	HealthChecks []Check `json:"health_checks,omitempty"`
	// Hooks run around installs.
	Hooks Hooks `json:"hooks,omitempty"`
	// RebootCommand, if set, is run by the daemon after an install.
	RebootCommand []string `json:"reboot_command,omitempty"`
	// Report, when set, makes 'fwagent daemon' send signed device manifests
	// to the repository's device API, as 'fwagent report' does.
	Report *ReportConfig `json:"report,omitempty"`
	// Director, when set, makes the device install only what an
	// Uptane-style director assigns it and the repository agrees on
	// (director.go).
	Director *DirectorConfig `json:"director,omitempty"`
	// Identity, when set, keeps the device identity key in a file (no
	// TPM; identity.go).
	Identity *IdentityConfig `json:"identity,omitempty"`
	// Maintenance, when set, limits downloads, installs and reboots to
	// windows (window.go).
	Maintenance *MaintenanceConfig `json:"maintenance,omitempty"`
	// Offline is the freshness policy for offline bundles (bundle.go).
	Offline OfflineConfig `json:"offline,omitzero"`
}

// ReportConfig drives the daemon's device reports.
type ReportConfig struct {
	// Interval between reports (default 6h); a new install result (install,
	// confirmation, fallback) is reported within a minute.
	Interval Duration `json:"interval,omitempty"`
	// DeviceID names the device to fwrepo (default: the device key ID).
	DeviceID string `json:"device_id,omitempty"`
}

// BootloaderConfig selects the boot environment.
type BootloaderConfig struct {
	// Type is the environment format: "uboot" (Path is fw_env.config),
	// "grub" (Path is the grubenv file) or "file" (simulators).
	Type string `json:"type"`
	Path string `json:"path"`
	// Scheme is the boot-counting convention: "rauc" (BOOT_ORDER and
	// BOOT_x_LEFT, the default) or "bootcount" (U-Boot's bootcount,
	// bootlimit and upgrade_available).
	Scheme string `json:"scheme,omitempty"`
	// Tries is how often a new slot is tried before falling back (3).
	Tries int `json:"tries,omitempty"`
}

// BootedSlotConfig says where the running slot is read from.
type BootedSlotConfig struct {
	// Source is "cmdline" (default), "env" (a variable the boot script
	// sets and saves before booting), or "both" (they must agree).
	Source  string `json:"source,omitempty"`
	Cmdline string `json:"cmdline"` // default /proc/cmdline
	Param   string `json:"param"`   // default fwctl.slot
	// Variable is the environment variable naming the booted slot (default
	// fwctl_booted). The boot script must set it to the slot it is about to
	// boot and save the environment; fwctl_slot and BOOT_ORDER name the
	// slot to boot next, which differs while an update waits for a reboot.
	Variable string `json:"variable,omitempty"`
}

// TrustConfig selects the trust store.
type TrustConfig struct {
	Type   string `json:"type"`             // "file" or "tpm"
	Device string `json:"device,omitempty"` // TPM: /dev/tpmrm0 or tcp://127.0.0.1:PORT
}

// Duration is a time.Duration written as "1h" (or "30d"): the one duration
// type of every config, see internal/duration.
type Duration = duration.Duration

// LoadConfig reads and validates a config file. Relative paths in it are
// taken relative to the file's directory.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, locateConfigError(b, err))
	}
	base := filepath.Dir(path)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.StateDir)
	abs(&c.Bootloader.Path)
	abs(&c.BootedSlot.Cmdline)
	abs(&c.Transparency.LogPublicKey)
	abs(&c.Transparency.ReleasePublicKey)
	if c.Director != nil {
		abs(&c.Director.Root)
	}
	if c.Identity != nil {
		abs(&c.Identity.KeyFile)
	}
	for k, v := range c.Slots {
		abs(&v)
		c.Slots[k] = v
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, locateFields(b, err))
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.BootedSlot.Cmdline == "" {
		c.BootedSlot.Cmdline = "/proc/cmdline"
	}
	if c.BootedSlot.Param == "" {
		c.BootedSlot.Param = "fwctl.slot"
	}
	if c.BootedSlot.Source == "" {
		c.BootedSlot.Source = "cmdline"
	}
	if c.BootedSlot.Variable == "" {
		c.BootedSlot.Variable = "fwctl_booted"
	}
	if c.Trust.Type == "" {
		c.Trust.Type = "file"
	}
	if c.PollInterval == 0 {
		c.PollInterval = Duration(time.Hour)
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = Duration(30 * time.Second)
	}
}

// Validate says what is wrong with c.
func (c *Config) Validate() error {
	var errs []error
	if c.Repository == "" {
		errs = append(errs, errors.New("repository: missing (e.g. \"http://updates.example.com\")"))
	}
	if !manifests.ValidHardwareID(c.Hardware) {
		errs = append(errs, fmt.Errorf("hardware: %q is not a valid hardware ID", c.Hardware))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("state_dir: missing"))
	}
	if len(c.Slots) != 2 {
		errs = append(errs, fmt.Errorf("slots: want exactly two (A and B), got %d", len(c.Slots)))
	}
	seen := map[string]bool{}
	for name, p := range c.Slots {
		if p == "" {
			errs = append(errs, fmt.Errorf("slots.%s: empty path", name))
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("slots: %s is used by two slots", p))
		}
		seen[p] = true
	}
	switch c.Bootloader.Type {
	case "file", "uboot", "grub":
		if c.Bootloader.Path == "" {
			errs = append(errs, errors.New("bootloader.path: missing (uboot: fw_env.config; grub: the grubenv file)"))
		}
	default:
		errs = append(errs, fmt.Errorf("bootloader.type: %q, want \"uboot\", \"grub\" or \"file\"", c.Bootloader.Type))
	}
	switch c.Bootloader.Scheme {
	case "", "rauc", "bootcount":
	default:
		errs = append(errs, fmt.Errorf("bootloader.scheme: %q, want \"rauc\" or \"bootcount\"", c.Bootloader.Scheme))
	}
	switch c.BootedSlot.Source {
	case "cmdline", "env", "both":
	default:
		errs = append(errs, fmt.Errorf("booted_slot.source: %q, want \"cmdline\", \"env\" or \"both\"", c.BootedSlot.Source))
	}
	switch c.Trust.Type {
	case "file":
	case "tpm":
		if c.Trust.Device == "" {
			errs = append(errs, errors.New("trust.device: missing (/dev/tpmrm0 or tcp://127.0.0.1:PORT)"))
		}
	default:
		errs = append(errs, fmt.Errorf("trust.type: %q, want \"file\" or \"tpm\"", c.Trust.Type))
	}
	if c.Report != nil && c.Trust.Type != "tpm" && (c.Identity == nil || c.Identity.KeyFile == "") {
		errs = append(errs, errors.New("report: needs an identity key: trust.type \"tpm\" (the TPM device key) or identity.key_file"))
	}
	if c.Transparency.Require && (c.Transparency.LogPublicKey == "" || c.Transparency.ReleasePublicKey == "") {
		errs = append(errs, errors.New("transparency: require needs log_public_key and release_public_key"))
	}
	errs = append(errs, c.validateDirector()...)    // director.go
	errs = append(errs, c.validateMaintenance()...) // window.go
	for i, c := range c.HealthChecks {
		if c.Name == "" || len(c.Command) == 0 {
			errs = append(errs, fmt.Errorf("health_checks[%d]: needs a name and a command", i))
		}
	}
	return errors.Join(errs...)
}

// SlotNames returns the slot names in sorted order.
func (c *Config) SlotNames() []string {
	var out []string
	for k := range c.Slots {
		out = append(out, k)
	}
	if len(out) == 2 && out[0] > out[1] {
		out[0], out[1] = out[1], out[0]
	}
	return out
}
