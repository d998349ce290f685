package online

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

// TestOnlineTimestampFollowsRotation: fwrepo's re-signer, started with the
// timestamp key, keeps running while the timestamp key is rotated and a new
// root published. It refuses to sign with the revoked key, picks up the new
// key once the key file is replaced, and its timestamp is signed by the new
// key and verifies from the devices' first root.
func TestOnlineTimestampFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub")
	f := newFixture(t, blob.Dir(pub)) // timestamp published for 1h
	oldKey, _ := os.ReadFile(f.keyFile(metadata.TIMESTAMP))
	online := filepath.Join(dir, "online-timestamp.json") // fwrepo's copy
	replaceFile(t, online, oldKey)
	oldID := keyIDOf(t, online)

	now := time.Now()
	var logs bytes.Buffer
	ot := &Timestamp{Dir: pub, KeyURI: online, Lifetime: 24 * time.Hour, TrustedRoot: f.firstRoot,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }}
	defer ot.Close()
	tsPath := filepath.Join(pub, "metadata", "timestamp.json")
	check := func(wantResigned bool, wantKey string, wantErr error) {
		t.Helper()
		before, _ := os.ReadFile(tsPath)
		res, err := ot.Check()
		if wantErr != nil {
			after, _ := os.ReadFile(tsPath)
			if !errors.Is(err, wantErr) || !bytes.Equal(before, after) {
				t.Fatalf("Check = %+v, %v; want %v and timestamp.json untouched", res, err, wantErr)
			}
			return
		}
		if err != nil || res.Resigned != wantResigned {
			t.Fatalf("Check = %+v, %v; want re-signed %v", res, err, wantResigned)
		}
		ts, err := metadata.Timestamp().FromFile(tsPath)
		if err != nil || len(ts.Signatures) != 1 || ts.Signatures[0].KeyID != wantKey {
			t.Fatalf("timestamp signatures %+v, %v; want one by %s", ts.Signatures, err, wantKey)
		}
		if err := f.verify(now); err != nil {
			t.Fatalf("repository does not verify from 1.root.json: %v", err)
		}
	}

	check(true, oldID, nil)  // published for 1h: less than half of fwrepo's 24h
	check(false, oldID, nil) // fresh, and signed by the online key
	now = now.Add(13 * time.Hour)
	check(true, oldID, nil)

	// Rotate the timestamp key; the release side publishes root v2 and a
	// timestamp signed with the new key.
	newFile := f.rotateTimestamp()
	newID := f.keyID(metadata.TIMESTAMP)
	f.now = now
	f.publish(hour)
	// fwrepo still holds the revoked key: it must not sign with it.
	now = now.Add(2 * time.Hour)
	check(false, "", ErrKeyNotAuthorised)

	// The operator puts the new key in place: picked up without restart.
	newKey, _ := os.ReadFile(newFile)
	replaceFile(t, online, newKey)
	check(true, newID, nil)
	if !strings.Contains(logs.String(), "timestamp key loaded") || !strings.Contains(logs.String(), "keyid="+newID) {
		t.Fatalf("no log of the new key:\n%s", logs.String())
	}
	check(false, newID, nil)

	// A half-copied key file does not stop re-signing with the key held.
	replaceFile(t, online, newKey[:10])
	now = now.Add(13 * time.Hour)
	check(true, newID, nil)
	if !strings.Contains(logs.String(), "keeping the previous key") {
		t.Fatalf("no warning about the unusable key file:\n%s", logs.String())
	}

	// SIGHUP with the old key back: refused, the new key stays.
	replaceFile(t, online, oldKey)
	if err := ot.Reload("SIGHUP"); !errors.Is(err, ErrKeyNotAuthorised) {
		t.Fatalf("Reload with the revoked key: %v", err)
	}
	now = now.Add(13 * time.Hour)
	check(true, newID, nil)
}

// replaceFile replaces path atomically, as an operator's mv would, with a
// distinct modification time.
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func keyIDOf(t *testing.T, path string) string {
	t.Helper()
	k, _, err := signer.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := signer.TUFKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestOnlineTimestampRefusesForgery: whoever can write the storage (a
// bucket credential, a mirror) but holds no key puts a timestamp.json
// there. fwrepo must not re-sign it: the re-signed copy would carry fwrepo's
// valid signature and a version of the forger's choosing (a fast-forward
// that freezes every device), or point devices at a snapshot nobody signed.
// Check refuses with ErrRefused and leaves the file as it found it.
func TestOnlineTimestampRefusesForgery(t *testing.T) {
	foreign, err := signer.Generate(signer.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		forge func(t *testing.T, pub string, ts *metadata.Metadata[metadata.TimestampType], old []byte)
	}{
		{"unsigned, version 1000000", func(t *testing.T, pub string, ts *metadata.Metadata[metadata.TimestampType], _ []byte) {
			ts.Signed.Version = 1000000
			ts.ClearSignatures()
			writeMetadataFile(t, filepath.Join(pub, "metadata", "timestamp.json"), ts)
		}},
		{"signed by a key the root does not name", func(t *testing.T, pub string, ts *metadata.Metadata[metadata.TimestampType], _ []byte) {
			ts.Signed.Version = 1000000
			ts.ClearSignatures()
			if _, err := ts.Sign(signer.TUF(foreign)); err != nil {
				t.Fatal(err)
			}
			writeMetadataFile(t, filepath.Join(pub, "metadata", "timestamp.json"), ts)
		}},
		{"signed timestamp, snapshot replaced", func(t *testing.T, pub string, ts *metadata.Metadata[metadata.TimestampType], _ []byte) {
			name := filepath.Join(pub, "metadata", fmt.Sprintf("%d.snapshot.json", ts.Signed.Meta["snapshot.json"].Version))
			snap, err := metadata.Snapshot().FromFile(name)
			if err != nil {
				t.Fatal(err)
			}
			snap.Signed.Meta["targets.json"].Version = 9 // same length: only the hash tells
			snap.ClearSignatures()
			if _, err := snap.Sign(signer.TUF(foreign)); err != nil {
				t.Fatal(err)
			}
			writeMetadataFile(t, name, snap)
		}},
		{"a root the trusted root did not sign", func(t *testing.T, pub string, _ *metadata.Metadata[metadata.TimestampType], _ []byte) {
			r := metadata.Root(time.Now().Add(time.Hour))
			r.Signed.Version = 2
			k, _, _ := signer.TUFKey(foreign.Public())
			for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
				if err := r.Signed.AddKey(k, role); err != nil {
					t.Fatal(err)
				}
			}
			b := sign(t, r, foreign)
			if err := os.WriteFile(filepath.Join(pub, "metadata", "2.root.json"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"a second signed member before the genuine one", func(t *testing.T, pub string, _ *metadata.Metadata[metadata.TimestampType], _ []byte) {
			path := filepath.Join(pub, "metadata", "timestamp.json")
			b, _ := os.ReadFile(path)
			forged := append([]byte(`{"signed":{"_type":"timestamp","version":1000000},`), bytes.TrimPrefix(bytes.TrimSpace(b), []byte("{"))...)
			if err := os.WriteFile(path, forged, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"an older signed timestamp put back", func(t *testing.T, pub string, _ *metadata.Metadata[metadata.TimestampType], old []byte) {
			if err := os.WriteFile(filepath.Join(pub, "metadata", "timestamp.json"), old, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := filepath.Join(t.TempDir(), "pub")
			tsPath := filepath.Join(pub, "metadata", "timestamp.json")
			f := newFixture(t, blob.Dir(pub))
			first, _ := os.ReadFile(tsPath)
			f.publish(hour)
			ot := &Timestamp{Dir: pub, KeyURI: f.keyFile(metadata.TIMESTAMP), Lifetime: 24 * time.Hour, TrustedRoot: f.firstRoot}
			defer ot.Close()
			// A genuine re-sign first: one version up, no more.
			published, _ := metadata.Timestamp().FromFile(tsPath)
			res, err := ot.Check()
			if err != nil || !res.Resigned || res.Version != published.Signed.Version+1 {
				t.Fatalf("first Check = %+v, %v; want v%d", res, err, published.Signed.Version+1)
			}
			ts, _ := metadata.Timestamp().FromFile(tsPath)
			tt.forge(t, pub, ts, first)
			before, _ := os.ReadFile(tsPath)
			res, err = ot.Check()
			after, _ := os.ReadFile(tsPath)
			if !errors.Is(err, ErrRefused) || !bytes.Equal(before, after) {
				t.Fatalf("Check after forgery = %+v, %v; want ErrRefused and timestamp.json untouched", res, err)
			}
		})
	}
}

func writeMetadataFile[T metadata.Roles](t *testing.T, path string, md *metadata.Metadata[T]) {
	t.Helper()
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzVerifyTimestamp: the re-signer's decision on a stored timestamp.json
// (bytes anyone with storage access can write) never panics, and accepts
// only bytes signed by the root's timestamp key.
func FuzzVerifyTimestamp(f *testing.F) {
	fx := newFixture(f, blob.Dir(f.TempDir()))
	genuine, err := blob.ReadAll(context.Background(), fx.st, "metadata/timestamp.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add([]byte(`{"signed":{"_type":"timestamp","version":1000000},"signatures":[]}`))
	f.Add([]byte(`{"signatures":[],"signed":{},"signed":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := verifyTimestamp(fx.root, b, seen{})
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("a refusal that does not wrap ErrRefused: %v", err)
			}
			return
		}
		if err := fx.root.VerifyDelegate(metadata.TIMESTAMP, ts); err != nil {
			t.Fatalf("accepted a timestamp the root's keys did not sign: %v", err)
		}
	})
}
