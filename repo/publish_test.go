package repo

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/upload"
	"github.com/fwctl/fwctl/repo/verify"
)

// addRelease stages an image of release version for hardware hw1.
func addRelease(t *testing.T, w *Workspace, version string, counter uint64) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, bytes.Repeat([]byte("firmware "+version+" "), 100+int(counter)), 0o644)
	if _, err := w.AddTarget(img, AddOptions{Hardware: []string{"hw1"}, Version: version, Counter: counter}); err != nil {
		t.Fatal(err)
	}
}

// snapshotTree reads every file under dir (name → bytes).
func snapshotTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return nil
	})
	return files
}

func sameTree(t *testing.T, before, after map[string][]byte) {
	t.Helper()
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("%s changed", name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s appeared", name)
		}
	}
}

// copyWorkspace copies w's directory (a second engineer's copy of it) and
// opens the copy.
func copyWorkspace(t *testing.T, w *Workspace) *Workspace {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dir, os.DirFS(w.Dir)); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPublishRefusesForeignRelease: two workspaces (copies of one, or
// unrelated ones) publishing into one directory. The second publish must be
// refused, naming the release it would hide, and write nothing.
func TestPublishRefusesForeignRelease(t *testing.T) {
	out := t.TempDir()
	a := initWorkspace(t, InitOptions{})
	addRelease(t, a, "1.0", 1)
	if _, err := a.Publish(out, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	b := copyWorkspace(t, a)
	addRelease(t, a, "2.0", 2)
	if _, err := a.Publish(out, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	stranger := initWorkspace(t, InitOptions{})
	addRelease(t, stranger, "9.0", 9)
	addRelease(t, b, "3.0", 3)
	for name, w := range map[string]*Workspace{"stale copy": b, "other workspace": stranger} {
		t.Run(name, func(t *testing.T) {
			before := snapshotTree(t, out)
			_, err := w.Publish(out, PublishOptions{})
			if !errors.Is(err, ErrForeignRelease) {
				t.Fatalf("Publish = %v, want ErrForeignRelease", err)
			}
			for _, says := range []string{"snapshot v2", "targets v2", "would hide", "Publish from the workspace that made it"} {
				if !strings.Contains(err.Error(), says) {
					t.Errorf("message %q does not say %q", err, says)
				}
			}
			sameTree(t, before, snapshotTree(t, out))
		})
	}
	// The workspace that published it goes on as before.
	addRelease(t, a, "4.0", 4)
	if _, err := a.Publish(out, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := verify.VerifyDir(out, mustRootOf(t, a), time.Now()); err != nil {
		t.Fatal(err)
	}
}

func mustRootOf(t *testing.T, w *Workspace) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.Dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReleaseRefusesForeignReleaseS3: the same on object storage, one
// after the other (the staged timestamp names a snapshot this workspace did
// not publish) and both at once (both staged from the same timestamp: the
// second upload finds the first's snapshot under its name and must neither
// skip it nor write over it).
func TestReleaseRefusesForeignReleaseS3(t *testing.T) {
	s3 := testenv.RequireS3(t)
	s3.Setenv(t)
	ctx := context.Background()
	st, err := blob.Open(s3.URL("foreign"), blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := initWorkspace(t, InitOptions{})
	addRelease(t, a, "1.0", 1)
	if _, err := a.Release(ctx, ReleaseOptions{Out: "s3://…", Store: st}); err != nil {
		t.Fatal(err)
	}
	b := copyWorkspace(t, a)
	addRelease(t, a, "2.0", 2)
	addRelease(t, b, "3.0-with-a-longer-name", 3)

	// Both stage from timestamp v1; a uploads first.
	dirA, err := upload.StageFrom(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dirA)
	dirB, err := upload.StageFrom(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dirB)
	if _, err := a.Publish(dirA, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(dirB, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := upload.Upload(ctx, dirA, st, "fwctl publish", upload.Options{SignTimestamp: a.SignTimestamp}); err != nil {
		t.Fatal(err)
	}
	_, err = upload.Upload(ctx, dirB, st, "fwctl publish", upload.Options{SignTimestamp: b.SignTimestamp})
	if !errors.Is(err, upload.ErrConflict) || !strings.Contains(err.Error(), "metadata/2.") {
		t.Fatalf("concurrent upload = %v, want ErrConflict naming a version-2 file", err)
	}
	res, err := verify.Verify(ctx, verify.StoreSource(st), mustRootOf(t, a), time.Now())
	if err != nil {
		t.Fatalf("a's release no longer verifies after b's refused upload: %v", err)
	}
	if len(res.Targets) != 2 {
		t.Errorf("bucket holds %d targets, want a's two", len(res.Targets))
	}

	// One after the other: b's staged timestamp is a's v2.
	_, err = b.Release(ctx, ReleaseOptions{Out: "s3://…", Store: st})
	if !errors.Is(err, ErrForeignRelease) || !strings.Contains(err.Error(), "snapshot v2") {
		t.Fatalf("Release after a's = %v, want ErrForeignRelease naming snapshot v2", err)
	}
}

// TestPublishRefusesDamagedWorkspace: damaged workspace metadata is never
// published: not a 0-byte root, not a targets or snapshot v1 reissued over
// the published v1. Nothing in the output changes.
func TestPublishRefusesDamagedWorkspace(t *testing.T) {
	for _, tt := range []struct {
		file string
		says string
	}{
		{"1.root.json", "1.root.json"},
		{"root.json", "root"},
		{"targets.json", "targets.json is damaged"},
		{"snapshot.json", "snapshot.json is damaged"},
		{"timestamp.json", "timestamp.json is damaged"},
		{"1.snapshot.json", "did not publish"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			out := t.TempDir()
			w := initWorkspace(t, InitOptions{})
			addRelease(t, w, "1.0", 1)
			if _, err := w.Publish(out, PublishOptions{}); err != nil {
				t.Fatal(err)
			}
			addRelease(t, w, "2.0", 2)
			os.WriteFile(filepath.Join(w.Dir, "metadata", tt.file), nil, 0o644)
			before := snapshotTree(t, out)
			_, err := w.Publish(out, PublishOptions{})
			if err == nil {
				t.Fatal("Publish accepted a damaged workspace")
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("message %q does not say %q", err, tt.says)
			}
			sameTree(t, before, snapshotTree(t, out))
		})
	}
	// A first publish from a workspace whose root is damaged writes no
	// timestamp: the output is verified before it goes live.
	t.Run("first publish", func(t *testing.T) {
		out := t.TempDir()
		w := initWorkspace(t, InitOptions{})
		addRelease(t, w, "1.0", 1)
		b, _ := os.ReadFile(filepath.Join(w.Dir, "metadata", "1.root.json"))
		os.WriteFile(filepath.Join(w.Dir, "metadata", "1.root.json"), b[:len(b)/2], 0o644)
		if _, err := w.Publish(out, PublishOptions{}); err == nil || !strings.Contains(err.Error(), "would not verify") {
			t.Fatalf("Publish = %v, want a refusal saying the release would not verify", err)
		}
		if _, err := os.Stat(filepath.Join(out, "metadata", "timestamp.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("timestamp.json written by a refused publish: %v", err)
		}
	})
}
