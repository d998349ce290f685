package online

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/signer"
)

// fixture is a published repository made here with go-tuf alone, so the
// online role is tested without the release side it must never link:
// root, targets, snapshot and timestamp keys, a root chain, and publishes
// that write a new targets, snapshot and timestamp (timestamp last, under
// the directory's lock as 'fwctl publish' writes it).
type fixture struct {
	t         testing.TB
	st        blob.Store
	keys      map[string]crypto.Signer
	root      *Root
	firstRoot []byte
	version   int64 // of targets and snapshot
	now       time.Time
}

// hour is how long fixture timestamps live: less than half of the 24h
// re-signers in these tests use, so the first Check re-signs.
const hour = time.Hour

func newFixture(t testing.TB, st blob.Store) *fixture {
	t.Helper()
	f := &fixture{t: t, st: st, keys: map[string]crypto.Signer{}, now: time.Now()}
	f.root = metadata.Root(f.now.Add(365 * 24 * time.Hour))
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		f.keys[role] = f.addKey(role)
	}
	f.firstRoot = f.putRoot()
	f.publish(hour)
	return f
}

func (f *fixture) addKey(role string) crypto.Signer {
	f.t.Helper()
	k, err := signer.Generate(signer.Ed25519)
	if err != nil {
		f.t.Fatal(err)
	}
	pub, _, err := signer.TUFKey(k.Public())
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.root.Signed.AddKey(pub, role); err != nil {
		f.t.Fatal(err)
	}
	return k
}

// keyFile saves the key of role as a plaintext key file and returns it.
func (f *fixture) keyFile(role string) string {
	f.t.Helper()
	p := filepath.Join(f.t.TempDir(), role+".json")
	if _, err := signer.Save(p, role, f.keys[role], nil); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) keyID(role string) string {
	_, id, _ := signer.TUFKey(f.keys[role].Public())
	return id
}

func sign[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], keys ...crypto.Signer) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		if _, err := md.Sign(signer.TUF(k)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) put(name string, b []byte) {
	f.t.Helper()
	if err := f.st.Put(context.Background(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		f.t.Fatal(err)
	}
}

// putRoot signs the root with the root key and publishes it as N.root.json.
func (f *fixture) putRoot() []byte {
	b := sign(f.t, f.root, f.keys[metadata.ROOT])
	f.put(layout.Metadata(layout.Versioned(f.root.Signed.Version, metadata.ROOT)), b)
	return b
}

// rotateTimestamp publishes the next root, which replaces the timestamp key
// with a new one, and returns the new key's file.
func (f *fixture) rotateTimestamp() string {
	f.t.Helper()
	if err := f.root.Signed.RevokeKey(f.keyID(metadata.TIMESTAMP), metadata.TIMESTAMP); err != nil {
		f.t.Fatal(err)
	}
	f.root.Signed.Version++
	f.keys[metadata.TIMESTAMP] = f.addKey(metadata.TIMESTAMP)
	f.putRoot()
	return f.keyFile(metadata.TIMESTAMP)
}

// publish writes the next targets and snapshot and a timestamp one version
// above the stored one, living tsLife.
func (f *fixture) publish(tsLife time.Duration) {
	f.t.Helper()
	ctx := context.Background()
	f.version++
	targets := metadata.Targets(f.now.Add(90 * 24 * time.Hour))
	targets.Signed.Version = f.version
	tb := sign(f.t, targets, f.keys[metadata.TARGETS])
	f.put(layout.Metadata(layout.Versioned(f.version, metadata.TARGETS)), tb)
	snap := metadata.Snapshot(f.now.Add(7 * 24 * time.Hour))
	snap.Signed.Version = f.version
	snap.Signed.Meta["targets.json"] = metadata.MetaFile(f.version)
	sb := sign(f.t, snap, f.keys[metadata.SNAPSHOT])
	f.put(layout.Metadata(layout.Versioned(f.version, metadata.SNAPSHOT)), sb)
	ts := metadata.Timestamp(f.now.Add(tsLife))
	ts.Signed.Version = 1
	if cur, err := ReadTimestamp(ctx, f.st); err == nil {
		ts.Signed.Version = cur.Signed.Version + 1
	}
	sum := sha256.Sum256(sb)
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: f.version, Length: int64(len(sb)), Hashes: metadata.Hashes{"sha256": sum[:]}}
	b := sign(f.t, ts, f.keys[metadata.TIMESTAMP])
	if d, ok := f.st.(blob.Dir); ok {
		unlock, err := d.Lock(layout.Timestamp)
		if err != nil {
			f.t.Fatal(err)
		}
		defer unlock()
	}
	f.put(layout.Timestamp, b)
}

// verify checks the repository as a device would at now, from the first
// root: root chain, timestamp, snapshot, targets.
func (f *fixture) verify(now time.Time) error {
	ctx := context.Background()
	tm, err := trustedmetadata.New(f.firstRoot)
	if err != nil {
		return err
	}
	tm.RefTime = now
	for v := int64(2); ; v++ {
		b, err := blob.ReadAll(ctx, f.st, layout.Metadata(layout.Versioned(v, metadata.ROOT)))
		if err != nil {
			break
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			return err
		}
	}
	b, err := blob.ReadAll(ctx, f.st, layout.Timestamp)
	if err != nil {
		return err
	}
	if _, err := tm.UpdateTimestamp(b); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	sv := tm.Timestamp.Signed.Meta["snapshot.json"].Version
	if b, err = blob.ReadAll(ctx, f.st, layout.Metadata(layout.Versioned(sv, metadata.SNAPSHOT))); err != nil {
		return err
	}
	if _, err := tm.UpdateSnapshot(b, false); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tv := tm.Snapshot.Signed.Meta["targets.json"].Version
	if b, err = blob.ReadAll(ctx, f.st, layout.Metadata(layout.Versioned(tv, metadata.TARGETS))); err != nil {
		return err
	}
	if _, err := tm.UpdateTargets(b); err != nil {
		return fmt.Errorf("targets: %w", err)
	}
	return nil
}
