package verify_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/server"
	"github.com/fwctl/fwctl/repo/verify"
)

// sourceBackend is one way to read a published repository. open serves the
// published directory pub through it and returns the Source (built with
// OpenSource from the location a user would type) and, where the transport
// can fail, a function that takes it down.
type sourceBackend struct {
	name string
	open func(t *testing.T, pub string) (src verify.Source, down func())
}

var sourceBackends = []sourceBackend{
	{"dir", func(t *testing.T, pub string) (verify.Source, func()) {
		return mustOpenSource(t, pub), nil
	}},
	{"s3", func(t *testing.T, pub string) (verify.Source, func()) {
		s3 := testenv.RequireS3(t)
		s3.Setenv(t)
		st, err := blob.Open(s3.URL("fleet/prod"), blob.Options{})
		if err != nil {
			t.Fatal(err)
		}
		copyTree(t, pub, st)
		return mustOpenSource(t, s3.URL("fleet/prod")), nil
	}},
	{"http", func(t *testing.T, pub string) (verify.Source, func()) {
		h, err := server.New(server.Options{Dir: pub})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return mustOpenSource(t, srv.URL), srv.Close
	}},
}

func mustOpenSource(t *testing.T, location string) verify.Source {
	t.Helper()
	src, err := verify.OpenSource(location, blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// copyTree uploads every repository file of dir to st under the same name.
func copyTree(t *testing.T, dir string, st blob.Store) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			return nil // the publisher's lock files are not part of the repository
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		return st.Put(context.Background(), filepath.ToSlash(rel), bytes.NewReader(b), int64(len(b)))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSourceConformance is the one suite every Source passes (restic's
// backend test pattern): each serves the same published repository, which
// verifies to the same result through every one; a file reads back
// byte for byte; a missing file is fs.ErrNotExist and not ErrUnreachable; a
// name outside the repository is never served; a transport that goes down
// is ErrUnreachable (a retry, not a refusal).
func TestSourceConformance(t *testing.T) {
	ws := initWorkspace(t, repo.InitOptions{})
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, bytes.Repeat([]byte("source suite "), 100), 0o644)
	if _, err := ws.AddTarget(img, repo.AddOptions{Hardware: []string{"acme-gw-v2"}, Version: "1.0.0", Counter: 1}); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	pub := filepath.Join(parent, "pub")
	if _, err := ws.Publish(pub, repo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	// A file next to the repository that no Source may serve.
	os.WriteFile(filepath.Join(parent, "secret"), []byte("outside the repository"), 0o644)
	root := mustRoot(t, ws.Dir)
	want, err := verify.VerifyDir(pub, root, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	timestamp, err := os.ReadFile(filepath.Join(pub, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}

	for _, b := range sourceBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			src, down := b.open(t, pub)
			if src.String() == "" {
				t.Error("String is empty: messages need the repository's name")
			}

			got, err := verify.Verify(ctx, src, root, time.Now())
			if err != nil {
				t.Fatalf("Verify through %s: %v", src, err)
			}
			if !maps.Equal(got.Versions, want.Versions) || !slices.EqualFunc(got.Targets, want.Targets, func(a, b verify.Target) bool { return a.Path == b.Path }) {
				t.Fatalf("Verify through %s: versions %v, %d targets; the directory gives %v, %d targets", src, got.Versions, len(got.Targets), want.Versions, len(want.Targets))
			}

			if b, err := readAll(ctx, src, "metadata/timestamp.json"); err != nil || !bytes.Equal(b, timestamp) {
				t.Errorf("metadata/timestamp.json: %d bytes, %v; want the published %d bytes", len(b), err, len(timestamp))
			}

			_, err = readAll(ctx, src, "metadata/999.root.json")
			if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, verify.ErrUnreachable) {
				t.Errorf("missing file: %v, want fs.ErrNotExist and not ErrUnreachable", err)
			}

			for _, name := range []string{"../secret", "metadata/../../secret", "/secret"} {
				if b, err := readAll(ctx, src, name); err == nil || bytes.Contains(b, []byte("outside")) {
					t.Errorf("Open(%q) served %q (%v): a Source must not read outside the repository", name, b, err)
				}
			}

			if down != nil {
				down()
				if _, err := readAll(ctx, src, "metadata/timestamp.json"); !errors.Is(err, verify.ErrUnreachable) {
					t.Errorf("transport down: %v, want ErrUnreachable", err)
				}
			}
		})
	}
}

func readAll(ctx context.Context, src verify.Source, name string) ([]byte, error) {
	rc, err := src.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 1<<20))
}
