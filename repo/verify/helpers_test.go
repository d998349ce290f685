package verify_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/repo"
)

// initWorkspace creates a workspace with unencrypted keys (opt's other
// fields as given) in a temporary directory, and opens it.
func initWorkspace(t testing.TB, opt repo.InitOptions) *repo.Workspace {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ws")
	opt.InsecurePlaintext = true
	if _, err := repo.Init(dir, opt); err != nil {
		t.Fatal(err)
	}
	ws, err := repo.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ws
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
