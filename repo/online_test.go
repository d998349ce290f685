package repo

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/signer"
)

// TestOnlineTimestampFollowsRotation: fwrepo's re-signer, started with the
// timestamp key, keeps running while the timestamp key is rotated and a new
// root published. It refuses to sign with the revoked key, picks up the new
// key once the key file is replaced, and its timestamp is signed by the new
// key and verifies from the devices' first root.
func TestOnlineTimestampFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	w := initWorkspace(t, InitOptions{})
	pub := filepath.Join(dir, "pub")
	shortTS := PublishOptions{Expiry: map[string]time.Duration{metadata.TIMESTAMP: time.Hour}}
	if _, err := w.Publish(pub, shortTS); err != nil {
		t.Fatal(err)
	}
	files, err := w.keyFiles(metadata.TIMESTAMP)
	if err != nil || len(files) != 1 {
		t.Fatalf("timestamp key files %v %v", files, err)
	}
	oldKey, _ := os.ReadFile(files[0])
	online := filepath.Join(dir, "online-timestamp.json") // fwrepo's copy
	replaceFile(t, online, oldKey)
	oldID := keyIDOf(t, online)

	now := time.Now()
	var logs bytes.Buffer
	ot := &OnlineTimestamp{Dir: pub, KeyURI: online, Lifetime: 24 * time.Hour,
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
		if _, err := VerifyDir(pub, mustRoot(t, w.Dir), now); err != nil {
			t.Fatalf("repository does not verify from 1.root.json: %v", err)
		}
	}

	check(true, oldID, nil)  // published for 1h: less than half of fwrepo's 24h
	check(false, oldID, nil) // fresh, and signed by the online key
	now = now.Add(13 * time.Hour)
	check(true, oldID, nil)

	// Rotate the timestamp key; the workspace publishes root v2 and a
	// timestamp signed with the new key.
	newURI := "file:" + filepath.Join(dir, "new-timestamp.json")
	info, _, err := GenerateKey(newURI, metadata.TIMESTAMP, signer.Ed25519, nil, signer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Rotate(metadata.TIMESTAMP, RotateOptions{Add: []string{newURI}, Revoke: []string{oldID}}); err != nil {
		t.Fatal(err)
	}
	w.Now = func() time.Time { return now }
	if _, err := w.Publish(pub, shortTS); err != nil {
		t.Fatal(err)
	}
	// fwrepo still holds the revoked key: it must not sign with it.
	now = now.Add(2 * time.Hour)
	check(false, "", ErrOnlineKeyNotAuthorised)

	// The operator puts the new key in place: picked up without restart.
	newKey, _ := os.ReadFile(filepath.Join(dir, "new-timestamp.json"))
	replaceFile(t, online, newKey)
	check(true, info.KeyID, nil)
	if !strings.Contains(logs.String(), "timestamp key loaded") || !strings.Contains(logs.String(), "keyid="+info.KeyID) {
		t.Fatalf("no log of the new key:\n%s", logs.String())
	}
	check(false, info.KeyID, nil)

	// A half-copied key file does not stop re-signing with the key held.
	replaceFile(t, online, newKey[:10])
	now = now.Add(13 * time.Hour)
	check(true, info.KeyID, nil)
	if !strings.Contains(logs.String(), "keeping the previous key") {
		t.Fatalf("no warning about the unusable key file:\n%s", logs.String())
	}

	// SIGHUP with the old key back: refused, the new key stays.
	replaceFile(t, online, oldKey)
	if err := ot.Reload("SIGHUP"); !errors.Is(err, ErrOnlineKeyNotAuthorised) {
		t.Fatalf("Reload with the revoked key: %v", err)
	}
	now = now.Add(13 * time.Hour)
	check(true, info.KeyID, nil)
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
