package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var programs struct {
	once sync.Once
	dir  string
	err  error
}

// buildPrograms builds fwctl, fwrepo and fwagent as a user's `make build`
// does (real binaries, not the test binary testscript re-runs) and returns
// their directory. They are built once per test process, into
// $TMPDIR/fwctl-itest-PID; directories left by earlier processes that are
// gone are removed then.
func buildPrograms(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the three programs; skipped with -short")
	}
	programs.once.Do(func() {
		removeStaleBuilds()
		programs.dir = filepath.Join(os.TempDir(), fmt.Sprintf("fwctl-itest-%d", os.Getpid()))
		if programs.err = os.MkdirAll(programs.dir, 0o755); programs.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", programs.dir+string(filepath.Separator),
			"../cmd/fwctl", "../cmd/fwrepo", "../cmd/fwagent")
		if out, err := cmd.CombinedOutput(); err != nil {
			programs.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if programs.err != nil {
		t.Fatal(programs.err)
	}
	return programs.dir
}

func removeStaleBuilds() {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "fwctl-itest-*"))
	for _, d := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "fwctl-itest-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}
