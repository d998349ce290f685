package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/manifests"
)

// TestReportCall checks how fwrepo's answers map to the agent's errors:
// 5xx and transport errors are worth retrying (ErrNetwork), 4xx are refusals
// with fwrepo's reason, and a server without the device API says how to
// enable it. Report's happy path and forgeries run against real fwrepo and
// swtpm in test/report_test.go.
func TestReportCall(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   error
		msg    string
	}{
		{"ok", 200, `{"nonce":"0123456789abcdef0123"}`, nil, ""},
		{"refused with reason", 403, `{"error":"device is not registered: \"x\""}`, ErrReportRefused, "not registered"},
		{"no device API", 404, "404 page not found\n", ErrReportRefused, "fwrepo serve --db"},
		{"server trouble", 503, `{"error":"retry later"}`, ErrNetwork, "retry later"},
		{"not JSON", 200, `<html>`, ErrReportRefused, "not the expected JSON"},
		{"redirect-ish", 204, ``, ErrReportRefused, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			var nr manifests.NonceResponse
			err := (&Agent{}).call(context.Background(), srv.Client(), "GET", srv.URL+manifests.NoncePath, nil, &nr)
			if !errors.Is(err, tt.want) || (err != nil && !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("call = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	var nr manifests.NonceResponse
	if err := (&Agent{}).call(context.Background(), http.DefaultClient, "GET", srv.URL, nil, &nr); !errors.Is(err, ErrNetwork) {
		t.Fatalf("unreachable server: %v, want ErrNetwork", err)
	}
}
