package online

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
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
	if name == layout.Timestamp && r.publish != nil {
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
func testResignLosesToPublish(t *testing.T, st blob.Store) {
	ctx := context.Background()
	f := newFixture(t, st) // release 1.0, its timestamp living 1h
	var published []byte
	rs := &racingStore{Store: st, publish: func() {
		f.publish(hour) // release 2.0
		var err error
		if published, err = blob.ReadAll(ctx, st, layout.Timestamp); err != nil {
			t.Fatal(err)
		}
	}}
	ot := &Timestamp{Store: rs, KeyURI: f.keyFile(metadata.TIMESTAMP), Lifetime: 24 * time.Hour, TrustedRoot: f.firstRoot}
	defer ot.Close()
	res, err := ot.Check()
	if err != nil || res.Resigned || !res.Lost {
		t.Fatalf("Check during a publish = %+v, %v; want a lost race, nothing written, no error", res, err)
	}
	after, err := blob.ReadAll(ctx, st, layout.Timestamp)
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
	cur, err := ReadTimestamp(ctx, st)
	if err != nil || cur.Signed.Meta["snapshot.json"].Version != pubTS.Signed.Meta["snapshot.json"].Version {
		t.Fatalf("re-signed timestamp names snapshot %+v, want the published v%d (%v)", cur.Signed.Meta["snapshot.json"], pubTS.Signed.Meta["snapshot.json"].Version, err)
	}
	if err := f.verify(time.Now()); err != nil {
		t.Fatalf("repository does not verify after the re-sign: %v", err)
	}
}

func TestResignLosesToPublishDir(t *testing.T) {
	testResignLosesToPublish(t, blob.Dir(t.TempDir()))
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
	testResignLosesToPublish(t, st)
}
