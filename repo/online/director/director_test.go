package director

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

var sha = strings.Repeat("ab", 32)

var workers, _ = strconv.Atoi(os.Getenv("FWCTL_DIRECTOR_WORKERS"))

// newDirector makes a director root in a temporary directory, publishes it
// to a directory store and opens the director.
func newDirector(t testing.TB, now func() time.Time) (*Director, blob.Dir, []byte) {
	t.Helper()
	keys := t.TempDir()
	res, err := Init(InitOptions{Out: keys, RootPassphrase: []byte("root pass"), OnlinePassphrase: []byte("online pass")})
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(res.Root)
	if err != nil {
		t.Fatal(err)
	}
	st := blob.Dir(t.TempDir())
	var log *slog.Logger
	if os.Getenv("FWCTL_DIRECTOR_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := Open(context.Background(), Options{Store: st, KeyURI: res.OnlineKey, TrustedRoot: root, Now: now, Log: log, Workers: workers,
		KeyOptions: signer.Options{Passphrase: func() ([]byte, error) { return []byte("online pass"), nil }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, st, root
}

func assignment(id string) Assignment {
	return Assignment{DeviceID: id, Hardware: "acme-gw-v2", TargetName: "acme-gw-v2/2.4.1/image.bin", Length: 1234,
		Hashes: map[string]string{"sha256": sha}, Counter: 17, Custom: json.RawMessage(`{"rollout":"r1","wave":2}`)}
}

func read(t *testing.T, st blob.Dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(string(st), filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verifyDevice checks one device's metadata with go-tuf (an independent
// canonical JSON encoder) and returns its targets.
func verifyDevice(t *testing.T, st blob.Dir, root []byte, id string) *metadata.Metadata[metadata.TargetsType] {
	t.Helper()
	r, err := metadata.Root().FromBytes(root)
	if err != nil {
		t.Fatal(err)
	}
	base := manifests.DirectorDevice(id)
	ts, err := metadata.Timestamp().FromBytes(read(t, st, base+"/timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.VerifyDelegate(metadata.TIMESTAMP, ts); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	v := ts.Signed.Meta["snapshot.json"].Version
	snapBytes := read(t, st, fmt.Sprintf("%s/%d.snapshot.json", base, v))
	if err := ts.Signed.Meta["snapshot.json"].VerifyLengthHashes(snapBytes); err != nil {
		t.Fatalf("snapshot hash: %v", err)
	}
	sn, err := metadata.Snapshot().FromBytes(snapBytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.VerifyDelegate(metadata.SNAPSHOT, sn); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	tg, err := metadata.Targets().FromBytes(read(t, st, fmt.Sprintf("%s/%d.targets.json", base, sn.Signed.Meta["targets.json"].Version)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.VerifyDelegate(metadata.TARGETS, tg); err != nil {
		t.Fatalf("targets: %v", err)
	}
	return tg
}

func TestAssignVerifies(t *testing.T) {
	d, st, root := newDirector(t, nil)
	ctx := context.Background()
	a := assignment("dev-1")
	a.Maintenance = &manifests.Maintenance{Windows: []string{"Sat 02:00-04:00"}, Timezone: "Europe/Berlin"}
	if err := d.Assign(ctx, []Assignment{a, assignment("dev-2")}); err != nil {
		t.Fatal(err)
	}
	tg := verifyDevice(t, st, root, "dev-1")
	tf := tg.Signed.Targets[a.TargetName]
	if tf == nil || tf.Length != 1234 {
		t.Fatalf("targets = %+v", tg.Signed.Targets)
	}
	got, err := manifests.ParseAssignment(*tf.Custom)
	if err != nil {
		t.Fatal(err)
	}
	if got.Device != "dev-1" || got.Counter != 17 || got.Maintenance.Timezone != "Europe/Berlin" || string(got.Custom) != `{"rollout":"r1","wave":2}` {
		t.Fatalf("assignment = %+v", got)
	}
	cur, err := d.Current(ctx, "dev-1")
	if err != nil || cur == nil || cur.TargetName != a.TargetName {
		t.Fatalf("Current = %+v, %v", cur, err)
	}
	if cur, err := d.Current(ctx, "dev-9"); err != nil || cur != nil {
		t.Fatalf("Current(unknown) = %+v, %v", cur, err)
	}
}

func TestVersionsOnlyGrow(t *testing.T) {
	d, st, root := newDirector(t, nil)
	ctx := context.Background()
	status := func() *DeviceStatus {
		s, err := d.Status(ctx, "dev-1")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := d.Assign(ctx, []Assignment{assignment("dev-1")}); err != nil {
		t.Fatal(err)
	}
	first := read(t, st, manifests.DirectorDevice("dev-1")+"/1.targets.json")
	if err := d.Assign(ctx, []Assignment{assignment("dev-1")}); err != nil {
		t.Fatal(err)
	}
	if s := status(); s.TargetsVersion != 1 || s.TimestampVersion != 1 {
		t.Fatalf("same assignment again published a new version: %+v", s)
	}
	b := assignment("dev-1")
	b.TargetName, b.Counter = "acme-gw-v2/2.5.0/image.bin", 18
	if err := d.Assign(ctx, []Assignment{b}); err != nil {
		t.Fatal(err)
	}
	if s := status(); s.TargetsVersion != 2 || s.TimestampVersion != 2 || s.Assignment.Counter != 18 {
		t.Fatalf("after a new assignment: %+v", s)
	}
	if err := d.Unassign(ctx, []string{"dev-1", "never-assigned"}); err != nil {
		t.Fatal(err)
	}
	if s := status(); s.TargetsVersion != 3 || s.Assignment != nil {
		t.Fatalf("after Unassign: %+v", s)
	}
	if tg := verifyDevice(t, st, root, "dev-1"); len(tg.Signed.Targets) != 0 {
		t.Fatalf("unassigned device still has targets %v", tg.Signed.Targets)
	}
	if s, _ := d.Status(ctx, "never-assigned"); s != nil {
		t.Fatalf("Unassign published metadata for a device that had none: %+v", s)
	}
	if string(read(t, st, manifests.DirectorDevice("dev-1")+"/1.targets.json")) != string(first) {
		t.Fatal("1.targets.json was rewritten")
	}
	// A second director process reads the state back from the store.
	d2, err := Open(ctx, Options{Store: st, Signer: d.key})
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Assign(ctx, []Assignment{assignment("dev-1")}); err != nil {
		t.Fatal(err)
	}
	if s, _ := d2.Status(ctx, "dev-1"); s.TargetsVersion != 4 || s.TimestampVersion != 4 {
		t.Fatalf("reopened director: %+v", s)
	}
	verifyDevice(t, st, root, "dev-1")
}

func TestRefresh(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d, st, root := newDirector(t, func() time.Time { return now })
	ctx := context.Background()
	if err := d.Assign(ctx, []Assignment{assignment("dev-1"), assignment("dev-2")}); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Refresh(ctx); err != nil || res.Timestamps+res.Targets != 0 || res.Devices != 2 {
		t.Fatalf("fresh Refresh = %+v, %v", res, err)
	}
	now = now.Add(13 * time.Hour)
	if res, err := d.Refresh(ctx); err != nil || res.Timestamps != 2 || res.Targets != 0 {
		t.Fatalf("Refresh after 13 h = %+v, %v", res, err)
	}
	if s, _ := d.Status(ctx, "dev-1"); s.TimestampVersion != 2 || s.TargetsVersion != 1 || !s.TimestampExpires.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("after timestamp re-sign: %+v", s)
	}
	verifyDevice(t, st, root, "dev-1")
	now = now.Add(16 * 24 * time.Hour)
	if res, err := d.Refresh(ctx); err != nil || res.Targets != 2 {
		t.Fatalf("Refresh after 16 days = %+v, %v", res, err)
	}
	s, _ := d.Status(ctx, "dev-1")
	if s.TargetsVersion != 2 || s.TimestampVersion != 3 || s.Assignment == nil || s.Assignment.Counter != 17 {
		t.Fatalf("after targets re-sign: %+v", s)
	}
	verifyDevice(t, st, root, "dev-1")
}

func TestAssignRefusesInvalid(t *testing.T) {
	d, _, _ := newDirector(t, nil)
	ctx := context.Background()
	mod := func(f func(a *Assignment)) Assignment { a := assignment("dev-1"); f(&a); return a }
	for name, a := range map[string]Assignment{
		"device id":  mod(func(a *Assignment) { a.DeviceID = "../x" }),
		"target":     mod(func(a *Assignment) { a.TargetName = "a/../b" }),
		"no sha256":  mod(func(a *Assignment) { a.Hashes = map[string]string{"sha512": sha} }),
		"hardware":   mod(func(a *Assignment) { a.Hardware = "" }),
		"custom":     mod(func(a *Assignment) { a.Custom = json.RawMessage(`[1]`) }),
		"float":      mod(func(a *Assignment) { a.Custom = json.RawMessage(`{"x":1.5}`) }),
		"escape":     mod(func(a *Assignment) { a.Custom = json.RawMessage(`{"x":"a\nb"}`) }),
		"bad window": mod(func(a *Assignment) { a.Maintenance = &manifests.Maintenance{Windows: []string{"Sat 2-4"}} }),
	} {
		if err := d.Assign(ctx, []Assignment{assignment("ok-1"), a}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Assign = %v, want ErrInvalid", name, err)
		}
	}
	if s, _ := d.Status(ctx, "ok-1"); s != nil {
		t.Fatal("a batch with an invalid assignment published part of it")
	}
	if err := d.Assign(ctx, []Assignment{assignment("a"), assignment("a")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("duplicate device: %v", err)
	}
}

func TestOpenRefusesUnauthorisedKey(t *testing.T) {
	_, st, _ := newDirector(t, nil)
	other, _ := signer.Generate("")
	if _, err := Open(context.Background(), Options{Store: st, Signer: other}); !errors.Is(err, ErrKeyNotAuthorised) {
		t.Fatalf("Open with a key the director root does not name = %v", err)
	}
}
