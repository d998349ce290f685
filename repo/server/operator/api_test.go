package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

func TestAuthenticate(t *testing.T) {
	db, err := inventory.Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tok, _, err := db.CreateToken(context.Background(), "alice", inventory.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"", http.StatusUnauthorized},
		{"Basic " + tok, http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Bearer fwop_nope", http.StatusUnauthorized},
		{"bearer " + tok, http.StatusUnauthorized},
		{"Bearer " + tok, 0},
	} {
		r := httptest.NewRequest("GET", Prefix+"devices", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		got, code, err := Authenticate(db, r)
		if code != tc.want || (code == 0) != (err == nil) || code == 0 && got.Name != "alice" {
			t.Errorf("Authorization %.12q: %v %d %v, want %d", tc.header, got, code, err, tc.want)
		}
	}
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", inventory.ErrUnknownRollout), 404},
		{fmt.Errorf("x: %w", inventory.ErrUnknownDevice), 404},
		{fmt.Errorf("x: %w", rollout.ErrInvalidSpec), 400},
		{fmt.Errorf("x: %w", inventory.ErrNoDevices), 400},
		{fmt.Errorf("x: %w", rollout.ErrTransition), 409},
		{fmt.Errorf("x: %w", inventory.ErrDeviceBusy), 409},
		{&httpError{418, errors.New("teapot")}, 418},
		{errors.New("disk on fire"), 500},
	} {
		if got := status(tc.err); got != tc.want {
			t.Errorf("status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
