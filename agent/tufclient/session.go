package tufclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
)

// Limits bound what the client downloads where no signed metadata gives a
// length, and how long a root rotation chain may be. The lengths match
// go-tuf's and python-tuf's defaults (and fwctl's repo/layout caps).
type Limits struct {
	MaxRootLength, MaxTimestampLength, MaxSnapshotLength, MaxTargetsLength int64
	MaxRootRotations                                                       int
}

// DefaultLimits are the limits of a zero Limits.
var DefaultLimits = Limits{MaxRootLength: 512000, MaxTimestampLength: 16384,
	MaxSnapshotLength: 2000000, MaxTargetsLength: 5000000, MaxRootRotations: 256}

func (c *Client) limits() Limits {
	l := c.Limits
	d := DefaultLimits
	if l.MaxRootLength <= 0 {
		l.MaxRootLength = d.MaxRootLength
	}
	if l.MaxTimestampLength <= 0 {
		l.MaxTimestampLength = d.MaxTimestampLength
	}
	if l.MaxSnapshotLength <= 0 {
		l.MaxSnapshotLength = d.MaxSnapshotLength
	}
	if l.MaxTargetsLength <= 0 {
		l.MaxTargetsLength = d.MaxTargetsLength
	}
	if l.MaxRootRotations <= 0 {
		l.MaxRootRotations = d.MaxRootRotations
	}
	return l
}

// Trusted is the outcome of Update: metadata verified for one update
// cycle, through which targets are looked up and downloaded.
type Trusted struct {
	set *tuf.Trusted
	c   *Client
	ctx context.Context
}

// Set returns the verified metadata.
func (t *Trusted) Set() *tuf.Trusted { return t.set }

// Root returns the trusted root.
func (t *Trusted) Root() *tuf.Root { return t.set.Root }

// GetTargetInfo looks target up through the delegation graph, fetching
// delegated metadata as needed.
func (t *Trusted) GetTargetInfo(target string) (*tuf.TargetFile, error) {
	return t.set.FindTarget(target, source{t})
}

// Offered lists the targets whose path starts with prefix (all top-level
// targets, and delegated ones under prefix), each as a lookup resolves it.
func (t *Trusted) Offered(prefix string) (map[string]*tuf.TargetFile, error) {
	return t.set.Offered(prefix, source{t})
}

// Update runs the client workflow of the TUF specification (5.3-5.6) from
// trustedRoot: the root rotation chain, timestamp, snapshot and top-level
// targets, each from the metadata directory if still valid, else from the
// repository, keeping in the directory what verified.
//
// The root probe (5.3.2, N+1.root.json) comes first, as TUF orders it,
// unless the server named its newest root version on the last timestamp
// (RootHintHeader) and the last probe is more recent than
// RootProbeInterval: then the timestamp comes first, and the probe only
// if its hint is above the trusted root or missing, or if the timestamp
// does not verify under the trusted root. A 404 of the probe is no more
// authenticated than the hint: a server (or a network attacker) can
// withhold a new root either way.
func (c *Client) Update(ctx context.Context, trustedRoot []byte) (*Trusted, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { c.staged = nil }()
	t, err := c.update(ctx, trustedRoot, false)
	if errors.Is(err, errUnprobed) {
		return c.update(ctx, trustedRoot, true)
	}
	return t, err
}

// errUnprobed: a timestamp fetched without a root probe did not verify.
var errUnprobed = errors.New("timestamp does not verify without a root probe")

func (c *Client) update(ctx context.Context, trustedRoot []byte, mustProbe bool) (*Trusted, error) {
	now := c.RefTime
	if now.IsZero() {
		now = time.Now()
	}
	set, err := tuf.NewTrusted(trustedRoot, now)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	t := &Trusted{set: set, c: c, ctx: ctx}
	c.staged = nil
	if c.Check != nil {
		c.staged = map[string][]byte{}
	}
	lim := c.limits()
	start := set.Root
	var ts []byte
	hint := int64(-1)
	probe := true
	if last, ok := c.lastProbe(); ok && !mustProbe && now.Sub(last) >= 0 && now.Sub(last) < c.rootProbeInterval() {
		if ts, hint, err = c.fetchTimestamp(ctx, lim); err != nil {
			return nil, err
		}
		probe = hint < 0 || hint > set.Root.Version
	}
	if probe {
		if err := c.updateRoot(ctx, set, lim); err != nil {
			return nil, err
		}
	}
	if err := set.CheckRoot(); err != nil {
		return nil, err
	}
	if tuf.RoleKeysChanged(start, set.Root, tuf.RoleTimestamp) || tuf.RoleKeysChanged(start, set.Root, tuf.RoleSnapshot) {
		// 5.3.11: recover from a fast-forward attack on the old keys.
		os.Remove(filepath.Join(c.MetadataDir, "timestamp.json"))
		os.Remove(filepath.Join(c.MetadataDir, "snapshot.json"))
	}
	if ts == nil || set.Root.Version != start.Version {
		if ts, hint, err = c.fetchTimestamp(ctx, lim); err != nil {
			return nil, err
		}
	}
	if err := c.updateTimestamp(set, ts); err != nil {
		if !probe {
			return nil, fmt.Errorf("%w: %w", errUnprobed, err)
		}
		return nil, err
	}
	if probe {
		c.recordProbe(now, hint >= 0)
	}
	if err := c.updateSnapshot(ctx, set, lim); err != nil {
		return nil, err
	}
	if b := c.local("targets.json"); b == nil || set.UpdateTargets(b) != nil {
		m, err := set.RoleMeta(tuf.RoleTargets)
		if err != nil {
			return nil, err
		}
		b, err := c.fetchMeta(ctx, tuf.RoleTargets, m.Version, orMax(m.Length, lim.MaxTargetsLength), set.Root.ConsistentSnapshot)
		if err != nil {
			return nil, err
		}
		if err := set.UpdateTargets(b); err != nil {
			return nil, err
		}
		if err := c.store("targets.json", b); err != nil {
			return nil, err
		}
	}
	return t, c.commit(set)
}

// commit runs Check on the verified set and stores what was staged,
// timestamp first. Each file is verified and Check-accepted with the rest
// of the set, so a crash between two writes leaves metadata TUF's next
// update reads as after any interrupted update.
func (c *Client) commit(set *tuf.Trusted) error {
	staged := c.staged
	if staged == nil {
		return nil
	}
	c.staged = nil
	if err := c.Check(set); err != nil {
		return err
	}
	for _, name := range []string{"timestamp.json", "snapshot.json", "targets.json"} {
		if b, ok := staged[name]; ok {
			if err := c.store(name, b); err != nil {
				return err
			}
		}
	}
	return nil
}

func orMax(n, max int64) int64 {
	if n > 0 {
		return n
	}
	return max
}

// updateRoot follows the rotation chain: N+1.root.json until the
// repository has none (404 or 403), at most MaxRootRotations versions.
func (c *Client) updateRoot(ctx context.Context, set *tuf.Trusted, lim Limits) error {
	for range lim.MaxRootRotations {
		v := set.Root.Version + 1
		name := strconv.FormatInt(v, 10) + ".root.json"
		b, err := c.fetch(ctx, name, c.MetadataURL+"/"+name, lim.MaxRootLength)
		var he *HTTPError
		if errors.As(err, &he) && (he.Status == http.StatusNotFound || he.Status == http.StatusForbidden) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := set.UpdateRoot(b); err != nil {
			return err
		}
		if c.OnRoot != nil {
			c.OnRoot(v, b)
		}
		if err := c.store("root.json", b); err != nil {
			return err
		}
	}
	return nil
}

// RootHintHeader is the response header of timestamp.json in which fwrepo
// names the newest root version it serves. It is a hint, not signed: it
// only saves the root probe of a poll (see Update).
const RootHintHeader = manifests.RootVersionHeader

// DefaultRootProbeInterval is the longest a client trusts the server's
// root hint without asking for root N+1 itself.
const DefaultRootProbeInterval = 24 * time.Hour

func (c *Client) rootProbeInterval() time.Duration {
	if c.RootProbeInterval == 0 {
		return DefaultRootProbeInterval
	}
	return c.RootProbeInterval
}

// probeFile records when the root was last probed on a server that sends
// RootHintHeader (its absence: probe first, as TUF orders it).
const probeFile = "root-probe"

func (c *Client) lastProbe() (time.Time, bool) {
	sec, err := strconv.ParseInt(strings.TrimSpace(string(c.local(probeFile))), 10, 64)
	return time.Unix(sec, 0), err == nil
}

// recordProbe notes a root probe at now when the server hinted (written
// once per probe, not per poll), and forgets it when it did not.
func (c *Client) recordProbe(now time.Time, hinted bool) {
	name := filepath.Join(c.MetadataDir, probeFile)
	if !hinted {
		os.Remove(name)
		return
	}
	_ = atomicfile.Write(name, []byte(strconv.FormatInt(now.Unix(), 10)+"\n"), 0o644)
}

// fetchTimestamp downloads timestamp.json and the server's root hint
// (-1 when absent or malformed).
func (c *Client) fetchTimestamp(ctx context.Context, lim Limits) ([]byte, int64, error) {
	var buf bytes.Buffer
	var h http.Header
	if _, err := c.download(ctx, "timestamp.json", c.MetadataURL+"/timestamp.json", 0, lim.MaxTimestampLength, &buf, &h); err != nil {
		return nil, -1, err
	}
	v, err := strconv.ParseInt(h.Get(RootHintHeader), 10, 64)
	if err != nil || v < 1 {
		v = -1
	}
	return buf.Bytes(), v, nil
}

// updateTimestamp verifies a fetched timestamp b (5.4) after the cached one.
func (c *Client) updateTimestamp(set *tuf.Trusted, b []byte) error {
	if b := c.local("timestamp.json"); b != nil {
		// A cached timestamp that does not verify is ignored; an expired
		// one still guards against rollback of the next.
		_, _ = set.UpdateTimestamp(b)
	}
	updated, err := set.UpdateTimestamp(b)
	if err != nil {
		return err
	}
	if !updated {
		return nil
	}
	return c.store("timestamp.json", b)
}

func (c *Client) updateSnapshot(ctx context.Context, set *tuf.Trusted, lim Limits) error {
	if b := c.local("snapshot.json"); b != nil {
		// With Check, a cached snapshot must also hash as the timestamp
		// says (another timestamp could name the same version); one that
		// does not is still kept for the rollback check of the fetched one.
		if c.Check != nil && set.UpdateSnapshot(b, false) == nil || set.UpdateSnapshot(b, true) == nil && c.Check == nil {
			return nil
		}
	}
	m := set.SnapshotMeta()
	b, err := c.fetchMeta(ctx, tuf.RoleSnapshot, m.Version, orMax(m.Length, lim.MaxSnapshotLength), set.Root.ConsistentSnapshot)
	if err != nil {
		return err
	}
	if err := set.UpdateSnapshot(b, false); err != nil {
		return err
	}
	return c.store("snapshot.json", b)
}

// fetchMeta downloads role's metadata, by version in a consistent-snapshot
// repository.
func (c *Client) fetchMeta(ctx context.Context, role string, version, maxLength int64, consistent bool) ([]byte, error) {
	name := quote(role) + ".json"
	if consistent {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	return c.fetch(ctx, name, c.MetadataURL+"/"+name, maxLength)
}

// fetch downloads one metadata file of at most maxLength bytes.
func (c *Client) fetch(ctx context.Context, file, u string, maxLength int64) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := c.download(ctx, file, u, 0, maxLength, &buf, nil); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// local reads a cached metadata file (nil if absent or unreadable).
func (c *Client) local(name string) []byte {
	b, err := os.ReadFile(filepath.Join(c.MetadataDir, name))
	if err != nil {
		return nil
	}
	return b
}

// store keeps verified metadata under its non-versioned name, durably
// (staged until commit when Check is set, but for roots).
func (c *Client) store(name string, b []byte) error {
	if c.staged != nil && name != "root.json" {
		c.staged[name] = b
		return nil
	}
	if err := atomicfile.Write(filepath.Join(c.MetadataDir, name), b, 0o644); err != nil {
		return fmt.Errorf("store %s: %w", name, err)
	}
	return nil
}

// source serves delegated metadata to the verifier.
type source struct{ t *Trusted }

func (s source) Cached(role string) []byte { return s.t.c.local(quote(role) + ".json") }

func (s source) Fetch(role string, version, maxLength int64) ([]byte, error) {
	c := s.t.c
	return c.fetchMeta(s.t.ctx, role, version, orMax(maxLength, c.limits().MaxTargetsLength), s.t.set.Root.ConsistentSnapshot)
}

func (s source) Store(role string, b []byte) error { return s.t.c.store(quote(role)+".json", b) }

// quote escapes a role name for a URL and a file name the way python-tuf
// does (urllib.parse.quote(name, "")): every byte but letters, digits and
// "_.-~" as %XX, so no "/" can leave the directory (the name always gets
// ".json" appended, so "." and ".." never stand alone).
func quote(s string) string {
	const hexd = "0123456789ABCDEF"
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_', b == '-', b == '~', b == '.':
			out = append(out, b)
		default:
			out = append(out, '%', hexd[b>>4], hexd[b&15])
		}
	}
	return string(out)
}
