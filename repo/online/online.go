// Package online is fwrepo's online role: it keeps a published
// repository's timestamp.json fresh with the online timestamp key, and
// re-signs only a timestamp that verifies under the root it trusts (or that
// it wrote itself) and that names a snapshot that verifies. It never links
// the release side (package repo, the transparency log client): it imports
// only the blob stores, the key backends and the naming rule.
package online

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/signer"
)

// ErrKeyNotAuthorised means the online timestamp key is not one of the
// timestamp keys of the repository's newest root (the key was rotated and
// the new one is not in place yet): nothing is re-signed until it is.
var ErrKeyNotAuthorised = errors.New("online key is not a timestamp key of the current root")

// Timestamp keeps a published repository's timestamp.json fresh with
// fwrepo's online key, and follows what is published while it runs: a new
// root (a rotated timestamp key), new targets and snapshot, and a key file
// replaced in place. It re-signs only what verifies: a root chain from
// TrustedRoot, a timestamp signed by that root's timestamp keys (or the one
// it wrote last), a snapshot the timestamp names, signed by the snapshot
// keys, and versions that never go back from what it saw. Each re-sign
// raises the version by exactly one. It is not safe for concurrent use:
// one goroutine calls Check and Reload.
type Timestamp struct {
	// Dir is the published repository directory; ignored when Store is set.
	Dir string
	// Store holds the published repository (a directory or an S3 bucket,
	// see blob.Open); re-signed timestamps are written back to it.
	Store blob.Store
	// TrustedRoot is the root metadata (any version) the repository's
	// chain is verified from, such as the 1.root.json devices are
	// provisioned with. Empty means the repository's own 1.root.json as
	// first read (trust on first use: whoever can write the storage before
	// fwrepo starts can choose it).
	TrustedRoot []byte
	// KeyURI names the key: a key file or file:, pkcs11: or tpm: URI.
	KeyURI string
	// Options open the key (passphrase, PIN).
	Options signer.Options
	// Lifetime of re-signed timestamps; re-signed when less than half is
	// left.
	Lifetime time.Duration
	// Log receives key changes, re-signs and refusals (default: discarded).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time

	key     crypto.Signer
	keyID   string
	keyFile os.FileInfo // the key file when it was loaded (nil: not a file)
	root    *Root       // the newest root verified from TrustedRoot
	seen    seen
}

// ResignResult says what one Check did.
type ResignResult struct {
	Resigned bool      // a new timestamp.json was written
	Version  int64     // its version
	Expires  time.Time // its expiry
	KeyID    string    // the key that signed it
	Reason   string    // why it was re-signed
	// Lost is set when timestamp.json changed between reading and
	// writing it (a publish landed): nothing was written, and the next
	// Check reads the new one.
	Lost bool
}

func (o *Timestamp) store() blob.Store {
	if o.Store == nil {
		return blob.Dir(o.Dir)
	}
	return o.Store
}

func (o *Timestamp) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

func (o *Timestamp) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// keyFileInfo stats the key file, or returns nil for keys that are not
// files (TPM, PKCS#11: those are re-opened by Reload or when the root no
// longer authorises them) and for a missing file.
func (o *Timestamp) keyFileInfo() os.FileInfo {
	r, err := signer.ParseRef(o.KeyURI)
	if err != nil || r.Scheme != "file" {
		return nil
	}
	fi, err := os.Stat(r.Path)
	if err != nil {
		return nil
	}
	return fi
}

// keyFileChanged reports whether the key file was replaced (renamed over)
// or rewritten since the key was loaded.
func (o *Timestamp) keyFileChanged() bool {
	fi := o.keyFileInfo()
	if fi == nil || o.keyFile == nil {
		return (fi == nil) != (o.keyFile == nil)
	}
	return !os.SameFile(fi, o.keyFile) || fi.Size() != o.keyFile.Size() || !fi.ModTime().Equal(o.keyFile.ModTime())
}

// updateRoot verifies the repository's root chain from the newest root
// verified so far (at first, TrustedRoot or the repository's 1.root.json)
// up to the newest N.root.json the store holds. A root that does not
// verify stops everything: it wraps ErrRefused.
func (o *Timestamp) updateRoot(ctx context.Context) error {
	st := o.store()
	if o.root == nil {
		b, origin := o.TrustedRoot, "the trusted root"
		if len(b) == 0 {
			name := layout.Metadata(layout.Versioned(1, metadata.ROOT))
			var err error
			if b, err = readLimited(ctx, st, name, layout.MaxRootLength); err != nil {
				return fmt.Errorf("read the first root: %w (is %s a published fwctl repository?)", err, st)
			}
			origin = name + " in " + st.String()
			o.log().Warn("trusting the repository's first root as read now; pin it with --root", "root", name)
		}
		r, err := selfSignedRoot(b)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRefused, origin, err)
		}
		o.root = r
	}
	for {
		v := o.root.Signed.Version + 1
		name := layout.Metadata(layout.Versioned(v, metadata.ROOT))
		b, err := readLimited(ctx, st, name, layout.MaxRootLength)
		if errors.Is(err, blob.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		next, err := nextRoot(o.root, b)
		if err != nil {
			return fmt.Errorf("%w: %s in %s: %w; devices will refuse it too: publish a root signed by root v%d's keys",
				ErrRefused, name, st, err, o.root.Signed.Version)
		}
		o.log().Info("new root published", "root_version", next.Signed.Version, "previous", o.root.Signed.Version)
		o.root = next
	}
}

// authorised reports whether keyID is a timestamp key of the newest root.
func (o *Timestamp) authorised(keyID string) bool {
	return slices.Contains(o.root.Signed.Roles[metadata.TIMESTAMP].KeyIDs, keyID)
}

// Reload opens the key again (fwrepo does on SIGHUP) and keeps it if the
// newest root authorises it for timestamp; otherwise it keeps the key it
// had and returns an error (wrapping ErrKeyNotAuthorised when the key
// opened but is not the root's, ErrRefused when the root chain does not
// verify).
func (o *Timestamp) Reload(reason string) error {
	fi := o.keyFileInfo()
	key, err := signer.Open(o.KeyURI, o.Options)
	if err != nil {
		return fmt.Errorf("open timestamp key %s: %w", o.KeyURI, err)
	}
	if err := o.updateRoot(context.Background()); err != nil {
		signer.Close(key)
		return err
	}
	_, id, err := signer.TUFKey(key.Public())
	if err == nil && !o.authorised(id) {
		err = fmt.Errorf("%w: key %s from %s is not among root v%d's timestamp keys; put the rotated key there and send fwrepo SIGHUP",
			ErrKeyNotAuthorised, id, o.KeyURI, o.root.Signed.Version)
	}
	if err != nil {
		signer.Close(key)
		return err
	}
	old, oldID := o.key, o.keyID
	o.key, o.keyID, o.keyFile = key, id, fi
	if old != nil {
		signer.Close(old)
	}
	if oldID != id {
		o.log().Info("timestamp key loaded", "keyid", id, "previous_keyid", oldID, "root_version", o.root.Signed.Version, "reason", reason)
	} else {
		o.log().Info("timestamp key reloaded", "keyid", id, "root_version", o.root.Signed.Version, "reason", reason)
	}
	return nil
}

// Check re-reads the repository and the key and re-signs timestamp.json
// when it is due: less than half its lifetime left, or not signed by the
// online key (after the key changed, or a publish signed it with another
// key). A key file replaced in place is re-opened first (if the new file
// cannot be used yet the previous key stays), and so is a key the newest
// root no longer authorises; if that leaves no authorised key it returns
// an error wrapping ErrKeyNotAuthorised and writes nothing, since a
// timestamp signed with a revoked key would only make devices refuse the
// repository. Metadata that does not verify (see Timestamp) is never
// re-signed: the error wraps ErrRefused and nothing is written.
func (o *Timestamp) Check() (*ResignResult, error) {
	if o.key == nil || o.keyFileChanged() {
		if err := o.Reload("key file changed"); err != nil {
			if o.key == nil || errors.Is(err, ErrRefused) {
				return nil, err
			}
			// Half-copied, or not the root's yet: keep signing with the
			// key we have while the root still authorises it; retry on
			// the next Check.
			o.log().Warn("timestamp key file changed but cannot be used; keeping the previous key", "keyid", o.keyID, "err", err)
		}
	}
	ctx := context.Background()
	if err := o.updateRoot(ctx); err != nil {
		return nil, err
	}
	if !o.authorised(o.keyID) {
		if err := o.Reload(fmt.Sprintf("root v%d revoked the key", o.root.Signed.Version)); err != nil {
			return nil, err
		}
	}
	st := o.store()
	sw, err := swapper(st)
	if err != nil {
		return nil, err
	}
	if fi, err := st.Stat(ctx, layout.Timestamp); err == nil && fi.Size > layout.MaxTimestampLength {
		return nil, fmt.Errorf("%w: %s in %s is %d bytes, more than the %d a device reads", ErrRefused, layout.Timestamp, st, fi.Size, layout.MaxTimestampLength)
	}
	now := o.now()
	var (
		res  *ResignResult
		read *metadata.Metadata[metadata.TimestampType]
	)
	// The bytes verified are the bytes re-signed: Replace writes only if
	// timestamp.json still holds exactly what decide was given.
	written, err := blob.Replace(ctx, sw, layout.Timestamp, 1, func(cur []byte, _ string) ([]byte, error) {
		if cur == nil {
			return nil, fmt.Errorf("%s in %s: %w: publish first with 'fwctl publish'", layout.Timestamp, st, blob.ErrNotExist)
		}
		var b []byte
		var err error
		read, res, b, err = o.decide(ctx, cur, now)
		if b == nil {
			b = cur
		}
		return b, err
	})
	switch {
	case errors.Is(err, blob.ErrChanged):
		// Not an error: the newer timestamp stays, and is looked at
		// afresh on the next Check.
		o.log().Info("timestamp.json changed while re-signing it (a publish landed); kept the new one, re-reading on the next check",
			"read_version", read.Signed.Version, "err", err)
		return &ResignResult{Version: read.Signed.Version, Expires: read.Signed.Expires, Reason: res.Reason, Lost: true}, nil
	case err != nil:
		return nil, err
	case !res.Resigned:
		return res, nil
	}
	sum := sha256.Sum256(written)
	o.seen.own, o.seen.timestamp = &sum, res.Version
	return res, nil
}

// decide verifies cur (the stored timestamp.json) and the snapshot it
// names, and returns the re-signed bytes when a re-sign is due (nil when
// it is not). A refusal wraps ErrRefused.
func (o *Timestamp) decide(ctx context.Context, cur []byte, now time.Time) (*metadata.Metadata[metadata.TimestampType], *ResignResult, []byte, error) {
	ts, err := verifyTimestamp(o.root, cur, o.seen)
	if err != nil {
		return nil, nil, nil, err
	}
	meta := ts.Signed.Meta["snapshot.json"]
	limit := int64(layout.MaxSnapshotLength)
	if meta.Length > 0 {
		limit = meta.Length
	}
	st := o.store()
	snapName := layout.Metadata(layout.Versioned(meta.Version, metadata.SNAPSHOT))
	snap, err := readLimited(ctx, st, snapName, limit)
	if err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			err = fmt.Errorf("%w: timestamp.json v%d names %s, which is missing: %w", ErrRefused, ts.Signed.Version, snapName, err)
		}
		return nil, nil, nil, err
	}
	if err := verifySnapshot(o.root, meta, snap, now); err != nil {
		return nil, nil, nil, err
	}
	o.seen.timestamp, o.seen.snapshot = ts.Signed.Version, meta.Version
	res := &ResignResult{Version: ts.Signed.Version, Expires: ts.Signed.Expires}
	switch {
	case !slices.ContainsFunc(ts.Signatures, func(s metadata.Signature) bool { return s.KeyID == o.keyID }):
		res.Reason = "not signed by the online key"
	case ts.Signed.Expires.Sub(now) < o.Lifetime/2:
		res.Reason = "less than half its lifetime left"
	default:
		return ts, res, nil, nil
	}
	b, err := resign(ts, o.key, o.Lifetime, now)
	if err != nil {
		return nil, nil, nil, err
	}
	res.Resigned, res.Version, res.KeyID = true, ts.Signed.Version+1, o.keyID
	res.Expires = now.UTC().Add(o.Lifetime).Truncate(time.Second)
	return ts, res, b, nil
}

// Close releases the key (a TPM or PKCS#11 session).
func (o *Timestamp) Close() {
	if o.key != nil {
		signer.Close(o.key)
		o.key = nil
	}
}
