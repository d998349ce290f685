package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
)

// s3Through returns a store that reaches the test's versitygw through
// front, a handler that may answer itself or pass the request on.
func s3Through(t *testing.T, front func(w http.ResponseWriter, r *http.Request, next http.Handler)) (*blob.S3, *bytes.Buffer) {
	t.Helper()
	s3 := testenv.RequireS3(t)
	s3.Setenv(t)
	up, err := url.Parse(s3.Env["AWS_ENDPOINT_URL"])
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { front(w, r, proxy) }))
	t.Cleanup(srv.Close)
	st, err := blob.NewS3(s3.Bucket, "p", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	st.Log = slog.New(slog.NewTextHandler(&logs, nil))
	return st, &logs
}

// TestS3ConditionalFallback: a server that answers 501 to a conditional
// PutObject gets a read-check-write, logged once, which still refuses a
// stale tag.
func TestS3ConditionalFallback(t *testing.T) {
	conditional := 0
	st, logs := s3Through(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut && (r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != "") {
			conditional++
			w.WriteHeader(http.StatusNotImplemented)
			fmt.Fprint(w, `<?xml version="1.0"?><Error><Code>NotImplemented</Code><Message>conditional writes</Message></Error>`)
			return
		}
		next.ServeHTTP(w, r)
	})
	ctx := context.Background()
	if err := st.Swap(ctx, "metadata/timestamp.json", []byte(`{"v":1}`), ""); err != nil {
		t.Fatalf("Swap of an absent file: %v", err)
	}
	_, tag, err := st.GetTagged(ctx, "metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Swap(ctx, "metadata/timestamp.json", []byte(`{"v":2}`), tag); err != nil {
		t.Fatalf("Swap with the current tag: %v", err)
	}
	if err := st.Swap(ctx, "metadata/timestamp.json", []byte(`{"v":3}`), tag); !errors.Is(err, blob.ErrChanged) {
		t.Fatalf("Swap with a stale tag: %v, want ErrChanged", err)
	}
	if err := st.Swap(ctx, "metadata/timestamp.json", []byte(`{"v":3}`), ""); !errors.Is(err, blob.ErrChanged) {
		t.Fatalf("Swap of a file that exists now, read as absent: %v, want ErrChanged", err)
	}
	if b, _ := blob.ReadAll(ctx, st, "metadata/timestamp.json"); string(b) != `{"v":2}` {
		t.Errorf("stored %q, want the second write", b)
	}
	if conditional != 1 {
		t.Errorf("%d conditional writes tried, want 1 (then the fallback)", conditional)
	}
	if n := strings.Count(logs.String(), "does not support conditional writes"); n != 1 {
		t.Errorf("%d fallback warnings, want 1:\n%s", n, logs)
	}
}

// TestS3ListPages: a listing longer than a page follows the continuation
// tokens.
func TestS3ListPages(t *testing.T) {
	pages := 0
	st, _ := s3Through(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.URL.Query().Get("list-type") == "2" {
			pages++
		}
		next.ServeHTTP(w, r)
	})
	st.SetListPage(2)
	ctx := context.Background()
	for i := range 5 {
		if err := st.Put(ctx, fmt.Sprintf("targets/f%d", i), strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.List(ctx, "targets/")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].Name != "targets/f0" || got[4].Name != "targets/f4" || got[2].Size != 1 {
		t.Errorf("List = %+v, want targets/f0..f4", got)
	}
	if pages != 3 {
		t.Errorf("%d listing pages, want 3", pages)
	}
}

// TestS3ErrorMessages: an S3 error answer names its code and message, and
// a 404 is ErrNotExist.
func TestS3ErrorMessages(t *testing.T) {
	st, _ := s3Through(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, "/denied") {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
			return
		}
		next.ServeHTTP(w, r)
	})
	ctx := context.Background()
	_, err := st.Get(ctx, "targets/denied", 0, -1)
	if err == nil || !strings.Contains(err.Error(), "AccessDenied: Access Denied") || errors.Is(err, blob.ErrNotExist) {
		t.Errorf("403: %v", err)
	}
	if _, err := st.Get(ctx, "targets/absent", 0, -1); !errors.Is(err, blob.ErrNotExist) || !strings.Contains(err.Error(), "NoSuchKey") {
		t.Errorf("404: %v", err)
	}
	// A wrong secret is refused by the server's signature check.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	bad, err := blob.NewS3(st.Bucket(), "p", st.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Put(ctx, "targets/x", strings.NewReader("x"), 1); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("wrong secret: %v", err)
	}
}
