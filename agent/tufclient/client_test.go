package tufclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent/tuf"
)

func TestGetFrom(t *testing.T) {
	body := []byte("0123456789abcdefghij")
	tests := []struct {
		name    string
		handler http.HandlerFunc
		offset  int64
		max     int64
		want    string
		err     error
	}{
		{"whole", func(w http.ResponseWriter, r *http.Request) { w.Write(body) }, 0, 20, string(body), nil},
		{"range honoured", func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(body))
		}, 15, 20, "fghij", nil},
		{"range ignored: skip what we have", func(w http.ResponseWriter, r *http.Request) { w.Write(body) }, 15, 20, "fghij", nil},
		{"wrong content-range", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 3-19/20")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(body[3:])
		}, 15, 20, "", ErrTransport},
		{"too long", func(w http.ResponseWriter, r *http.Request) { w.Write(body) }, 0, 10, "", tuf.ErrEndlessData},
		{"announced too long", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "20")
			w.Write(body)
		}, 0, 5, "", tuf.ErrEndlessData},
		{"not found", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, 0, 20, "", ErrHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := New(srv.URL, t.TempDir())
			var buf bytes.Buffer
			_, err := c.download(context.Background(), "f", srv.URL+"/f", tt.offset, tt.max, &buf, nil)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || buf.String() != tt.want {
				t.Fatalf("got %q, %v; want %q", buf.String(), err, tt.want)
			}
		})
	}
}

func TestStall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	c := New(srv.URL, t.TempDir())
	c.StallTimeout = 100 * time.Millisecond
	start := time.Now()
	_, err := c.download(context.Background(), "f", srv.URL+"/f", 0, 100, &bytes.Buffer{}, nil)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err %v, want stalled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("stall detection took too long")
	}
}

// TestContentRangeStart holds the Content-Range parser to what
// fmt.Sscanf(h, "bytes %d-", …) accepted before the agent stopped linking
// fmt's scanner.
func TestContentRangeStart(t *testing.T) {
	for _, h := range []string{"bytes 100-199/200", "bytes 0-0/1", "bytes 100-", "bytes 100", "bytes -5/10", "bytes */200",
		"bytes  7-9/10", "bytes7-9/10", "bits 7-9/10", "", "bytes", "bytes x-9/10", "bytes 99999999999999999999-1/2", "bytes +7-9/10", "bytes\t7-9/10", "bytes \t 7-9/10", "bytes\n7-9/10"} {
		var want int64
		_, err := fmt.Sscanf(h, "bytes %d-", &want)
		got, ok := contentRangeStart(h)
		if ok != (err == nil) || (ok && got != want) {
			t.Errorf("contentRangeStart(%q) = %d, %v; fmt.Sscanf gives %d, %v", h, got, ok, want, err)
		}
	}
}
