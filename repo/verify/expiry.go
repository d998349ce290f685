package verify

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Expiry is when one role's published metadata expires.
type Expiry struct {
	Role    string        `json:"role"`
	Version int64         `json:"version"`
	Expires time.Time     `json:"expires"`
	Left    time.Duration `json:"left_ns"`
	// Expired is true once devices refuse the metadata.
	Expired bool `json:"expired"`
	// Action says what renews it.
	Action string `json:"action"`
}

// Expiries lists the expiry of every published role of the repository in
// dir (a workspace's metadata/ or a published repository's metadata/),
// soonest first: root, targets, snapshot, timestamp and every delegated
// role the targets name.
func Expiries(metadataDir string, now time.Time) ([]Expiry, error) {
	var out []Expiry
	add := func(role string, v int64, exp time.Time, action string) {
		out = append(out, Expiry{Role: role, Version: v, Expires: exp, Left: exp.Sub(now), Expired: !now.Before(exp), Action: action})
	}
	roots, err := VersionedFiles(metadataDir, "root")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", metadataDir, err)
	}
	rootFile := filepath.Join(metadataDir, "root.json")
	if len(roots) > 0 {
		rootFile = filepath.Join(metadataDir, roots[len(roots)-1])
	}
	root, err := metadata.Root().FromFile(rootFile)
	if err != nil {
		return nil, fmt.Errorf("no root metadata in %s: %w", metadataDir, err)
	}
	add(metadata.ROOT, root.Signed.Version, root.Signed.Expires, "a new root version: 'fwctl key rotate' or 'fwctl root renew', then the ceremony if root keys are offline")
	latest := func(role string) string {
		if vs, _ := VersionedFiles(metadataDir, role); len(vs) > 0 {
			return filepath.Join(metadataDir, vs[len(vs)-1])
		}
		return filepath.Join(metadataDir, role+".json")
	}
	if ts, err := metadata.Timestamp().FromFile(filepath.Join(metadataDir, "timestamp.json")); err == nil {
		add(metadata.TIMESTAMP, ts.Signed.Version, ts.Signed.Expires, "'fwctl publish', or fwrepo's online timestamp key")
	}
	if s, err := metadata.Snapshot().FromFile(latest(metadata.SNAPSHOT)); err == nil {
		add(metadata.SNAPSHOT, s.Signed.Version, s.Signed.Expires, "'fwctl publish'")
	}
	if t, err := metadata.Targets().FromFile(latest(metadata.TARGETS)); err == nil {
		add(metadata.TARGETS, t.Signed.Version, t.Signed.Expires, "'fwctl publish' (targets keys; the ceremony if offline)")
		for _, name := range DelegatedNames(t) {
			if d, err := metadata.Targets().FromFile(latest(name)); err == nil {
				add(name, d.Signed.Version, d.Signed.Expires, "'fwctl publish' ("+name+" keys; the ceremony if offline)")
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out, nil
}

// ExpiringWithin returns the roles of list that expire within d of now
// (expired ones included).
func ExpiringWithin(list []Expiry, d time.Duration) []Expiry {
	var out []Expiry
	for _, e := range list {
		if e.Left < d {
			out = append(out, e)
		}
	}
	return out
}

// ExpiringWithinEach returns the roles of list that expire within
// window(role) of now, in list's order.
func ExpiringWithinEach(list []Expiry, window func(role string) time.Duration) []Expiry {
	var out []Expiry
	for _, e := range list {
		if e.Left < window(e.Role) {
			out = append(out, e)
		}
	}
	return out
}
