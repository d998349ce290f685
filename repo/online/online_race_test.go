package online

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/blob/blobtest"
	"github.com/fwctl/fwctl/repo/layout"
)

// testResignLosesToPublish: fwrepo re-signs the old timestamp while a
// publish of release 2.0 lands. The published timestamp must survive (not
// be replaced by the re-signed old one), Check reports the lost race
// without an error, and the next Check re-signs the new timestamp with a
// higher version.
func testResignLosesToPublish(t *testing.T, st blob.Store) {
	ctx := context.Background()
	f := newFixture(t, st) // release 1.0, its timestamp living 1h
	var published []byte
	rs := &blobtest.Racing{Store: st, Publish: func() {
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
