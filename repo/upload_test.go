package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/repo/blob"
)

func TestUploadOrder(t *testing.T) {
	in := []string{"metadata/timestamp.json", "metadata/root.json", "metadata/2.snapshot.json",
		"targets/hw/ab.fw.img", "metadata/1.root.json", "metadata/2.targets.json.sigstore.json", "metadata/2.targets.json"}
	want := []string{"targets/hw/ab.fw.img", "metadata/1.root.json", "metadata/2.snapshot.json",
		"metadata/2.targets.json", "metadata/2.targets.json.sigstore.json", "metadata/root.json", "metadata/timestamp.json"}
	if got := UploadOrder(in); !slices.Equal(got, want) {
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

// stageRelease adds an image and publishes it into a staging directory the
// way 'fwctl publish --out s3://…' does, and returns the directory.
func stageRelease(t *testing.T, w *Workspace, st blob.Store, version string, counter uint64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, bytes.Repeat([]byte(version), 1000), 0o644)
	if _, err := w.AddTarget(img, AddOptions{Hardware: []string{"hw1"}, Version: version, Counter: counter}); err != nil {
		t.Fatal(err)
	}
	dir, err := StageFrom(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, err := w.Publish(dir, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUploadTimestampLastAndFailureKeepsOld(t *testing.T) {
	ctx := context.Background()
	wsDir := filepath.Join(t.TempDir(), "ws")
	if _, err := Init(wsDir, InitOptions{InsecurePlaintext: true}); err != nil {
		t.Fatal(err)
	}
	w, err := Open(wsDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := blob.Dir(t.TempDir())

	// First release: everything uploaded, timestamp.json last.
	rec := &recording{Store: dst}
	if _, err := Upload(ctx, stageRelease(t, w, dst, "1.0", 1), rec, "fwctl publish", UploadOptions{}); err != nil {
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
	_, err = Upload(ctx, staged, rec, "fwctl -w ws publish --out s3://b/p", UploadOptions{})
	var ue *UploadError
	if !errors.As(err, &ue) || ue.File != "metadata/2.snapshot.json" {
		t.Fatalf("Upload = %v, want an UploadError at metadata/2.snapshot.json", err)
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
	res, err := Upload(ctx, staged, rec, "fwctl publish", UploadOptions{})
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
