package test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/online"
	"github.com/fwctl/fwctl/signer"
	"github.com/fwctl/fwctl/tpm/tpmtest"
)

// TestTPMTimestampKey: the repository's online timestamp key lives in a TPM
// (swtpm). The workspace signs timestamps with it at publish; once the
// published timestamp has lapsed, devices refuse it until fwrepo's online
// re-signing (the same calls as fwrepo serve --timestamp-key tpm:…) signs a
// fresh one with the TPM key, after which the device installs the release.
func TestTPMTimestampKey(t *testing.T) {
	sim := tpmtest.Start(t)
	tsURI := "tpm:" + sim.Addr() + "?handle=0x81000101"
	ref, err := signer.ParseRef(tsURI)
	if err != nil {
		t.Fatal(err)
	}
	s, created, err := signer.GenerateTPM(ref, signer.ECDSAP256)
	if err != nil || !created {
		t.Fatalf("generate the timestamp key in the TPM: created %v, %v", created, err)
	}
	_, tsID, err := signer.TUFKey(s.Public())
	signer.Close(s)
	if err != nil {
		t.Fatal(err)
	}

	// fwctl init --key timestamp=tpm:…
	dir := filepath.Join(t.TempDir(), "ws")
	res, err := repo.Init(dir, repo.InitOptions{InsecurePlaintext: true,
		KeyURIs: map[string][]string{metadata.TIMESTAMP: {tsURI}}})
	if err != nil {
		t.Fatal(err)
	}
	if ids := res.Keys[metadata.TIMESTAMP]; len(ids) != 1 || ids[0] != tsID {
		t.Fatalf("timestamp keys %v, want the TPM key %s", ids, tsID)
	}
	ws, err := repo.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := releaseOf(t, ws, filepath.Join(t.TempDir(), "pub"))
	const life = 2 * time.Second
	publish := func() time.Time {
		t.Helper()
		if _, err := ws.Publish(r.pub, repo.PublishOptions{Expiry: map[string]time.Duration{metadata.TIMESTAMP: life}}); err != nil {
			t.Fatal(err)
		}
		ts, err := metadata.Timestamp().FromFile(filepath.Join(r.pub, "metadata", "timestamp.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ts.Signatures) != 1 || ts.Signatures[0].KeyID != tsID {
			t.Fatalf("timestamp signatures %+v, want one by the TPM key %s", ts.Signatures, tsID)
		}
		return ts.Signed.Expires
	}

	v1 := r.add("1.0.0", 1, 20_000)
	publish()
	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	d.mustInstall(v1)

	v2 := r.add("2.0.0", 2, 20_000)
	exp := publish()
	time.Sleep(time.Until(exp) + 200*time.Millisecond)
	if _, err := d.update(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("update with the lapsed timestamp: %v, want an expired timestamp refused", err)
	}

	// fwrepo serve --timestamp-key tpm:…: open the key, check it is the
	// root's timestamp key, re-sign.
	key, err := signer.Open(tsURI, signer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer signer.Close(key)
	if err := online.CheckTimestampKey(r.pub, keyOf(t, ws, metadata.TARGETS)); err == nil {
		t.Fatal("CheckTimestampKey accepted the targets key")
	}
	if err := online.CheckTimestampKey(r.pub, key); err != nil {
		t.Fatal(err)
	}
	if _, err := online.ResignTimestamp(r.pub, key, time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(exp) {
		t.Fatal("the original timestamp has not expired yet")
	}
	d.mustInstall(v2)
}
