package repo

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/signer"
)

func TestResignTimestamp(t *testing.T) {
	dir := t.TempDir()
	w := initWorkspace(t, InitOptions{})
	pub := filepath.Join(dir, "pub")
	if _, err := w.Publish(pub, PublishOptions{Expiry: map[string]time.Duration{"timestamp": time.Minute}}); err != nil {
		t.Fatal(err)
	}
	keys, _ := w.keyFiles("timestamp")
	key, _, err := signer.Load(keys[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTimestampKey(pub, key); err != nil {
		t.Fatal(err)
	}
	other, _ := signer.Generate(signer.Ed25519)
	if err := CheckTimestampKey(pub, other); err == nil {
		t.Fatal("a foreign key was accepted as timestamp key")
	}
	v, err := ResignTimestamp(pub, key, 24*time.Hour, time.Now())
	if err != nil || v != 2 {
		t.Fatalf("re-sign: version %d, %v", v, err)
	}
	if _, err := VerifyDir(pub, mustRoot(t, w.Dir), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("re-signed repository does not verify an hour later: %v", err)
	}
	// The next publish continues above the online version.
	res, err := w.Publish(pub, PublishOptions{})
	if err != nil || res.Versions["timestamp"] != 3 {
		t.Fatalf("publish after re-sign: %+v %v", res, err)
	}
}

func mustRoot(t *testing.T, ws string) []byte {
	b, err := readFile(filepath.Join(ws, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var readFile = os.ReadFile
