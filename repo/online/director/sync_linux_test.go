package director

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// TestPublishedFilesMode: the published files are 0644 (served by any
// user's web server, mirrored, bundled) whatever the umask, as they were
// when each was chmodded: write creates them with plain system calls and
// chmods only when the umask would narrow 0644.
func TestPublishedFilesMode(t *testing.T) {
	for _, mask := range []int{0o022, 0o077} {
		old := syscall.Umask(mask)
		d, st, _ := newDirector(t, nil)
		err := d.Assign(context.Background(), []Assignment{assignment("dev-1")})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(string(st), filepath.FromSlash(manifests.DirectorDevice("dev-1")))
		for _, f := range []string{"timestamp.json", "1.snapshot.json", "1.targets.json"} {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("umask %#o: %s is %v, want 0644", mask, f, fi.Mode().Perm())
			}
		}
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
