package online

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
)

// ErrRefused is wrapped by every refusal to re-sign: the repository holds
// metadata that does not verify under the root fwrepo trusts (a forged or
// replaced timestamp.json, snapshot or root), or that goes back from what
// fwrepo already saw. Nothing is written; fwrepo's /healthz reports it
// until a valid publish replaces the file.
var ErrRefused = errors.New("refusing to re-sign timestamp.json")

// Root is signed root metadata.
type Root = metadata.Metadata[metadata.RootType]

// nextRoot verifies b as the root that follows cur in TUF's chain: signed
// by a threshold of cur's root keys and of its own, with version cur+1.
func nextRoot(cur *Root, b []byte) (*Root, error) {
	if err := manifests.RejectDuplicateKeys(b); err != nil {
		return nil, fmt.Errorf("root v%d: %w", cur.Signed.Version+1, err)
	}
	next, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("root v%d: %w", cur.Signed.Version+1, err)
	}
	if next.Signed.Version != cur.Signed.Version+1 {
		return nil, fmt.Errorf("%d.root.json says version %d", cur.Signed.Version+1, next.Signed.Version)
	}
	if err := cur.VerifyDelegate(metadata.ROOT, next); err != nil {
		return nil, fmt.Errorf("root v%d is not signed by root v%d's root keys: %w", next.Signed.Version, cur.Signed.Version, err)
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		return nil, fmt.Errorf("root v%d is not signed by its own root keys: %w", next.Signed.Version, err)
	}
	return next, nil
}

// selfSignedRoot parses b as a root that a threshold of its own root keys
// signed (the first root fwrepo trusts).
func selfSignedRoot(b []byte) (*Root, error) {
	if err := manifests.RejectDuplicateKeys(b); err != nil {
		return nil, err
	}
	r, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, err
	}
	if err := r.VerifyDelegate(metadata.ROOT, r); err != nil {
		return nil, fmt.Errorf("root v%d is not signed by its own root keys: %w", r.Signed.Version, err)
	}
	return r, nil
}

// seen is what a re-signer already accepted: versions must not go back.
type seen struct {
	timestamp, snapshot int64
	// own is the SHA-256 of the last timestamp.json this re-signer wrote.
	own *[32]byte
}

// verifyTimestamp is the pure half of a re-sign decision: b (the stored
// timestamp.json) is signed by a threshold of root's timestamp keys or is
// the file this re-signer last wrote, its version and its snapshot's are
// not below what was seen, and it names a snapshot. The snapshot itself is
// checked by verifySnapshot.
func verifyTimestamp(root *Root, b []byte, s seen) (*metadata.Metadata[metadata.TimestampType], error) {
	// A member named twice reads two ways (go-tuf keeps the last).
	if err := manifests.RejectDuplicateKeys(b); err != nil {
		return nil, fmt.Errorf("%w: timestamp.json: %w", ErrRefused, err)
	}
	ts, err := metadata.Timestamp().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: timestamp.json is not timestamp metadata: %w", ErrRefused, err)
	}
	own := s.own != nil && sha256.Sum256(b) == *s.own
	if !own {
		if err := root.VerifyDelegate(metadata.TIMESTAMP, ts); err != nil {
			return nil, fmt.Errorf("%w: timestamp.json v%d is not signed by root v%d's timestamp keys (threshold %d), nor written by this fwrepo: %w; "+
				"whoever can write the storage may have forged it: check the storage's access, then publish again with 'fwctl publish'",
				ErrRefused, ts.Signed.Version, root.Signed.Version, root.Signed.Roles[metadata.TIMESTAMP].Threshold, err)
		}
	}
	if ts.Signed.Version < s.timestamp {
		return nil, fmt.Errorf("%w: timestamp.json v%d is older than v%d, which this fwrepo already saw: an old timestamp was put back (a rollback); publish again with 'fwctl publish'",
			ErrRefused, ts.Signed.Version, s.timestamp)
	}
	meta := ts.Signed.Meta["snapshot.json"]
	if meta == nil {
		return nil, fmt.Errorf("%w: timestamp.json v%d names no snapshot.json", ErrRefused, ts.Signed.Version)
	}
	if meta.Version < s.snapshot {
		return nil, fmt.Errorf("%w: timestamp.json v%d names snapshot v%d, older than v%d, which this fwrepo already saw (a rollback); publish again with 'fwctl publish'",
			ErrRefused, ts.Signed.Version, meta.Version, s.snapshot)
	}
	return ts, nil
}

// verifySnapshot checks b, the snapshot meta names: its length and hashes
// as meta records them, a threshold of root's snapshot keys, the version
// meta names, and that it has not expired at now (a re-signed timestamp
// cannot make an expired snapshot valid again).
func verifySnapshot(root *Root, meta *metadata.MetaFiles, b []byte, now time.Time) error {
	name := fmt.Sprintf("%d.snapshot.json", meta.Version)
	if err := meta.VerifyLengthHashes(b); err != nil {
		return fmt.Errorf("%w: %s is not the file timestamp.json names: %w; was it replaced after publishing?", ErrRefused, name, err)
	}
	if err := manifests.RejectDuplicateKeys(b); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrRefused, name, err)
	}
	snap, err := metadata.Snapshot().FromBytes(b)
	if err != nil {
		return fmt.Errorf("%w: %s is not snapshot metadata: %w", ErrRefused, name, err)
	}
	if err := root.VerifyDelegate(metadata.SNAPSHOT, snap); err != nil {
		return fmt.Errorf("%w: %s is not signed by root v%d's snapshot keys: %w", ErrRefused, name, root.Signed.Version, err)
	}
	if snap.Signed.Version != meta.Version {
		return fmt.Errorf("%w: %s says version %d", ErrRefused, name, snap.Signed.Version)
	}
	if snap.Signed.IsExpired(now) {
		return fmt.Errorf("%w: snapshot v%d expired at %s; a fresh timestamp cannot make it valid: publish again with 'fwctl publish'",
			ErrRefused, snap.Signed.Version, snap.Signed.Expires.Format(time.RFC3339))
	}
	return nil
}
