package repo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/online"
	"github.com/fwctl/fwctl/signer"
)

// hourTS publishes a timestamp living one hour.
var hourTS = PublishOptions{Expiry: map[string]time.Duration{metadata.TIMESTAMP: time.Hour}}

// TestPublishAfterResign: fwrepo re-signed the published timestamp after
// Publish chose its version; Publish writes one version above the stored
// one, so devices that fetched fwrepo's still accept the release. (Moved
// here from repo/online when the online role became its own package: it
// tests Publish.)
func TestPublishAfterResign(t *testing.T) {
	out := t.TempDir()
	w := initWorkspace(t, InitOptions{})
	if _, err := w.Publish(out, hourTS); err != nil {
		t.Fatal(err)
	}
	files, _ := w.keyFiles(metadata.TIMESTAMP)
	key, _, err := signer.Load(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	// fwrepo re-signs five times; Publish still thinks v1 is current.
	ts := metadata.Timestamp(time.Now().Add(time.Hour))
	ts.Signed.Version = 2
	for range 5 {
		if _, err := online.ResignTimestamp(out, key, time.Hour, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	signs := 0
	b, _ := ts.ToBytes(true)
	b, err = writePublishedTimestamp(out, ts, b, func() error { signs++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := os.ReadFile(filepath.Join(out, "metadata", "timestamp.json"))
	got, err := metadata.Timestamp().FromBytes(stored)
	if err != nil || got.Signed.Version != 7 || signs != 1 || !bytes.Equal(stored, b) {
		t.Fatalf("wrote v%d (%v) after %d signs; want v7 (one above fwrepo's v6), signed again once", got.Signed.Version, err, signs)
	}
}

// TestPublishContinuesAboveResign: the next publish after an online
// re-sign continues above the online version.
func TestPublishContinuesAboveResign(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "pub")
	w := initWorkspace(t, InitOptions{})
	if _, err := w.Publish(pub, PublishOptions{Expiry: map[string]time.Duration{"timestamp": time.Minute}}); err != nil {
		t.Fatal(err)
	}
	keys, _ := w.keyFiles("timestamp")
	key, _, err := signer.Load(keys[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := online.ResignTimestamp(pub, key, 24*time.Hour, time.Now()); err != nil || v != 2 {
		t.Fatalf("re-sign: version %d, %v", v, err)
	}
	res, err := w.Publish(pub, PublishOptions{})
	if err != nil || res.Versions["timestamp"] != 3 {
		t.Fatalf("publish after re-sign: %+v %v", res, err)
	}
}
