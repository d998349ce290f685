package repo

import (
	"context"
	"crypto"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

// LatestRoot returns the newest N.root.json of a published repository.
func LatestRoot(dir string) (*metadata.Metadata[metadata.RootType], error) {
	return latestRootIn(context.Background(), blob.Dir(dir))
}

// latestRootIn returns the newest metadata/N.root.json in st.
func latestRootIn(ctx context.Context, st blob.Store) (*metadata.Metadata[metadata.RootType], error) {
	files, err := st.List(ctx, "metadata/")
	if err != nil {
		return nil, err
	}
	newest, name := int64(0), ""
	for _, f := range files {
		v, rest, ok := strings.Cut(strings.TrimPrefix(f.Name, "metadata/"), ".")
		n, err := strconv.ParseInt(v, 10, 64)
		if ok && err == nil && rest == "root.json" && n > newest {
			newest, name = n, f.Name
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%s: no metadata/N.root.json: not a published fwctl repository", st)
	}
	b, err := blob.ReadAll(ctx, st, name)
	if err != nil {
		return nil, err
	}
	root, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", name, st, err)
	}
	return root, nil
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
	return resignTimestampIn(context.Background(), blob.Dir(dir), key, lifetime, now)
}

// readTimestamp reads metadata/timestamp.json from st.
func readTimestamp(ctx context.Context, st blob.Store) (*metadata.Metadata[metadata.TimestampType], error) {
	b, err := blob.ReadAll(ctx, st, timestampName)
	if err != nil {
		return nil, fmt.Errorf("read timestamp: %w", err)
	}
	ts, err := metadata.Timestamp().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("read timestamp from %s: %w", st, err)
	}
	return ts, nil
}

// timestampName is where a repository keeps its timestamp.
const timestampName = "metadata/timestamp.json"

// resignTimestampIn is ResignTimestamp for any store. The new timestamp
// replaces only the exact timestamp.json it was made from (blob.Swapper):
// if a publish wrote a newer one in between, nothing is written and the
// error wraps blob.ErrChanged, so the caller reads again next time instead
// of un-publishing that release. Its version is always one more than the
// version it replaces, which is therefore the one stored.
func resignTimestampIn(ctx context.Context, st blob.Store, key crypto.Signer, lifetime time.Duration, now time.Time) (int64, error) {
	sw, ok := st.(blob.Swapper)
	if !ok {
		return 0, fmt.Errorf("re-sign timestamp in %s: the store cannot replace a file conditionally, so a re-sign could overwrite a newer publish; use a directory or S3", st)
	}
	old, tag, err := sw.GetTagged(ctx, timestampName)
	if err != nil {
		return 0, fmt.Errorf("read timestamp: %w", err)
	}
	ts, err := metadata.Timestamp().FromBytes(old)
	if err != nil {
		return 0, fmt.Errorf("read timestamp from %s: %w", st, err)
	}
	ts.Signed.Version++
	ts.Signed.Expires = now.UTC().Add(lifetime)
	ts.ClearSignatures()
	if _, err := ts.Sign(signer.TUF(key)); err != nil {
		return 0, fmt.Errorf("sign timestamp: %w", err)
	}
	b, err := ts.ToBytes(true)
	if err != nil {
		return 0, fmt.Errorf("encode timestamp: %w", err)
	}
	if err := sw.Swap(ctx, timestampName, b, tag); err != nil {
		return 0, fmt.Errorf("write re-signed timestamp v%d: %w", ts.Signed.Version, err)
	}
	return ts.Signed.Version, nil
}
