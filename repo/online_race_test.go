package repo

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

// racingStore runs publish once, just before the first write of
// timestamp.json reaches the store (whichever way it is written): a
// release published between fwrepo's read of the old timestamp and its
// write of the re-signed one.
type racingStore struct {
	blob.Store
	publish func()
}

func (r *racingStore) race(name string) {
	if name == timestampName && r.publish != nil {
		p := r.publish
		r.publish = nil
		p()
	}
}

func (r *racingStore) Put(ctx context.Context, name string, rd io.Reader, size int64) error {
	r.race(name)
	return r.Store.Put(ctx, name, rd, size)
}

func (r *racingStore) GetTagged(ctx context.Context, name string) ([]byte, string, error) {
	return r.Store.(blob.Swapper).GetTagged(ctx, name)
}

func (r *racingStore) Swap(ctx context.Context, name string, data []byte, tag string) error {
	r.race(name)
	return r.Store.(blob.Swapper).Swap(ctx, name, data, tag)
}

// testResignLosesToPublish: fwrepo re-signs the old timestamp while a
// publish of release 2.0 lands. The published timestamp must survive (not
// be replaced by the re-signed old one), Check reports the lost race
// without an error, and the next Check re-signs the new timestamp with a
// higher version.
func testResignLosesToPublish(t *testing.T, st blob.Store, publish func(w *Workspace)) {
	ctx := context.Background()
	w := initWorkspace(t, InitOptions{})
	publish(w) // release 1.0
	files, err := w.keyFiles(metadata.TIMESTAMP)
	if err != nil || len(files) != 1 {
		t.Fatalf("timestamp key files %v %v", files, err)
	}
	// The published timestamp lives 1h (hourTS below): less than half of
	// fwrepo's 24h, so the first Check re-signs.
	var published []byte
	rs := &racingStore{Store: st, publish: func() {
		publish(w) // release 2.0
		var err error
		if published, err = blob.ReadAll(ctx, st, timestampName); err != nil {
			t.Fatal(err)
		}
	}}
	ot := &OnlineTimestamp{Store: rs, KeyURI: files[0], Lifetime: 24 * time.Hour}
	defer ot.Close()
	res, err := ot.Check()
	if err != nil || res.Resigned || !res.Lost {
		t.Fatalf("Check during a publish = %+v, %v; want a lost race, nothing written, no error", res, err)
	}
	after, err := blob.ReadAll(ctx, st, timestampName)
	if err != nil {
		t.Fatal(err)
	}
	if published == nil || !bytes.Equal(after, published) {
		t.Fatalf("the re-sign overwrote the timestamp the publish wrote:\nstored    %s\npublished %s", after, published)
	}
	pubTS, _ := metadata.Timestamp().FromBytes(published)
	res, err = ot.Check()
	if err != nil || !res.Resigned || res.Version != pubTS.Signed.Version+1 {
		t.Fatalf("next Check = %+v, %v; want the new timestamp re-signed as v%d", res, err, pubTS.Signed.Version+1)
	}
	cur, err := readTimestamp(ctx, st)
	if err != nil || cur.Signed.Meta["snapshot.json"].Version != pubTS.Signed.Meta["snapshot.json"].Version {
		t.Fatalf("re-signed timestamp names snapshot %+v, want the published v%d (%v)", cur.Signed.Meta["snapshot.json"], pubTS.Signed.Meta["snapshot.json"].Version, err)
	}
}

var hourTS = PublishOptions{Expiry: map[string]time.Duration{metadata.TIMESTAMP: time.Hour}}

func TestResignLosesToPublishDir(t *testing.T) {
	pub := t.TempDir()
	testResignLosesToPublish(t, blob.Dir(pub), func(w *Workspace) {
		if _, err := w.Publish(pub, hourTS); err != nil {
			t.Fatal(err)
		}
	})
}

// TestResignLosesToPublishS3 runs the race against a real versitygw: the
// re-sign's PutObject carries If-Match with the ETag it read.
func TestResignLosesToPublishS3(t *testing.T) {
	s3 := testenv.RequireS3(t)
	s3.Setenv(t)
	st, err := blob.Open(s3.URL("fleet"), blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	testResignLosesToPublish(t, st, func(w *Workspace) {
		dir, err := StageFrom(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if _, err := w.Publish(dir, hourTS); err != nil {
			t.Fatal(err)
		}
		if _, err := Upload(ctx, dir, st, "fwctl publish", UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPublishAfterResign: fwrepo re-signed the published timestamp after
// Publish chose its version; Publish writes one version above the stored
// one, so devices that fetched fwrepo's still accept the release.
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
		if _, err := ResignTimestamp(out, key, time.Hour, time.Now()); err != nil {
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
