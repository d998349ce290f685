package verify_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/test/harness"
)

// initWorkspace creates a workspace with unencrypted keys (opt's other
// fields as given) in a temporary directory, and opens it.
func initWorkspace(t testing.TB, opt repo.InitOptions) *repo.Workspace {
	t.Helper()
	return harness.InitWorkspace(t, filepath.Join(t.TempDir(), "ws"), opt)
}

// mustRoot reads the workspace's first root, the one devices trust.
func mustRoot(t *testing.T, ws string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ws, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
