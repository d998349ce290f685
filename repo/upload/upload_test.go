package upload_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/blob/blobtest"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/upload"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
	"github.com/fwctl/fwctl/test/harness"
)

func TestUploadOrder(t *testing.T) {
	in := []string{"metadata/timestamp.json", "metadata/root.json", "metadata/2.snapshot.json",
		"targets/hw/ab.fw.img", "metadata/1.root.json", "metadata/2.targets.json.sigstore.json", "metadata/2.targets.json"}
	want := []string{"targets/hw/ab.fw.img", "metadata/1.root.json", "metadata/2.snapshot.json",
		"metadata/2.targets.json", "metadata/2.targets.json.sigstore.json", "metadata/root.json", "metadata/timestamp.json"}
	if got := upload.Order(in); !slices.Equal(got, want) {
		t.Errorf("UploadOrder:\n got %v\nwant %v", got, want)
	}
}

// recording is a Store that records every Put and fails the one named
// failOn.
type recording struct {
	blob.Store
	puts   []string
	failOn string
}

func (r *recording) Put(ctx context.Context, name string, rd io.Reader, size int64) error {
	if name == r.failOn {
		return errors.New("connection reset by peer")
	}
	r.puts = append(r.puts, name)
	return r.Store.Put(ctx, name, rd, size)
}

func (r *recording) GetTagged(ctx context.Context, name string) ([]byte, string, error) {
	return r.Store.(blob.Swapper).GetTagged(ctx, name)
}

// Swap records a conditional write (Upload's of timestamp.json) as a Put.
func (r *recording) Swap(ctx context.Context, name string, data []byte, tag string) error {
	if name == r.failOn {
		return errors.New("connection reset by peer")
	}
	r.puts = append(r.puts, name)
	return r.Store.(blob.Swapper).Swap(ctx, name, data, tag)
}

// stageRelease adds an image and publishes it into a staging directory the
// way 'fwctl publish --out s3://…' does, and returns the directory.
func stageRelease(t *testing.T, w *repo.Workspace, st blob.Store, version string, counter uint64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, bytes.Repeat([]byte(version), 1000), 0o644)
	if _, err := w.AddTarget(img, repo.AddOptions{Hardware: []string{"hw1"}, Version: version, Counter: counter}); err != nil {
		t.Fatal(err)
	}
	dir, err := upload.StageFrom(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, err := w.Publish(dir, repo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUploadTimestampLastAndFailureKeepsOld(t *testing.T) {
	ctx := context.Background()
	w := initWorkspace(t, repo.InitOptions{})
	dst := blob.Dir(t.TempDir())

	// First release: everything uploaded, timestamp.json last.
	rec := &recording{Store: dst}
	if _, err := upload.Upload(ctx, stageRelease(t, w, dst, "1.0", 1), rec, "fwctl publish", upload.Options{}); err != nil {
		t.Fatal(err)
	}
	if len(rec.puts) < 4 || rec.puts[len(rec.puts)-1] != "metadata/timestamp.json" {
		t.Fatalf("upload order %v: timestamp.json must be last", rec.puts)
	}
	if !strings.HasPrefix(rec.puts[0], "targets/") {
		t.Errorf("upload order %v: images first", rec.puts)
	}
	old, _ := blob.ReadAll(ctx, dst, "metadata/timestamp.json")

	// Second release: the snapshot upload fails. The old timestamp stays,
	// and the error says what to run.
	staged := stageRelease(t, w, dst, "2.0", 2)
	rec = &recording{Store: dst, failOn: "metadata/2.snapshot.json"}
	_, err := upload.Upload(ctx, staged, rec, "fwctl -w ws publish --out s3://b/p", upload.Options{})
	var ue *upload.Error
	if !errors.As(err, &ue) || ue.File != "metadata/2.snapshot.json" {
		t.Fatalf("Upload = %v, want an upload.Error at metadata/2.snapshot.json", err)
	}
	for _, want := range []string{"connection reset", "previous release", "run 'fwctl -w ws publish --out s3://b/p' again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if slices.Contains(rec.puts, "metadata/timestamp.json") {
		t.Errorf("timestamp.json uploaded after a failure: %v", rec.puts)
	}
	if now, _ := blob.ReadAll(ctx, dst, "metadata/timestamp.json"); !bytes.Equal(now, old) {
		t.Error("the previous timestamp.json was replaced")
	}
	// Already-uploaded images are not sent again on the re-run.
	rec = &recording{Store: dst}
	res, err := upload.Upload(ctx, staged, rec, "fwctl publish", upload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped == 0 || slices.ContainsFunc(rec.puts, func(n string) bool { return strings.HasPrefix(n, "targets/") }) {
		t.Errorf("re-run uploaded %v, skipped %d: immutable files already there must be skipped", rec.puts, res.Skipped)
	}
	if rec.puts[len(rec.puts)-1] != "metadata/timestamp.json" {
		t.Errorf("re-run order %v", rec.puts)
	}
	if v, err := readTimestamp(ctx, dst); err != nil || v.Signed.Version != 2 {
		t.Errorf("published timestamp after the re-run: %v, %v", v, err)
	}
}

// TestUploadAfterResignS3: fwrepo re-signs the bucket's timestamp after
// publish seeded its staging directory from it, so both carry the same
// version. The upload must not overwrite the re-signed one blindly: it
// loses the If-Match, re-signs its own one version above fwrepo's and
// writes that, so devices that fetched fwrepo's still take the release.
func TestUploadAfterResignS3(t *testing.T) {
	s3 := testenv.RequireS3(t)
	s3.Setenv(t)
	ctx := context.Background()
	st, err := blob.Open(s3.URL("fleet"), blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := initWorkspace(t, repo.InitOptions{})
	opt := upload.Options{SignTimestamp: w.SignTimestamp}
	if _, err := upload.Upload(ctx, stageRelease(t, w, st, "1.0", 1), st, "fwctl publish", opt); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(w.Dir, "keys", "timestamp-*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("timestamp key files %v %v", files, err)
	}
	key, _, err := signer.Load(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}

	staged := stageRelease(t, w, st, "2.0", 2)
	ours, err := metadata.Timestamp().FromFile(filepath.Join(staged, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	// fwrepo re-signs just before the upload writes timestamp.json.
	var resigned int64
	rs := &blobtest.Racing{Store: st, Publish: func() {
		if resigned, err = resign(ctx, st, key, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}}
	if _, err := upload.Upload(ctx, staged, rs, "fwctl publish", opt); err != nil {
		t.Fatal(err)
	}
	if resigned != ours.Signed.Version {
		t.Fatalf("fwrepo re-signed v%d, publish staged v%d: the test needs them equal", resigned, ours.Signed.Version)
	}
	got, err := readTimestamp(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	snap := got.Signed.Meta["snapshot.json"]
	if snap == nil || snap.Version != ours.Signed.Meta["snapshot.json"].Version || !got.Signed.Expires.Equal(ours.Signed.Expires) {
		t.Fatalf("stored timestamp is not the one publish staged: names snapshot %+v, expires %v; want snapshot v%d, expiry %v",
			snap, got.Signed.Expires, ours.Signed.Meta["snapshot.json"].Version, ours.Signed.Expires)
	}
	if got.Signed.Version <= resigned {
		t.Fatalf("stored timestamp v%d, want above fwrepo's re-signed v%d", got.Signed.Version, resigned)
	}
	root, err := os.ReadFile(filepath.Join(w.Dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Verify(ctx, verify.StoreSource(st), root, time.Now()); err != nil {
		t.Fatalf("the published repository does not verify: %v", err)
	}
}

// alwaysResigning re-signs timestamp.json before every conditional write
// of it, so the writer never wins.
type alwaysResigning struct {
	blob.Store
	resign func()
}

func (a *alwaysResigning) GetTagged(ctx context.Context, name string) ([]byte, string, error) {
	return a.Store.(blob.Swapper).GetTagged(ctx, name)
}

func (a *alwaysResigning) Swap(ctx context.Context, name string, data []byte, tag string) error {
	if name == layout.Timestamp {
		a.resign()
	}
	return a.Store.(blob.Swapper).Swap(ctx, name, data, tag)
}

// TestUploadKeepsLosingToResign: a bounded number of tries, then an
// upload.Error that says the files are there and what to run; and a
// timestamp from another publish is never overwritten.
func TestUploadKeepsLosingToResign(t *testing.T) {
	ctx := context.Background()
	w := initWorkspace(t, repo.InitOptions{})
	dst := blob.Dir(t.TempDir())
	opt := upload.Options{SignTimestamp: w.SignTimestamp}
	if _, err := upload.Upload(ctx, stageRelease(t, w, dst, "1.0", 1), dst, "fwctl publish", opt); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(w.Dir, "keys", "timestamp-*.json"))
	key, _, err := signer.Load(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	resigns := 0
	rs := &alwaysResigning{Store: dst, resign: func() {
		resigns++
		if _, err := resign(ctx, dst, key, time.Hour); err != nil {
			t.Fatal(err)
		}
	}}
	_, err = upload.Upload(ctx, stageRelease(t, w, dst, "2.0", 2), rs, "fwctl -w ws publish --out s3://b/p", opt)
	var ue *upload.Error
	if !errors.As(err, &ue) || ue.File != layout.Timestamp || !errors.Is(err, blob.ErrChanged) {
		t.Fatalf("Upload = %v, want an upload.Error at %s wrapping ErrChanged", err, layout.Timestamp)
	}
	if resigns != upload.TimestampAttempts {
		t.Errorf("%d attempts, want %d", resigns, upload.TimestampAttempts)
	}
	for _, want := range []string{"every other file of the release is uploaded", "run 'fwctl -w ws publish --out s3://b/p' again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if ts, _ := readTimestamp(ctx, dst); ts.Signed.Meta["snapshot.json"].Version != 1 {
		t.Errorf("the lost upload replaced the timestamp: it names snapshot v%d", ts.Signed.Meta["snapshot.json"].Version)
	}

	// Another publish lands between the seed and the upload: its
	// timestamp stays.
	staged := stageRelease(t, w, dst, "3.0", 3)
	other := stageRelease(t, w, dst, "4.0", 4)
	if _, err := upload.Upload(ctx, other, dst, "fwctl publish", opt); err != nil {
		t.Fatal(err)
	}
	before, _ := blob.ReadAll(ctx, dst, layout.Timestamp)
	if _, err = upload.Upload(ctx, staged, dst, "fwctl publish", opt); !errors.Is(err, blob.ErrChanged) || !strings.Contains(err.Error(), "another publish") {
		t.Fatalf("Upload over another publish = %v, want ErrChanged naming another publish", err)
	}
	if after, _ := blob.ReadAll(ctx, dst, layout.Timestamp); !bytes.Equal(before, after) {
		t.Error("the upload overwrote another publish's timestamp")
	}
}

// initWorkspace creates a workspace with unencrypted keys in a temporary
// directory, and opens it.
func initWorkspace(t testing.TB, opt repo.InitOptions) *repo.Workspace {
	t.Helper()
	return harness.InitWorkspace(t, filepath.Join(t.TempDir(), "ws"), opt)
}

// readTimestamp reads st's timestamp.json.
func readTimestamp(ctx context.Context, st blob.Store) (*metadata.Metadata[metadata.TimestampType], error) {
	b, err := blob.ReadAll(ctx, st, layout.Timestamp)
	if err != nil {
		return nil, err
	}
	return metadata.Timestamp().FromBytes(b)
}

// resign re-signs st's timestamp one version up with key, as fwrepo's
// online timestamp does (through blob.Replace, in one attempt), and
// returns the new version.
func resign(ctx context.Context, st blob.Store, key crypto.Signer, lifetime time.Duration) (int64, error) {
	var v int64
	_, err := blob.Replace(ctx, st.(blob.Swapper), layout.Timestamp, 1, func(cur []byte, _ string) ([]byte, error) {
		ts, err := metadata.Timestamp().FromBytes(cur)
		if err != nil {
			return nil, err
		}
		ts.Signed.Version++
		ts.Signed.Expires = time.Now().UTC().Add(lifetime)
		ts.ClearSignatures()
		if _, err := ts.Sign(signer.TUF(key)); err != nil {
			return nil, err
		}
		v = ts.Signed.Version
		return ts.ToBytes(true)
	})
	return v, err
}
