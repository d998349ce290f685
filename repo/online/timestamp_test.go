package online

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

func TestResignTimestamp(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "pub")
	f := newFixture(t, blob.Dir(pub))
	key := f.keys[metadata.TIMESTAMP]
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
	if err := f.verify(time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("re-signed repository does not verify an hour later: %v", err)
	}
	exp, err := TimestampExpires(pub)
	if err != nil || exp.Nanosecond() != 0 {
		t.Fatalf("expires %v, %v: want whole seconds (the TUF date format)", exp, err)
	}
}
