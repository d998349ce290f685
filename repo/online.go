package repo

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

// ErrOnlineKeyNotAuthorised means the online timestamp key is not one of
// the timestamp keys of the repository's newest root (the key was rotated
// and the new one is not in place yet): nothing is re-signed until it is.
var ErrOnlineKeyNotAuthorised = errors.New("online key is not a timestamp key of the current root")

// OnlineTimestamp keeps a published repository's timestamp.json fresh with
// fwrepo's online key, and follows what is published while it runs: a new
// root (a rotated timestamp key), new targets and snapshot, and a key file
// replaced in place. It is not safe for concurrent use: one goroutine
// calls Check and Reload.
type OnlineTimestamp struct {
	// Dir is the published repository directory; ignored when Store is set.
	Dir string
	// Store holds the published repository (a directory or an S3 bucket,
	// see blob.Open); re-signed timestamps are written back to it.
	Store blob.Store
	// KeyURI names the key: a key file or file:, pkcs11: or tpm: URI.
	KeyURI string
	// Options open the key (passphrase, PIN).
	Options signer.Options
	// Lifetime of re-signed timestamps; re-signed when less than half is
	// left.
	Lifetime time.Duration
	// Log receives key changes and re-signs (default: discarded).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time

	key         crypto.Signer
	keyID       string
	keyFile     os.FileInfo // the key file when it was loaded (nil: not a file)
	rootVersion int64
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

func (o *OnlineTimestamp) store() blob.Store {
	if o.Store == nil {
		return blob.Dir(o.Dir)
	}
	return o.Store
}

func (o *OnlineTimestamp) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

func (o *OnlineTimestamp) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// keyFileInfo stats the key file, or returns nil for keys that are not
// files (TPM, PKCS#11: those are re-opened by Reload or when the root no
// longer authorises them) and for a missing file.
func (o *OnlineTimestamp) keyFileInfo() os.FileInfo {
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
func (o *OnlineTimestamp) keyFileChanged() bool {
	fi := o.keyFileInfo()
	if fi == nil || o.keyFile == nil {
		return (fi == nil) != (o.keyFile == nil)
	}
	return !os.SameFile(fi, o.keyFile) || fi.Size() != o.keyFile.Size() || !fi.ModTime().Equal(o.keyFile.ModTime())
}

// Reload opens the key again (fwrepo does on SIGHUP) and keeps it if the
// newest root authorises it for timestamp; otherwise it keeps the key it
// had and returns an error (wrapping ErrOnlineKeyNotAuthorised when the
// key opened but is not the root's).
func (o *OnlineTimestamp) Reload(reason string) error {
	fi := o.keyFileInfo()
	key, err := signer.Open(o.KeyURI, o.Options)
	if err != nil {
		return fmt.Errorf("open timestamp key %s: %w", o.KeyURI, err)
	}
	root, err := latestRootIn(context.Background(), o.store())
	if err != nil {
		signer.Close(key)
		return err
	}
	_, id, err := signer.TUFKey(key.Public())
	if err == nil && !slices.Contains(root.Signed.Roles[metadata.TIMESTAMP].KeyIDs, id) {
		err = fmt.Errorf("%w: key %s from %s is not among root v%d's timestamp keys; put the rotated key there and send fwrepo SIGHUP",
			ErrOnlineKeyNotAuthorised, id, o.KeyURI, root.Signed.Version)
	}
	if err != nil {
		signer.Close(key)
		return err
	}
	old, oldID := o.key, o.keyID
	o.key, o.keyID, o.keyFile, o.rootVersion = key, id, fi, root.Signed.Version
	if old != nil {
		signer.Close(old)
	}
	if oldID != id {
		o.log().Info("timestamp key loaded", "keyid", id, "previous_keyid", oldID, "root_version", root.Signed.Version, "reason", reason)
	} else {
		o.log().Info("timestamp key reloaded", "keyid", id, "root_version", root.Signed.Version, "reason", reason)
	}
	return nil
}

// Check re-reads the repository and the key and re-signs timestamp.json
// when it is due: less than half its lifetime left, or not signed by the
// online key (after the key changed, or a publish signed it with another
// key). A key file replaced in place is re-opened first (if the new file
// cannot be used yet the previous key stays), and so is a key the newest
// root no longer authorises; if that leaves no authorised key
// it returns an error wrapping ErrOnlineKeyNotAuthorised and writes
// nothing, since a timestamp signed with a revoked key would only make
// devices refuse the repository.
func (o *OnlineTimestamp) Check() (*ResignResult, error) {
	if o.key == nil || o.keyFileChanged() {
		if err := o.Reload("key file changed"); err != nil {
			if o.key == nil {
				return nil, err
			}
			// Half-copied, or not the root's yet: keep signing with the
			// key we have while the root still authorises it; retry on
			// the next Check.
			o.log().Warn("timestamp key file changed but cannot be used; keeping the previous key", "keyid", o.keyID, "err", err)
		}
	}
	ctx := context.Background()
	root, err := latestRootIn(ctx, o.store())
	if err != nil {
		return nil, err
	}
	if root.Signed.Version != o.rootVersion {
		o.log().Info("new root published", "root_version", root.Signed.Version, "previous", o.rootVersion)
		if !slices.Contains(root.Signed.Roles[metadata.TIMESTAMP].KeyIDs, o.keyID) {
			if err := o.Reload(fmt.Sprintf("root v%d revoked the key", root.Signed.Version)); err != nil {
				return nil, err
			}
		}
		o.rootVersion = root.Signed.Version
	}
	ts, err := readTimestamp(ctx, o.store())
	if err != nil {
		return nil, err
	}
	now := o.now()
	reason := ""
	switch {
	case !slices.ContainsFunc(ts.Signatures, func(s metadata.Signature) bool { return s.KeyID == o.keyID }):
		reason = "not signed by the online key"
	case ts.Signed.Expires.Sub(now) < o.Lifetime/2:
		reason = "less than half its lifetime left"
	default:
		return &ResignResult{Version: ts.Signed.Version, Expires: ts.Signed.Expires}, nil
	}
	v, err := resignTimestampIn(ctx, o.store(), o.key, o.Lifetime, now)
	if errors.Is(err, blob.ErrChanged) {
		// Not an error: the newer timestamp stays, and is looked at
		// afresh on the next Check.
		o.log().Info("timestamp.json changed while re-signing it (a publish landed); kept the new one, re-reading on the next check",
			"read_version", ts.Signed.Version, "err", err)
		return &ResignResult{Version: ts.Signed.Version, Expires: ts.Signed.Expires, Reason: reason, Lost: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &ResignResult{Resigned: true, Version: v, Expires: now.UTC().Add(o.Lifetime), KeyID: o.keyID, Reason: reason}, nil
}

// Close releases the key (a TPM or PKCS#11 session).
func (o *OnlineTimestamp) Close() {
	if o.key != nil {
		signer.Close(o.key)
		o.key = nil
	}
}
