package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/verify"
)

// TestBound: fwctl bundle --device refuses director targets the device
// would refuse: format 1 (no binding) and targets bound to another device;
// the golden format 2 targets of device 3f9a0c pass for that device.
func TestBound(t *testing.T) {
	golden := filepath.Join("..", "online", "director", "testdata")
	src := func(dir, id string) directorSource {
		b, err := os.ReadFile(filepath.Join(golden, dir, "1.targets.json"))
		if err != nil {
			t.Fatal(err)
		}
		return directorSource{verify.WithFiles(verify.DirSource(t.TempDir()),
			map[string][]byte{manifests.DirectorDevice(id) + "/1.targets.json": b}), id}
	}
	ctx := context.Background()
	if err := bound(ctx, src("device-v2", "3f9a0c"), 1, "3f9a0c"); err != nil {
		t.Fatalf("format 2 targets of the device: %v", err)
	}
	for name, err := range map[string]error{
		"format 1":       bound(ctx, src("device-v1", "3f9a0c"), 1, "3f9a0c"),
		"another device": bound(ctx, src("device-v2-empty", "3f9a0c"), 1, "3f9a0c"),
	} {
		if !errors.Is(err, ErrNotAssigned) || !strings.Contains(err.Error(), "refused by the device") {
			t.Errorf("%s: %v, want ErrNotAssigned", name, err)
		}
	}
}
