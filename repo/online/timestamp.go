package online

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/signer"
)

// LatestRoot returns the newest N.root.json of a published repository. It
// does not verify the chain: OnlineTimestamp does, from the root it trusts.
func LatestRoot(dir string) (*Root, error) {
	return latestRootIn(context.Background(), blob.Dir(dir))
}

// latestRootIn returns the newest metadata/N.root.json in st, unverified.
func latestRootIn(ctx context.Context, st blob.Store) (*Root, error) {
	files, err := st.List(ctx, layout.MetadataDir+"/")
	if err != nil {
		return nil, err
	}
	newest, name := int64(0), ""
	for _, f := range files {
		v, role, ok := layout.ParseVersioned(f.Name[len(layout.MetadataDir)+1:])
		if ok && role == metadata.ROOT && v > newest {
			newest, name = v, f.Name
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%s: no metadata/N.root.json: not a published fwctl repository", st)
	}
	b, err := readLimited(ctx, st, name, layout.MaxRootLength)
	if err != nil {
		return nil, err
	}
	root, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", name, st, err)
	}
	return root, nil
}

// readLimited reads name whole; a file longer than limit is refused
// (ErrRefused): the re-signer never signs over an oversized file.
func readLimited(ctx context.Context, st blob.Store, name string, limit int64) ([]byte, error) {
	b, err := blob.ReadLimited(ctx, st, name, limit)
	if errors.Is(err, blob.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return b, err
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
	ts, err := metadata.Timestamp().FromFile(filepath.Join(dir, filepath.FromSlash(layout.Timestamp)))
	if err != nil {
		return time.Time{}, err
	}
	return ts.Signed.Expires, nil
}

// ReadTimestamp reads metadata/timestamp.json from st, unverified.
func ReadTimestamp(ctx context.Context, st blob.Store) (*metadata.Metadata[metadata.TimestampType], error) {
	b, err := readLimited(ctx, st, layout.Timestamp, layout.MaxTimestampLength)
	if err != nil {
		return nil, fmt.Errorf("read timestamp: %w", err)
	}
	ts, err := metadata.Timestamp().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("read timestamp from %s: %w", st, err)
	}
	return ts, nil
}

// ResignTimestamp re-signs a published repository's timestamp.json with a
// new version and expiry (online key), replacing it atomically. It checks
// nothing about what it re-signs: a server uses OnlineTimestamp.Check,
// which re-signs only what verifies.
func ResignTimestamp(dir string, key crypto.Signer, lifetime time.Duration, now time.Time) (int64, error) {
	return ResignUnverified(context.Background(), blob.Dir(dir), key, lifetime, now)
}

// ResignUnverified is ResignTimestamp for any store. The new timestamp
// replaces only the exact timestamp.json it was made from (blob.Swapper):
// if a publish wrote a newer one in between, nothing is written and the
// error wraps blob.ErrChanged, so the caller reads again next time instead
// of un-publishing that release. Its version is always one more than the
// version it replaces, which is therefore the one stored.
func ResignUnverified(ctx context.Context, st blob.Store, key crypto.Signer, lifetime time.Duration, now time.Time) (int64, error) {
	sw, err := swapper(st)
	if err != nil {
		return 0, err
	}
	var v int64
	_, err = blob.Replace(ctx, sw, layout.Timestamp, 1, func(cur []byte, _ string) ([]byte, error) {
		if cur == nil {
			return nil, fmt.Errorf("read timestamp from %s: %w", st, blob.ErrNotExist)
		}
		ts, err := metadata.Timestamp().FromBytes(cur)
		if err != nil {
			return nil, fmt.Errorf("read timestamp from %s: %w", st, err)
		}
		v = ts.Signed.Version + 1
		return resign(ts, key, lifetime, now)
	})
	if err != nil {
		return 0, fmt.Errorf("write re-signed timestamp v%d: %w", v, err)
	}
	return v, nil
}

func swapper(st blob.Store) (blob.Swapper, error) {
	sw, ok := st.(blob.Swapper)
	if !ok {
		return nil, fmt.Errorf("re-sign timestamp in %s: the store cannot replace a file conditionally, so a re-sign could overwrite a newer publish; use a directory or S3", st)
	}
	return sw, nil
}

// resign returns ts's bytes one version up, expiring lifetime after now,
// signed by key alone. It changes nothing else: the snapshot it names is
// the one ts named.
func resign(ts *metadata.Metadata[metadata.TimestampType], key crypto.Signer, lifetime time.Duration, now time.Time) ([]byte, error) {
	next := *ts
	next.Signed.Version = ts.Signed.Version + 1
	next.Signed.Expires = now.UTC().Add(lifetime).Truncate(time.Second)
	next.Signatures = nil
	if _, err := next.Sign(signer.TUF(key)); err != nil {
		return nil, fmt.Errorf("sign timestamp: %w", err)
	}
	b, err := next.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("encode timestamp: %w", err)
	}
	return b, nil
}
