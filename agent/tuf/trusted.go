package tuf

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"slices"
	"time"
)

// Trusted is the set of metadata trusted so far in one update cycle, in
// the order of the specification's client workflow: root (5.3), timestamp
// (5.4), snapshot (5.5), targets (5.6) and delegated targets (5.6.7). Each
// Update method verifies new bytes against what is already trusted and
// keeps them only if they pass.
type Trusted struct {
	// Now is the reference time for expiry (the caller's clock).
	Now time.Time

	Root      *Root
	Timestamp *Timestamp
	Snapshot  *Snapshot
	Targets   *Targets

	// delegated holds delegated roles verified through one delegation:
	// the key is delegator + "\x00" + role. A role reached through another
	// delegator is verified again against that delegation (go-tuf and
	// python-tuf key their cache by role name alone, so a role verified
	// through one delegator is accepted through another).
	delegated map[string]*Targets
	// roleBytes holds delegated metadata already checked against the
	// snapshot (length, hashes and version), by role name.
	roleBytes map[string][]byte
}

// NewTrusted starts from root, the locally trusted root metadata. It must
// be signed by its own root threshold; its expiry is checked only once the
// rotation chain is done (CheckRoot).
func NewTrusted(root []byte, now time.Time) (*Trusted, error) {
	r, env, err := parseRoot("root.json", root)
	if err != nil {
		return nil, err
	}
	rk := r.Roles[RoleRoot]
	if err := verifyThreshold("root.json", RoleRoot, env, rk.KeyIDs, rk.Threshold, r.Keys); err != nil {
		return nil, err
	}
	return &Trusted{Now: now, Root: r}, nil
}

// UpdateRoot verifies b as the next root version (5.3.4-5.3.8): signed by
// the trusted root's threshold and by its own, version exactly one more.
func (t *Trusted) UpdateRoot(b []byte) error {
	file := "root.json"
	if t.Timestamp != nil {
		return errors.New("tuf: root updated after timestamp")
	}
	r, env, err := parseRoot(file, b)
	if err != nil {
		return err
	}
	old := t.Root.Roles[RoleRoot]
	if err := verifyThreshold(file, RoleRoot, env, old.KeyIDs, old.Threshold, t.Root.Keys); err != nil {
		return fail(file, ErrSignature, "version %d is not signed by the threshold of trusted root version %d: %v", r.Version, t.Root.Version, err.(*Error).Msg)
	}
	nk := r.Roles[RoleRoot]
	if err := verifyThreshold(file, RoleRoot, env, nk.KeyIDs, nk.Threshold, r.Keys); err != nil {
		return fail(file, ErrSignature, "version %d is not signed by its own root threshold: %v", r.Version, err.(*Error).Msg)
	}
	if r.Version != t.Root.Version+1 {
		kind := ErrMixAndMatch
		if r.Version <= t.Root.Version {
			kind = ErrRollback
		}
		return fail(file, kind, "version %d, want %d", r.Version, t.Root.Version+1)
	}
	t.Root = r
	return nil
}

// CheckRoot is 5.3.10: the final root must not be expired.
func (t *Trusted) CheckRoot() error {
	if !t.Now.Before(t.Root.Expires) {
		return fail("root.json", ErrFreeze, "version %d expired at %s", t.Root.Version, t.Root.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// RoleKeysChanged reports whether role's keys or threshold differ between
// roots a and b (5.3.11: on a timestamp or snapshot key rotation the
// cached timestamp and snapshot are discarded, to recover from a
// fast-forward attack).
func RoleKeysChanged(a, b *Root, role string) bool {
	x, y := a.Roles[role], b.Roles[role]
	if x.Threshold != y.Threshold || len(x.KeyIDs) != len(y.KeyIDs) {
		return true
	}
	for _, id := range x.KeyIDs {
		ka, kb := a.Keys[id], b.Keys[id]
		if !slices.Contains(y.KeyIDs, id) || (ka == nil) != (kb == nil) || ka != nil && *ka != *kb {
			return true
		}
	}
	return false
}

// UpdateTimestamp verifies b as timestamp metadata (5.4). It reports false
// (and keeps the trusted one) when b has the trusted version. An expired
// timestamp is kept as trusted, for rollback checks of the next one, and
// refused with ErrFreeze.
func (t *Trusted) UpdateTimestamp(b []byte) (bool, error) {
	file := "timestamp.json"
	if t.Snapshot != nil {
		return false, errors.New("tuf: timestamp updated after snapshot")
	}
	if err := t.CheckRoot(); err != nil {
		return false, err
	}
	ts, env, err := parseTimestamp(file, b)
	if err != nil {
		return false, err
	}
	rk := t.Root.Roles[RoleTimestamp]
	if err := verifyThreshold(file, RoleTimestamp, env, rk.KeyIDs, rk.Threshold, t.Root.Keys); err != nil {
		return false, err
	}
	if old := t.Timestamp; old != nil {
		if ts.Version < old.Version {
			return false, fail(file, ErrRollback, "version %d, the trusted one is %d", ts.Version, old.Version)
		}
		if ts.Version == old.Version {
			return false, nil
		}
		if n, o := ts.Meta["snapshot.json"].Version, old.Meta["snapshot.json"].Version; n < o {
			return false, fail(file, ErrRollback, "lists snapshot version %d, the trusted timestamp lists %d", n, o)
		}
	}
	t.Timestamp = ts
	return true, t.checkTimestamp()
}

func (t *Trusted) checkTimestamp() error {
	if !t.Now.Before(t.Timestamp.Expires) {
		return fail("timestamp.json", ErrFreeze, "version %d expired at %s", t.Timestamp.Version, t.Timestamp.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// SnapshotMeta is what the trusted timestamp says of snapshot.json.
func (t *Trusted) SnapshotMeta() *MetaFile { return t.Timestamp.Meta["snapshot.json"] }

// UpdateSnapshot verifies b as snapshot metadata (5.5). cached says b
// comes from the local store, not the network: its hashes are then not
// compared with the timestamp's (it was checked when stored), only its
// version. An expired or mismatched snapshot is kept for the rollback
// checks of the next one and refused.
func (t *Trusted) UpdateSnapshot(b []byte, cached bool) error {
	file := "snapshot.json"
	if t.Timestamp == nil || t.Targets != nil {
		return errors.New("tuf: snapshot updated out of order")
	}
	if err := t.checkTimestamp(); err != nil {
		return err
	}
	meta := t.SnapshotMeta()
	if !cached {
		if err := checkBytes(file, b, meta); err != nil {
			return err
		}
	}
	s, env, err := parseSnapshot(file, b)
	if err != nil {
		return err
	}
	rk := t.Root.Roles[RoleSnapshot]
	if err := verifyThreshold(file, RoleSnapshot, env, rk.KeyIDs, rk.Threshold, t.Root.Keys); err != nil {
		return err
	}
	if old := t.Snapshot; old != nil {
		for name, om := range old.Meta {
			nm := s.Meta[name]
			if nm == nil {
				return fail(file, ErrRollback, "version %d no longer lists %s, which version %d did", s.Version, name, old.Version)
			}
			if nm.Version < om.Version {
				return fail(file, ErrRollback, "lists %s version %d, the trusted snapshot lists %d", name, nm.Version, om.Version)
			}
		}
	}
	t.Snapshot = s
	return t.checkSnapshot()
}

func (t *Trusted) checkSnapshot() error {
	file := "snapshot.json"
	if !t.Now.Before(t.Snapshot.Expires) {
		return fail(file, ErrFreeze, "version %d expired at %s", t.Snapshot.Version, t.Snapshot.Expires.UTC().Format(time.RFC3339))
	}
	if want := t.SnapshotMeta().Version; t.Snapshot.Version != want {
		return fail(file, ErrMixAndMatch, "version %d, timestamp.json lists version %d", t.Snapshot.Version, want)
	}
	return nil
}

// RoleMeta is what the trusted snapshot says of role's metadata file.
func (t *Trusted) RoleMeta(role string) (*MetaFile, error) {
	if t.Snapshot == nil {
		return nil, errors.New("tuf: no trusted snapshot")
	}
	m := t.Snapshot.Meta[role+".json"]
	if m == nil {
		return nil, fail(role+".json", ErrMixAndMatch, "snapshot.json version %d does not list it", t.Snapshot.Version)
	}
	return m, nil
}

// UpdateTargets verifies b as the top-level targets metadata (5.6).
func (t *Trusted) UpdateTargets(b []byte) error {
	if t.Snapshot == nil {
		return errors.New("tuf: targets updated before snapshot")
	}
	if err := t.checkSnapshot(); err != nil {
		return err
	}
	rk := t.Root.Roles[RoleTargets]
	tg, err := t.verifyTargets(RoleTargets, b, rk.KeyIDs, rk.Threshold, t.Root.Keys)
	if err != nil {
		return err
	}
	t.Targets = tg
	return nil
}

// verifyTargets checks b against the snapshot (length, hashes, version),
// the keys and threshold for role, and expiry.
func (t *Trusted) verifyTargets(role string, b []byte, keyIDs []string, threshold int, keys map[string]*Key) (*Targets, error) {
	file := role + ".json"
	meta, err := t.RoleMeta(role)
	if err != nil {
		return nil, err
	}
	if err := checkBytes(file, b, meta); err != nil {
		return nil, err
	}
	tg, env, err := parseTargets(file, b)
	if err != nil {
		return nil, err
	}
	if err := verifyThreshold(file, role, env, keyIDs, threshold, keys); err != nil {
		return nil, err
	}
	if tg.Version != meta.Version {
		return nil, fail(file, ErrMixAndMatch, "version %d, snapshot.json lists version %d", tg.Version, meta.Version)
	}
	if !t.Now.Before(tg.Expires) {
		return nil, fail(file, ErrFreeze, "version %d expired at %s", tg.Version, tg.Expires.UTC().Format(time.RFC3339))
	}
	return tg, nil
}

// knownHashes are the hash algorithms this client checks.
var knownHashes = map[string]func() hash.Hash{"sha256": sha256.New, "sha512": sha512.New}

// checkBytes compares metadata bytes with the length and hashes listed for
// them, where listed.
func checkBytes(file string, b []byte, m *MetaFile) error {
	if m.Length > 0 && int64(len(b)) != m.Length {
		return fail(file, ErrMixAndMatch, "%d bytes, the signed length is %d", len(b), m.Length)
	}
	if len(m.Hashes) == 0 {
		return nil
	}
	return checkHashes(file, ErrMixAndMatch, m.Hashes, func(h hash.Hash) { h.Write(b) })
}

// checkHashes checks every listed algorithm the client knows, and needs at
// least one known.
func checkHashes(file string, kind error, want map[string]HexBytes, feed func(hash.Hash)) error {
	known := 0
	for alg, w := range want {
		newHash := knownHashes[alg]
		if newHash == nil {
			continue
		}
		known++
		h := newHash()
		feed(h)
		if got := h.Sum(nil); !bytes.Equal(got, w) {
			return fail(file, kind, "%s %s, signed %s", alg, hex.EncodeToString(got), hex.EncodeToString(w))
		}
	}
	if known == 0 {
		return fail(file, kind, "no hash with an algorithm this client knows (sha256, sha512)")
	}
	return nil
}

// Hashers returns a hash for every algorithm of tf the client knows (at
// least one, or an error).
func Hashers(tf *TargetFile) (map[string]hash.Hash, error) {
	hs := map[string]hash.Hash{}
	for alg := range tf.Hashes {
		if f := knownHashes[alg]; f != nil {
			hs[alg] = f()
		}
	}
	if len(hs) == 0 {
		return nil, fail("targets/"+tf.Path, ErrArbitrarySoftware, "no hash with an algorithm this client knows (sha256, sha512)")
	}
	return hs, nil
}

// CheckTarget compares the sums of hs (from Hashers, fed with n bytes)
// with tf's signed length and hashes.
func CheckTarget(tf *TargetFile, n int64, hs map[string]hash.Hash) error {
	file := "targets/" + tf.Path
	if n != tf.Length {
		return fail(file, ErrArbitrarySoftware, "%d bytes, the signed length is %d", n, tf.Length)
	}
	if len(hs) == 0 {
		return fail(file, ErrArbitrarySoftware, "no hash with an algorithm this client knows (sha256, sha512)")
	}
	for alg, h := range hs {
		if got := h.Sum(nil); !bytes.Equal(got, tf.Hashes[alg]) {
			return fail(file, ErrArbitrarySoftware, "%s %s, signed %s: the server or a mirror altered it", alg, hex.EncodeToString(got), hex.EncodeToString(tf.Hashes[alg]))
		}
	}
	return nil
}
