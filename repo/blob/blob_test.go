package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
)

// testStore is the conformance suite every Store passes.
func testStore(t *testing.T, st blob.Store) {
	ctx := context.Background()
	put := func(name, data string) {
		t.Helper()
		if err := st.Put(ctx, name, strings.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("Put %s: %v", name, err)
		}
	}
	get := func(name string, off, n int64) string {
		t.Helper()
		rc, err := st.Get(ctx, name, off, n)
		if err != nil {
			t.Fatalf("Get %s %d %d: %v", name, off, n, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		return string(b)
	}

	if _, err := st.Stat(ctx, "metadata/timestamp.json"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Stat of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := st.Get(ctx, "metadata/timestamp.json", 0, -1); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Get of a missing file: %v, want ErrNotExist", err)
	}
	put("metadata/timestamp.json", `{"v":1}`)
	put("metadata/1.root.json", `root`)
	put("targets/hw/abc.fw.img", "0123456789")
	put("metadata/timestamp.json", `{"v":2}`) // replace
	if got := get("metadata/timestamp.json", 0, -1); got != `{"v":2}` {
		t.Errorf("after replacing: %q", got)
	}
	for _, c := range []struct {
		off, n int64
		want   string
	}{{0, -1, "0123456789"}, {2, 3, "234"}, {7, -1, "789"}, {0, 10, "0123456789"}, {4, 0, ""}} {
		if got := get("targets/hw/abc.fw.img", c.off, c.n); got != c.want {
			t.Errorf("Get(%d, %d) = %q, want %q", c.off, c.n, got, c.want)
		}
	}
	fi, err := st.Stat(ctx, "targets/hw/abc.fw.img")
	if err != nil || fi.Size != 10 || fi.Name != "targets/hw/abc.fw.img" || fi.ModTime.IsZero() {
		t.Errorf("Stat = %+v, %v", fi, err)
	}
	list, err := st.List(ctx, "metadata/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range list {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "metadata/1.root.json metadata/timestamp.json" {
		t.Errorf("List(metadata/) = %v", names)
	}
	if all, err := st.List(ctx, ""); err != nil || len(all) != 3 {
		t.Errorf("List() = %v, %v; want 3 files", all, err)
	}
	if _, err := st.Stat(ctx, "targets/hw"); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("Stat of a directory: %v, want ErrNotExist", err)
	}
	for _, bad := range []string{"../x", "/etc/passwd", "a/../../b", "", `targets/x\y.img`, "targets/a b", "targets/x%2e.img", "metadata/.timestamp.json.lock"} {
		if err := st.Put(ctx, bad, strings.NewReader("x"), 1); err == nil {
			t.Errorf("Put(%q) accepted", bad)
		}
		if _, err := st.Get(ctx, bad, 0, -1); !errors.Is(err, blob.ErrNotExist) {
			t.Errorf("Get(%q) = %v, want ErrNotExist (no store holds such a name)", bad, err)
		}
		if _, err := st.Stat(ctx, bad); !errors.Is(err, blob.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want ErrNotExist", bad, err)
		}
	}
	testSwap(t, st)
	// blob.Reader serves ranges as http.ServeContent asks for them.
	r := blob.NewReader(ctx, st, "targets/hw/abc.fw.img", 10)
	defer r.Close()
	if n, _ := r.Seek(0, io.SeekEnd); n != 10 {
		t.Errorf("Seek end = %d", n)
	}
	r.Seek(3, io.SeekStart)
	b := make([]byte, 4)
	if _, err := io.ReadFull(r, b); err != nil || string(b) != "3456" {
		t.Errorf("Reader at 3: %q, %v", b, err)
	}
	r.Seek(1, io.SeekStart)
	if rest, err := io.ReadAll(r); err != nil || !bytes.Equal(rest, []byte("123456789")) {
		t.Errorf("Reader at 1: %q, %v", rest, err)
	}
}

// testSwap: a Swapper replaces a file only while it holds what was read.
func testSwap(t *testing.T, st blob.Store) {
	ctx := context.Background()
	const name = "metadata/timestamp.json"
	sw, ok := st.(blob.Swapper)
	if !ok {
		t.Fatalf("%T is not a blob.Swapper", st)
	}
	data, tag, err := sw.GetTagged(ctx, name)
	if err != nil || string(data) != `{"v":2}` || tag == "" {
		t.Fatalf("GetTagged = %q, %q, %v", data, tag, err)
	}
	// Another writer (a publish) lands after the read.
	if err := st.Put(ctx, name, strings.NewReader(`{"v":3}`), 7); err != nil {
		t.Fatal(err)
	}
	if err := sw.Swap(ctx, name, []byte(`{"v":2,"resigned":true}`), tag); !errors.Is(err, blob.ErrChanged) {
		t.Errorf("Swap with a stale tag: %v, want ErrChanged", err)
	}
	if b, _ := blob.ReadAll(ctx, st, name); string(b) != `{"v":3}` {
		t.Errorf("a failed Swap wrote %q", b)
	}
	_, tag, err = sw.GetTagged(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Swap(ctx, name, []byte(`{"v":4}`), tag); err != nil {
		t.Errorf("Swap with the current tag: %v", err)
	}
	if b, _ := blob.ReadAll(ctx, st, name); string(b) != `{"v":4}` {
		t.Errorf("after Swap: %q", b)
	}
	// The old tag is stale now too.
	if err := sw.Swap(ctx, name, []byte(`{"v":5}`), tag); !errors.Is(err, blob.ErrChanged) {
		t.Errorf("Swap with the replaced tag: %v, want ErrChanged", err)
	}
	if err := st.Put(ctx, name, strings.NewReader(`{"v":2}`), 7); err != nil {
		t.Fatal(err)
	}
	// An empty tag creates a file that was absent when read, and nothing
	// else.
	if err := sw.Swap(ctx, name, []byte(`{"v":9}`), ""); !errors.Is(err, blob.ErrChanged) {
		t.Errorf("Swap with no tag over an existing file: %v, want ErrChanged", err)
	}
	if b, _ := blob.ReadAll(ctx, st, name); string(b) != `{"v":2}` {
		t.Errorf("a failed Swap with no tag wrote %q", b)
	}
	const fresh = "metadata/swapped.json"
	if err := sw.Swap(ctx, fresh, []byte(`{"v":1}`), ""); err != nil {
		t.Errorf("Swap with no tag of an absent file: %v", err)
	}
	if b, _ := blob.ReadAll(ctx, st, fresh); string(b) != `{"v":1}` {
		t.Errorf("after Swap with no tag: %q", b)
	}
}

func TestDir(t *testing.T) { testStore(t, blob.Dir(t.TempDir())) }

// TestS3 runs the suite against a real S3-compatible server (versitygw).
func TestS3(t *testing.T) {
	s3 := testenv.RequireS3(t)
	s3.Setenv(t)
	var logs bytes.Buffer
	st, err := blob.Open(s3.URL("fleet/prod"), blob.Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	testStore(t, st)
	// versitygw evaluates If-Match itself: no fallback to read-check-write.
	if logs.Len() > 0 {
		t.Errorf("unexpected warnings:\n%s", logs.String())
	}
	// The prefix confines the store: the bucket root sees the files
	// under it.
	whole, err := blob.Open(s3.URL(""), blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := whole.Stat(context.Background(), "fleet/prod/metadata/1.root.json"); err != nil {
		t.Errorf("object not under the prefix: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	if _, err := blob.Open("s3://b/p", blob.Options{}); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("no credentials: %v", err)
	}
	if _, err := blob.Open("s3:///p", blob.Options{}); err == nil {
		t.Error("no bucket accepted")
	}
}
