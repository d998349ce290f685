package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// buildPrograms builds fwctl, fwrepo and fwagent as a user's `make build`
// does (real binaries, not the test binary testscript re-runs) into a
// temporary directory and returns it. The go build cache makes every call
// after the first a link only.
func buildPrograms(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the three programs; skipped with -short")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"../cmd/fwctl", "../cmd/fwrepo", "../cmd/fwagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}
