package director

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/signer"
)

// Errors callers branch on.
var (
	// ErrInvalid means an assignment is malformed (the error says which
	// device and what); nothing of the batch was published.
	ErrInvalid = errors.New("invalid director assignment")
	// ErrKeyNotAuthorised means the online key is not the director root's
	// key for targets, snapshot and timestamp.
	ErrKeyNotAuthorised = errors.New("online key is not authorised by the director root")
	// ErrRoot means the director root chain in the store does not verify
	// from the trusted root, or is missing.
	ErrRoot = errors.New("director root does not verify")
)

// Default lifetimes of what a director signs. Timestamps are re-signed by
// Refresh when less than half is left, targets and snapshot likewise (as
// a new version with the same assignment).
const (
	DefaultTimestampLifetime = 24 * time.Hour
	DefaultTargetsLifetime   = 30 * 24 * time.Hour
)

// Assignment is what one device is told to install.
type Assignment struct {
	DeviceID string `json:"device_id"`
	// Hardware and Counter must equal the image repository's custom.fw of
	// TargetName (one of its hardware IDs, its counter), or the device
	// refuses the assignment.
	Hardware   string `json:"hardware"`
	TargetName string `json:"target"`
	Length     int64  `json:"length"`
	// Hashes by algorithm, hex; "sha256" is required.
	Hashes  map[string]string `json:"hashes"`
	Counter uint64            `json:"counter"`
	// Maintenance, when set, is the rollout's window: the device installs
	// only inside it (and inside its own).
	Maintenance *manifests.Maintenance `json:"maintenance,omitempty"`
	// Custom is the operator's own data (rollout id, wave): a JSON object
	// of printable strings and integers, opaque to the device.
	Custom json.RawMessage `json:"custom,omitempty"`
}

// Options open a Director.
type Options struct {
	// Store holds the image repository; the director writes under
	// "director/".
	Store blob.Store
	// KeyURI names the online director key (a key file or file:,
	// pkcs11:, tpm: URI); Signer, when set, is used instead.
	KeyURI     string
	KeyOptions signer.Options
	Signer     crypto.Signer
	// ReadOnly opens without a key: Status, Current and Devices only.
	ReadOnly bool
	// TrustedRoot is the director root (any version, usually the
	// 1.root.json devices are provisioned with) the store's chain must
	// verify from. Empty: the store's director/metadata/1.root.json.
	TrustedRoot []byte
	// Lifetimes (defaults above).
	TimestampLifetime, TargetsLifetime time.Duration
	// Workers signing and writing in parallel (default: 4 per CPU for
	// writes, one per CPU for signatures).
	Workers int
	Log     *slog.Logger
	Now     func() time.Time
}

// Director signs and publishes per-device director metadata.
type Director struct {
	opt   Options
	st    blob.Store
	key   crypto.Signer
	ownKy bool // key opened here, closed by Close
	keyID string
	root  *metadata.Metadata[metadata.RootType]

	mu      sync.Mutex
	devices map[string]*device // loaded device states
	listed  time.Time          // when Refresh last listed the store
}

// relistEvery is how often Refresh lists the store for devices another
// process published; in between it looks at the devices it knows, so a
// check every minute costs no listing of tens of thousands of files.
const relistEvery = time.Hour

// device is what the store holds for one device.
type device struct {
	version   int64 // of N.targets.json and N.snapshot.json
	tsVersion int64
	tsExpires time.Time
	tgExpires time.Time
	assigned  *Assignment // nil: nothing assigned
	snapshot  []byte      // the N.snapshot.json the timestamp names
	unbound   bool        // published in format 1 (no device binding)
	keyID     string      // of the timestamp's signature
}

// Open verifies the director root chain in the store and opens the online
// key, which the newest root must authorise for targets, snapshot and
// timestamp.
func Open(ctx context.Context, opt Options) (*Director, error) {
	if opt.Store == nil {
		return nil, errors.New("director: no store")
	}
	if opt.TimestampLifetime <= 0 {
		opt.TimestampLifetime = DefaultTimestampLifetime
	}
	if opt.TargetsLifetime <= 0 {
		opt.TargetsLifetime = DefaultTargetsLifetime
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	d := &Director{opt: opt, st: opt.Store, devices: map[string]*device{}}
	if len(opt.TrustedRoot) > 0 {
		// The root devices are provisioned with is published if the
		// store does not have it yet (and refused if it has another).
		if _, err := PublishRoot(ctx, opt.Store, opt.TrustedRoot); err != nil {
			return nil, err
		}
	}
	root, err := verifyChain(ctx, opt.Store, opt.TrustedRoot)
	if err != nil {
		return nil, err
	}
	d.root = root
	if opt.ReadOnly {
		return d, nil
	}
	d.key = opt.Signer
	if d.key == nil {
		if opt.KeyURI == "" {
			return nil, errors.New("director: no online key (--director-key)")
		}
		if d.key, err = signer.Open(opt.KeyURI, opt.KeyOptions); err != nil {
			return nil, fmt.Errorf("open director key %s: %w", opt.KeyURI, err)
		}
		d.ownKy = true
	}
	_, d.keyID, err = signer.TUFKey(d.key.Public())
	if err != nil {
		d.Close()
		return nil, err
	}
	if err := keyAuthorised(root, d.keyID); err != nil {
		d.Close()
		return nil, err
	}
	d.sweep() // write.go: temp files of an interrupted publish
	return d, nil
}

// KeyID is the online key's TUF key ID.
func (d *Director) KeyID() string { return d.keyID }

// RootVersion is the newest verified director root version.
func (d *Director) RootVersion() int64 { return d.root.Signed.Version }

// Close releases the key if Open opened it.
func (d *Director) Close() {
	if d.ownKy && d.key != nil {
		signer.Close(d.key)
		d.key = nil
	}
}

func (d *Director) workers() int {
	if d.opt.Workers > 0 {
		return d.opt.Workers
	}
	return 4 * runtime.NumCPU()
}

// validate checks a and returns its custom object.
func validate(a *Assignment) (json.RawMessage, error) {
	bad := func(format string, args ...any) (json.RawMessage, error) {
		return nil, fmt.Errorf("%w: device %q: %s", ErrInvalid, a.DeviceID, fmt.Sprintf(format, args...))
	}
	if err := layout.CheckTargetPath(a.TargetName); err != nil {
		return bad("target: %v", err)
	}
	if a.Length < 0 {
		return bad("negative length %d", a.Length)
	}
	if len(a.Hashes["sha256"]) != 64 {
		return bad("no sha256 hash (64 hex digits)")
	}
	for alg, h := range a.Hashes {
		if _, err := hex.DecodeString(h); err != nil || h == "" || strings.ToLower(h) != h || !manifests.ValidHardwareID(alg) {
			return bad("hash %s %q is not lower-case hex", alg, h)
		}
	}
	c, err := manifests.MarshalAssignment(&manifests.Assignment{Schema: manifests.DirectorSchema, Device: a.DeviceID,
		Hardware: a.Hardware, Counter: a.Counter, Maintenance: a.Maintenance, Custom: a.Custom})
	if err != nil {
		return bad("%v", err)
	}
	return c, nil
}

// Assign publishes each device's assignment: new targets, snapshot and
// timestamp versions, timestamp last. A device whose current assignment is
// the same is left as it is. The batch is validated whole before anything
// is written; a write error leaves the devices written so far published
// (each device's files are consistent on their own).
func (d *Director) Assign(ctx context.Context, as []Assignment) error {
	jobs := make([]job, len(as))
	seen := make(map[string]bool, len(as))
	for i := range as {
		a := as[i]
		if seen[a.DeviceID] {
			return fmt.Errorf("%w: device %q is named twice in one batch", ErrInvalid, a.DeviceID)
		}
		seen[a.DeviceID] = true
		c, err := validate(&a)
		if err != nil {
			return err
		}
		a.Custom = canonicalCustom(c)
		jobs[i] = job{id: a.DeviceID, a: &a, custom: c}
	}
	return d.publish(ctx, jobs, false)
}

// canonicalCustom extracts the operator's custom object from a canonical
// {"director": …} object, so that Current returns it as it will be
// compared.
func canonicalCustom(c json.RawMessage) json.RawMessage {
	a, err := manifests.ParseAssignment(c)
	if err != nil || len(a.Custom) == 0 {
		return nil
	}
	return a.Custom
}

// Unassign publishes empty targets for devices that have an assignment, so
// that they stop being offered it (a halted rollout). Devices with none
// are left as they are.
func (d *Director) Unassign(ctx context.Context, deviceIDs []string) error {
	jobs := make([]job, 0, len(deviceIDs))
	seen := map[string]bool{}
	for _, id := range deviceIDs {
		if !manifests.ValidDeviceID(id) {
			return fmt.Errorf("%w: device ID %q", ErrInvalid, id)
		}
		if !seen[id] {
			seen[id] = true
			jobs = append(jobs, job{id: id})
		}
	}
	return d.publish(ctx, jobs, false)
}

// Current returns the device's published assignment, or nil when nothing
// is assigned (or the device has no director metadata).
func (d *Director) Current(ctx context.Context, deviceID string) (*Assignment, error) {
	s, err := d.Status(ctx, deviceID)
	if err != nil || s == nil {
		return nil, err
	}
	return s.Assignment, nil
}

// DeviceStatus describes one device's published director metadata.
type DeviceStatus struct {
	DeviceID         string      `json:"device_id"`
	TargetsVersion   int64       `json:"targets_version"`
	TimestampVersion int64       `json:"timestamp_version"`
	TimestampExpires time.Time   `json:"timestamp_expires"`
	TargetsExpires   time.Time   `json:"targets_expires"`
	Assignment       *Assignment `json:"assignment,omitempty"`
}

// Status returns the device's published director metadata, or nil when it
// has none.
func (d *Director) Status(ctx context.Context, deviceID string) (*DeviceStatus, error) {
	if !manifests.ValidDeviceID(deviceID) {
		return nil, fmt.Errorf("%w: device ID %q", ErrInvalid, deviceID)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, err := d.load(ctx, deviceID)
	if err != nil || dev.version == 0 {
		return nil, err
	}
	return &DeviceStatus{DeviceID: deviceID, TargetsVersion: dev.version, TimestampVersion: dev.tsVersion,
		TimestampExpires: dev.tsExpires, TargetsExpires: dev.tgExpires, Assignment: dev.assigned}, nil
}

// Devices lists the devices that have director metadata.
func (d *Director) Devices(ctx context.Context) ([]string, error) {
	files, err := d.st.List(ctx, "director/devices/")
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, f := range files {
		rest := strings.TrimPrefix(f.Name, "director/devices/")
		if id, ok := strings.CutSuffix(rest, "/metadata/timestamp.json"); ok && manifests.ValidDeviceID(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// RefreshResult says what Refresh re-signed.
type RefreshResult struct {
	Devices    int // devices looked at
	Timestamps int // timestamps re-signed alone
	Targets    int // devices re-published whole (targets near expiry)
}

// Refresh re-signs every device's timestamp with less than half its
// lifetime left, and re-publishes (same assignment, new versions) devices
// whose targets have less than half theirs left or were published in
// director format 1 (without the device binding format-2 agents require)
// or signed by another key (an online key rotation Resign did not finish).
// fwrepo serve runs it periodically.
func (d *Director) Refresh(ctx context.Context) (RefreshResult, error) {
	var res RefreshResult
	var ids []string
	d.mu.Lock()
	if err := d.checkKey(ctx); err != nil {
		d.mu.Unlock()
		return res, err
	}
	relist := d.listed.IsZero() || time.Since(d.listed) > relistEvery
	if !relist {
		for id, dev := range d.devices {
			if dev.version > 0 {
				ids = append(ids, id)
			}
		}
	}
	d.mu.Unlock()
	if relist {
		var err error
		if ids, err = d.Devices(ctx); err != nil {
			return res, err
		}
		d.mu.Lock()
		d.listed = time.Now()
		d.mu.Unlock()
	}
	res.Devices = len(ids)
	if err := d.preload(ctx, ids); err != nil {
		return res, err
	}
	now := d.opt.Now()
	var jobs []job
	d.mu.Lock()
	for _, id := range ids {
		dev := d.devices[id]
		switch {
		case dev == nil || dev.version == 0:
		case dev.unbound || dev.keyID != d.keyID || dev.tgExpires.Sub(now) < d.opt.TargetsLifetime/2:
			jobs = append(jobs, job{id: id, a: dev.assigned, keep: true})
			res.Targets++
		case dev.tsExpires.Sub(now) < d.opt.TimestampLifetime/2:
			jobs = append(jobs, job{id: id, tsOnly: true})
			res.Timestamps++
		}
	}
	d.mu.Unlock()
	if len(jobs) == 0 {
		return res, nil
	}
	return res, d.publish(ctx, jobs, true)
}
