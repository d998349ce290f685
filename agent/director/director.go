// Package director is the device's side of an Uptane-style director: it
// pins the director root at provisioning, fetches and verifies this
// device's director metadata with the same TUF client and verifier as the
// image repository (root chain from the pinned root, thresholds, versions
// that never go back, expiry, lengths), and returns the one target the
// director assigns this device, or none. It decides nothing about
// installing: agent/policy compares the assignment with the image
// repository's metadata (both must agree).
//
// The director root's digest is pinned in a file in the state directory
// (trust.File), also on TPM devices: the TPM's NV index holds the image
// root. That is weaker against someone with the device in hand, and
// documented as such; but a swapped director root can only choose among
// releases the image repository signed for this hardware, never add one.
package director

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/agent/tufclient"
	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
)

// Errors callers branch on.
var (
	// ErrRefused is matched by director metadata that must not be used:
	// it does not verify, names more than one target, or names another
	// device. (tuf.ErrRefused is matched too when TUF verification failed.)
	ErrRefused = errors.New("director metadata refused")
	// ErrNotProvisioned means no director root is pinned: run 'fwagent
	// provision' with "director" in the config.
	ErrNotProvisioned = errors.New("no director root pinned")
)

// Client fetches one device's director metadata.
type Client struct {
	DeviceID string
	// Dir holds the pinned digest, the archived root chain (roots/) and
	// the verified metadata (metadata/).
	Dir string
	TUF *tufclient.Client
}

// New returns a client for the director at base (a fwrepo URL serving
// /director/), keeping its state under stateDir/director. tmpl supplies
// the HTTP client, limits, rate and retry settings.
func New(base, deviceID, stateDir string, tmpl *tufclient.Client) *Client {
	dir := filepath.Join(stateDir, "director")
	c := tufclient.New(strings.TrimSuffix(base, "/")+"/"+manifests.DirectorDevice(deviceID), filepath.Join(dir, "metadata"))
	c.MetadataURL = strings.TrimSuffix(base, "/") + "/" + manifests.DirectorDevice(deviceID)
	c.TargetsURL = ""
	if tmpl != nil {
		c.HTTP, c.StallTimeout, c.Limits, c.Rate, c.Retry = tmpl.HTTP, tmpl.StallTimeout, tmpl.Limits, tmpl.Rate, tmpl.Retry
	}
	return &Client{DeviceID: deviceID, Dir: dir, TUF: c}
}

func (c *Client) store() trust.File { return trust.File{Dir: c.Dir} }
func (c *Client) rootsDir() string  { return filepath.Join(c.Dir, "roots") }

// Provision pins rootJSON (the director's first root) for this device. It
// is safe to run twice with the same root; a different one is refused
// (trust.ErrAlreadyPinned).
func (c *Client) Provision(ctx context.Context, rootJSON []byte) (trust.Provisioned, error) {
	tm, err := tuf.NewTrusted(rootJSON, time.Time{})
	if err != nil {
		return trust.Provisioned{}, fmt.Errorf("director root: %w", err)
	}
	p, err := c.store().Provision(ctx, sha256.Sum256(rootJSON))
	if err != nil {
		return p, fmt.Errorf("director root: %w", err)
	}
	for _, d := range []string{c.rootsDir(), c.TUF.MetadataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return p, err
		}
	}
	first := filepath.Join(c.rootsDir(), fmt.Sprintf("%d.root.json", tm.Root.Version))
	if _, err := os.Stat(first); errors.Is(err, os.ErrNotExist) {
		if err := atomicfile.Write(first, rootJSON, 0o600); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Assigned is the verified assignment of this device.
type Assigned struct {
	Path   string            `json:"target"`
	Length int64             `json:"length"`
	Hashes map[string]string `json:"hashes"`
	manifests.Assignment
	// TimestampVersion and TargetsVersion are the director metadata
	// versions it came from.
	TimestampVersion int64 `json:"timestamp_version"`
	TargetsVersion   int64 `json:"targets_version"`
}

// Fetch verifies this device's director metadata at now and returns its
// assignment, or nil when the director assigns nothing (empty targets, or
// no metadata for this device at all: a 404 on its timestamp). Errors
// wrap ErrRefused (and tuf.ErrRefused) for metadata that does not verify,
// ErrNotProvisioned, or the TUF client's network errors.
func (c *Client) Fetch(ctx context.Context, now time.Time) (*Assigned, error) {
	root, err := c.trustedRoot()
	if err != nil {
		return nil, err
	}
	fetched := map[int64][]byte{}
	c.TUF.OnRoot = func(v int64, b []byte) { fetched[v] = b }
	c.TUF.RefTime = now
	// Nothing is stored as trusted before it is known to be this device's.
	c.TUF.Check = func(set *tuf.Trusted) error { _, err := Pick(set, c.DeviceID); return err }
	if err := os.MkdirAll(c.TUF.MetadataDir, 0o700); err != nil {
		return nil, err
	}
	up, err := c.TUF.Update(ctx, root)
	if aerr := c.archive(root, fetched); aerr != nil && err == nil {
		err = aerr
	}
	var he *tufclient.HTTPError
	if errors.As(err, &he) && he.Status == http.StatusNotFound && strings.HasSuffix(he.URL, "/timestamp.json") {
		return nil, nil
	}
	if errors.Is(err, tuf.ErrRefused) {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err != nil {
		return nil, err
	}
	return Pick(up.Set(), c.DeviceID)
}

// Pick returns the assignment verified metadata makes for deviceID: nil
// for an empty targets list, one target whose custom.director names this
// device, anything else refused. The targets must be bound to deviceID
// (manifests.DirectorBinding, also when empty) and hash-chained to the
// timestamp and snapshot, so no metadata of another device passes. It is
// pure.
func Pick(set *tuf.Trusted, deviceID string) (*Assigned, error) {
	tg := set.Targets
	ts, sn := set.SnapshotMeta(), set.Snapshot.Meta["targets.json"]
	ds := manifests.DirectorSet{TargetsVersion: tg.Version, Binding: tg.Director, Delegations: tg.Delegations != nil,
		HashChained: ts != nil && sn != nil && len(ts.Hashes) > 0 && len(sn.Hashes) > 0}
	for path, tf := range tg.Targets {
		t := manifests.DirectorTarget{Path: path}
		if tf.Custom != nil {
			t.Custom = *tf.Custom
		}
		ds.Targets = append(ds.Targets, t)
	}
	t, a, err := manifests.DirectorPick(ds, deviceID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if t == nil {
		return nil, nil
	}
	tf := tg.Targets[t.Path]
	out := &Assigned{Path: t.Path, Length: tf.Length, Hashes: map[string]string{}, Assignment: *a,
		TimestampVersion: set.Timestamp.Version, TargetsVersion: tg.Version}
	for alg, h := range tf.Hashes {
		out.Hashes[alg] = hex.EncodeToString(h)
	}
	return out, nil
}

// trustedRoot verifies the archived chain from the pinned digest and
// returns the newest root.
func (c *Client) trustedRoot() ([]byte, error) {
	pinned, err := c.store().PinnedRoot(context.Background())
	if errors.Is(err, trust.ErrNotProvisioned) {
		return nil, fmt.Errorf("%w: run 'fwagent provision' (the config names a director)", ErrNotProvisioned)
	}
	if err != nil {
		return nil, err
	}
	files, _ := filepath.Glob(filepath.Join(c.rootsDir(), "*.root.json"))
	first := int64(0)
	for _, f := range files {
		v, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(f), ".root.json"), 10, 64)
		if err == nil && v > 0 && (first == 0 || v < first) {
			first = v
		}
	}
	var (
		cur []byte
		tm  *tuf.Trusted
	)
	for v := first; first > 0; v++ {
		name := filepath.Join(c.rootsDir(), fmt.Sprintf("%d.root.json", v))
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) && cur != nil {
			break
		}
		if err != nil {
			return nil, err
		}
		if cur == nil {
			if sha256.Sum256(b) != pinned {
				return nil, fmt.Errorf("%w: %s does not hash to the pinned director root digest: re-provision the device", ErrRefused, name)
			}
			if tm, err = tuf.NewTrusted(b, time.Time{}); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrRefused, err)
			}
		} else if err := tm.UpdateRoot(b); err != nil {
			return nil, fmt.Errorf("%w: archived director root v%d does not follow v%d: %w", ErrRefused, v, v-1, err)
		}
		cur = b
	}
	if cur == nil {
		return nil, fmt.Errorf("%w: no archived director root in %s: re-provision the device", ErrNotProvisioned, c.rootsDir())
	}
	return cur, nil
}

// archive appends verified root versions fetched during an update.
func (c *Client) archive(head []byte, fetched map[int64][]byte) error {
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
			return nil
		}
		if err := atomicfile.Write(filepath.Join(c.rootsDir(), fmt.Sprintf("%d.root.json", v)), b, 0o600); err != nil {
			return err
		}
	}
}
