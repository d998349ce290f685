package verify_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/repo/verify"
)

// endless streams zeros (chunked, no Content-Length) until the client goes
// away: only the reader's own limit can stop it.
func endless(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 32<<10)
	for r.Context().Err() == nil {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// TestHTTPSourceHostileServer: a server that streams without end, stalls,
// or fails is refused or reported unreachable, never read without bound
// and never waited on forever.
func TestHTTPSourceHostileServer(t *testing.T) {
	r := newDelegatedRepo(t, false)
	files := http.FileServer(http.Dir(r.pub))
	tests := []struct {
		name        string
		serve       func(w http.ResponseWriter, req *http.Request) bool // true: handled
		unreachable bool
		says        string
	}{
		{name: "endless target", serve: func(w http.ResponseWriter, req *http.Request) bool {
			if !strings.HasPrefix(req.URL.Path, "/targets/") {
				return false
			}
			endless(w, req)
			return true
		}, says: "metadata says"},
		{name: "endless timestamp", serve: func(w http.ResponseWriter, req *http.Request) bool {
			if req.URL.Path != "/metadata/timestamp.json" {
				return false
			}
			endless(w, req)
			return true
		}, says: "longer than 16384 bytes, the most a device accepts"},
		{name: "endless delegated role", serve: func(w http.ResponseWriter, req *http.Request) bool {
			if req.URL.Path != "/metadata/1.acme.json" {
				return false
			}
			endless(w, req)
			return true
		}, says: "does not match the length and hashes snapshot records"},
		{name: "stalled target", serve: func(w http.ResponseWriter, req *http.Request) bool {
			if !strings.HasPrefix(req.URL.Path, "/targets/") {
				return false
			}
			w.Write([]byte("firm"))
			w.(http.Flusher).Flush()
			<-req.Context().Done()
			return true
		}, unreachable: true, says: "nothing received for 200ms"},
		{name: "server error", serve: func(w http.ResponseWriter, req *http.Request) bool {
			if req.URL.Path != "/metadata/1.snapshot.json" {
				return false
			}
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return true
		}, unreachable: true, says: "503 Service Unavailable (retry later)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if !tt.serve(w, req) {
					files.ServeHTTP(w, req)
				}
			}))
			defer srv.Close()
			src, err := verify.NewHTTPSource(srv.URL, verify.HTTPOptions{Stall: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err = verify.Verify(ctx, src, r.root, time.Now())
			if err == nil {
				t.Fatal("Verify accepted it")
			}
			if ctx.Err() != nil {
				t.Fatalf("Verify ran into the test's deadline: %v", err)
			}
			if errors.Is(err, verify.ErrUnreachable) != tt.unreachable {
				t.Errorf("errors.Is(%v, ErrUnreachable) = %v, want %v", err, !tt.unreachable, tt.unreachable)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("message %q\ndoes not say %q", err, tt.says)
			}
		})
	}
}
