package director

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"flag"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

var update = flag.Bool("update", false, "rewrite the golden director metadata")

// TestGoldenDeviceMetadata pins the director's per-device metadata, wire
// format 2 (docs/director.md): with a fixed Ed25519 key (deterministic
// signatures) and clock, one assignment signs to exactly the bytes in
// testdata/device-v2/, and no assignment to those in
// testdata/device-v2-empty/ (bound to the device all the same).
// Regenerate with -update only for a deliberate format change, which also
// bumps manifests.DirectorFormat or DirectorSchema. testdata/device-v1/
// (format 1, before the binding) stays: TestReadFormat1 reads it.
func TestGoldenDeviceMetadata(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	_, id, err := signer.TUFKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	d := &Director{key: key, keyID: id, devices: map[string]*device{},
		opt: Options{TimestampLifetime: DefaultTimestampLifetime, TargetsLifetime: DefaultTargetsLifetime}}
	a := assignment("3f9a0c")
	a.Maintenance = &manifests.Maintenance{Windows: []string{"Sat 02:00-04:00"}, Timezone: "Europe/Berlin"}
	c, err := validate(&a)
	if err != nil {
		t.Fatal(err)
	}
	for dir, j := range map[string]*job{"device-v2": {id: a.DeviceID, a: &a, custom: c, dev: &device{}},
		"device-v2-empty": {id: "3f9a0d", dev: &device{}}} {
		golden(t, d, j, filepath.Join("testdata", dir))
	}
}

func golden(t *testing.T, d *Director, j *job, dir string) {
	if err := d.sign(j, time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	for k, name := range j.names {
		file := filepath.Join(dir, path.Base(name))
		if *update {
			os.MkdirAll(dir, 0o755)
			if err := os.WriteFile(file, j.data[k], 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(j.data[k], want) {
			t.Errorf("%s changed:\nwant %s\ngot  %s", file, want, j.data[k])
		}
	}
	if got := j.names[len(j.names)-1]; got != j.base()+"/timestamp.json" {
		t.Errorf("timestamp is not written last: %v", j.names)
	}
}

// TestReadFormat1: a device published in format 1 (no device binding)
// reads as before, and Refresh re-publishes it in format 2 (same
// assignment) although neither its timestamp nor its targets are due.
func TestReadFormat1(t *testing.T) {
	st := blob.Dir(t.TempDir())
	base := manifests.DirectorDevice("3f9a0c")
	for _, f := range []string{"1.targets.json", "1.snapshot.json", "timestamp.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "device-v1", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(context.Background(), base+"/"+f, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	_, id, err := signer.TUFKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 30, 0, 0, time.UTC) // neither timestamp nor targets due
	d := &Director{st: st, key: key, keyID: id, devices: map[string]*device{},
		opt: Options{TimestampLifetime: DefaultTimestampLifetime, TargetsLifetime: DefaultTargetsLifetime,
			Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)}}
	dev, err := d.read(context.Background(), "3f9a0c")
	if err != nil {
		t.Fatal(err)
	}
	if !dev.unbound || dev.version != 1 || dev.assigned == nil || dev.assigned.Counter != 17 {
		t.Fatalf("format 1 device read as %+v", dev)
	}
	if res, err := d.Refresh(context.Background()); err != nil || res.Targets != 1 {
		t.Fatalf("Refresh = %+v, %v; want the format 1 device re-published", res, err)
	}
	dev, err = d.read(context.Background(), "3f9a0c")
	if err != nil {
		t.Fatal(err)
	}
	if dev.unbound || dev.version != 2 || dev.assigned == nil || dev.assigned.Counter != 17 {
		t.Fatalf("after Refresh: %+v", dev)
	}
}
