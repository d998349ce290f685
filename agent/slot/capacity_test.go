package slot

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCapacity: a file slot can hold its own size plus its filesystem's
// free space (also before it exists); a character device is unknown (-1).
// Block devices are measured in test/failures_test.go on a loop device.
func TestCapacity(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	missing := Slot{Name: "A", Path: filepath.Join(dir, "a.img")}
	n, err := missing.Capacity()
	// Other processes write the same filesystem: allow 64 MiB of drift.
	if err != nil || n < free-64<<20 || n > free+64<<20 {
		t.Fatalf("capacity of a missing file slot %d, %v; free space %d", n, err, free)
	}
	os.WriteFile(missing.Path, make([]byte, 1<<20), 0o644)
	if n2, err := missing.Capacity(); err != nil || n2 < n-64<<20+1<<20 {
		t.Fatalf("capacity of a 1 MiB file slot %d, %v; want its size plus free space (~%d)", n2, err, n)
	}
	if n, err := (Slot{Name: "A", Path: "/dev/full"}).Capacity(); err != nil || n != -1 {
		t.Fatalf("capacity of /dev/full = %d, %v; want -1 (unknown)", n, err)
	}
}
