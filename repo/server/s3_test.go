package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
)

// TestS3SameSizeReplaceIsServed: object storage keeps whole-second
// modification times, and a re-signed timestamp.json often has the size
// of the one it replaces, so a cached copy compared by Stat alone could be
// served for ever after a replace within the same second. Against a real
// S3 server (versitygw), the new bytes are served.
func TestS3SameSizeReplaceIsServed(t *testing.T) {
	s3 := testenv.RequireS3(t)
	s3.Setenv(t)
	st, err := blob.Open(s3.URL("same-size"), blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(b string) {
		t.Helper()
		if err := st.Put(ctx, "metadata/timestamp.json", bytes.NewReader([]byte(b)), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"v":1}`)
	s, err := New(Options{Store: st, Revalidate: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func() string {
		t.Helper()
		res, err := http.Get(srv.URL + "/metadata/timestamp.json")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if got := get(); got != `{"v":1}` {
		t.Fatalf("served %q", got)
	}
	for _, want := range []string{`{"v":2}`, `{"v":3}`} {
		put(want)
		if got := get(); got != want {
			t.Fatalf("after a same-size replace: served %q, want %q", got, want)
		}
	}
}
