package operator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
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
		{fmt.Errorf("x: %w", rollout.ErrApproval), 403},
		{fmt.Errorf("x: %w", inventory.ErrDeviceBusy), 409},
		{&httpError{418, errors.New("teapot")}, 418},
		{errors.New("disk on fire"), 500},
	} {
		if got := status(tc.err); got != tc.want {
			t.Errorf("status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestApprovalNeedsSecondOperator: a rollout created with an approval
// step waits after start until an operator other than its creator
// approves; the creator's own approval (and an anonymous one) is refused
// and changes nothing.
func TestApprovalNeedsSecondOperator(t *testing.T) {
	ctx := context.Background()
	db, err := inventory.Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if _, _, err := db.AddDevice(ctx, "gw-1", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), inventory.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	s := &Service{DB: db}
	if _, err := s.Create(ctx, "r1", rollout.Spec{Target: "acme/2.0/fw.img", SuccessThreshold: 1, Approval: true}, "alice"); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Act(ctx, "r1", rollout.Start, "alice"); err != nil || r.Status != rollout.WaitingApproval {
		t.Fatalf("start: %v %v", r, err)
	}
	for _, by := range []string{"alice", rollout.Anonymous} {
		if r, err := s.Act(ctx, "r1", rollout.Approve, by); !errors.Is(err, rollout.ErrApproval) || status(err) != http.StatusForbidden {
			t.Errorf("approve by %s: %v %v, want ErrApproval (403)", by, r, err)
		}
	}
	if r, _ := db.Rollout(ctx, "r1"); r.Status != rollout.WaitingApproval || r.ApprovedBy != "" {
		t.Fatalf("after the refused approvals: %s approved by %q", r.Status, r.ApprovedBy)
	}
	r, err := s.Act(ctx, "r1", rollout.Approve, "bob")
	if err != nil || r.Status != rollout.Running || r.ApprovedBy != "bob" || r.CreatedBy != "alice" {
		t.Fatalf("approve by bob: %+v %v", r, err)
	}
}
