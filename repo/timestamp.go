package repo

import (
	"crypto"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/signer"
)

// LatestRoot returns the newest N.root.json of a published repository.
func LatestRoot(dir string) (*metadata.Metadata[metadata.RootType], error) {
	roots, err := versionedFiles(filepath.Join(dir, "metadata"), "root")
	if err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: no N.root.json: not a published fwctl repository", dir)
	}
	return metadata.Root().FromFile(filepath.Join(dir, "metadata", roots[len(roots)-1]))
}

// CheckTimestampKey reports whether key is authorised for timestamp in the
// repository's current root.
func CheckTimestampKey(dir string, key crypto.Signer) error {
	root, err := LatestRoot(dir)
	if err != nil {
		return err
	}
	_, id, err := signer.TUFKey(key.Public())
	if err != nil {
		return err
	}
	if !slices.Contains(root.Signed.Roles[metadata.TIMESTAMP].KeyIDs, id) {
		return fmt.Errorf("key %s is not a timestamp key of this repository's root (version %d)", id, root.Signed.Version)
	}
	return nil
}

// TimestampExpires returns the expiry of the published timestamp.
func TimestampExpires(dir string) (time.Time, error) {
	ts, err := metadata.Timestamp().FromFile(filepath.Join(dir, "metadata", "timestamp.json"))
	if err != nil {
		return time.Time{}, err
	}
	return ts.Signed.Expires, nil
}

// ResignTimestamp re-signs a published repository's timestamp.json with a
// new version and expiry (online key), replacing it atomically.
func ResignTimestamp(dir string, key crypto.Signer, lifetime time.Duration, now time.Time) (int64, error) {
	path := filepath.Join(dir, "metadata", "timestamp.json")
	ts, err := metadata.Timestamp().FromFile(path)
	if err != nil {
		return 0, fmt.Errorf("read timestamp: %w", err)
	}
	ts.Signed.Version++
	ts.Signed.Expires = now.UTC().Add(lifetime)
	ts.ClearSignatures()
	if _, err := ts.Sign(signer.TUF(key)); err != nil {
		return 0, fmt.Errorf("sign timestamp: %w", err)
	}
	if err := writeMetadata(path, ts); err != nil {
		return 0, err
	}
	return ts.Signed.Version, nil
}
