package director

import (
	"bytes"
	"crypto/ed25519"
	"flag"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/signer"
)

var update = flag.Bool("update", false, "rewrite the golden director metadata")

// TestGoldenDeviceMetadata pins the director's per-device metadata, wire
// format v1 (docs/director.md): with a fixed Ed25519 key (deterministic
// signatures) and clock, one assignment signs to exactly the bytes in
// testdata/device-v1/. Regenerate with -update only for a deliberate
// format change, which also bumps manifests.DirectorSchema.
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
	j := &job{id: a.DeviceID, a: &a, custom: c, dev: &device{}}
	if err := d.sign(j, time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "device-v1")
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
	if got := j.names[len(j.names)-1]; got != "director/devices/3f9a0c/metadata/timestamp.json" {
		t.Errorf("timestamp is not written last: %v", j.names)
	}
}
