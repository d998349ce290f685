package repo

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
)

// initWorkspace creates a workspace with unencrypted keys (opt's other
// fields as given) in a temporary directory, and opens it.
func initWorkspace(t testing.TB, opt InitOptions) *Workspace {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ws")
	opt.InsecurePlaintext = true
	if _, err := Init(dir, opt); err != nil {
		t.Fatal(err)
	}
	ws, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func testWorkspace(t *testing.T, now ...time.Time) *Workspace {
	t.Helper()
	clock := time.Now
	if len(now) > 0 {
		clock = func() time.Time { return now[0] }
	}
	return initWorkspace(t, InitOptions{RootKeys: 2, RootThreshold: 1, Now: clock})
}

func pubKey(t *testing.T) string {
	t.Helper()
	k, _ := signer.Generate(signer.Ed25519)
	p := filepath.Join(t.TempDir(), "k.json")
	if _, err := signer.Save(p, "", k, nil); err != nil {
		t.Fatal(err)
	}
	return "file:" + p
}

func TestRotateRefuses(t *testing.T) {
	ws := testWorkspace(t)
	root, _ := ws.Root()
	rootIDs := root.Signed.Roles[metadata.ROOT].KeyIDs
	for _, tc := range []struct {
		name, role string
		opt        RotateOptions
		want       string
	}{
		{"nothing", metadata.ROOT, RotateOptions{}, "nothing to change"},
		{"threshold above keys", metadata.ROOT, RotateOptions{Threshold: 3}, "would have 2 keys but needs 3"},
		{"revoke all", metadata.ROOT, RotateOptions{Revoke: rootIDs}, "would have 0 keys"},
		{"short prefix", metadata.ROOT, RotateOptions{Revoke: []string{rootIDs[0][:4]}}, "at least 8 characters"},
		{"unknown key", metadata.TARGETS, RotateOptions{Revoke: []string{"0123456789abcdef"}}, "matches 0 keys"},
		{"unknown role", "vendor-x", RotateOptions{Threshold: 1}, "unknown role"},
		{"bad uri", metadata.TARGETS, RotateOptions{Add: []string{"pkcs11:token=x"}}, "token= and object= are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ws.Rotate(tc.role, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Rotate(%s, %+v) = %v, want an error containing %q", tc.role, tc.opt, err, tc.want)
			}
		})
	}
}

// TestRotateChangesAccumulate: several changes make one root version,
// signed by old and new keys at publish.
func TestRotateChangesAccumulate(t *testing.T) {
	ws := testWorkspace(t)
	if _, err := ws.Rotate(metadata.TARGETS, RotateOptions{Add: []string{pubKey(t)}}); err != nil {
		t.Fatal(err)
	}
	ch, err := ws.Rotate(metadata.TARGETS, RotateOptions{Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if ch.RootVersion != 2 || ch.Threshold != 2 || len(ch.KeyIDs) != 2 {
		t.Fatalf("change: %+v", ch)
	}
	res, err := ws.Publish(filepath.Join(t.TempDir(), "pub"), PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions[metadata.ROOT] != 2 {
		t.Fatalf("root version %d, want 2", res.Versions[metadata.ROOT])
	}
	// The next change starts root v3.
	ch, err = ws.Rotate(metadata.TARGETS, RotateOptions{Threshold: 1})
	if err != nil || ch.RootVersion != 3 {
		t.Fatalf("next change: %+v %v", ch, err)
	}
}

func TestThresholdErrorMessage(t *testing.T) {
	err := error(&ThresholdError{Missing: []Missing{
		{Role: "root", Version: 3, Have: 1, Need: 2, By: "root v2"},
		{Role: "targets", Version: 7, Have: 0, Need: 2, By: "root v3"},
	}})
	if !errors.Is(err, ErrThreshold) {
		t.Fatal("errors.Is(ErrThreshold) is false")
	}
	for _, want := range []string{"root v3 has 1 of 2 signatures required by root v2 (1 more)", "targets v7 has 0 of 2", "fwctl ceremony export"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestExpiringWithin(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ws := testWorkspace(t, now)
	ws.Now = func() time.Time { return now }
	ws.Settings.Expiry = map[string]Duration{metadata.TIMESTAMP: Duration(time.Hour)}
	if _, err := ws.Publish(filepath.Join(t.TempDir(), "pub"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at     time.Duration // after publishing
		within time.Duration
		want   []string
	}{
		{0, 30 * time.Minute, nil},
		{0, 2 * time.Hour, []string{"timestamp"}},
		{2 * time.Hour, time.Minute, []string{"timestamp"}}, // expired
		{0, 8 * 24 * time.Hour, []string{"timestamp", "snapshot"}},
		{0, 400 * 24 * time.Hour, []string{"timestamp", "snapshot", "targets", "root"}},
	} {
		all, err := verify.Expiries(filepath.Join(ws.Dir, "metadata"), now.Add(tc.at))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range verify.ExpiringWithin(all, tc.within) {
			got = append(got, e.Role)
			if tc.at > time.Hour && e.Role == "timestamp" && !e.Expired {
				t.Errorf("timestamp not marked expired at +%s", tc.at)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("at +%s within %s: %v, want %v", tc.at, tc.within, got, tc.want)
		}
	}
}
