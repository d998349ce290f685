package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// TUFJS returns node and the path of tools/tufjs/client.mjs, an
// independent TUF client (tuf-js, installed by scripts/deps.sh with
// npm ci in tools/tufjs), or calls Missing.
func TUFJS(t testing.TB) (node, client string) {
	t.Helper()
	node = LookPath(t, "node", "apt-get install nodejs npm (scripts/deps.sh)")
	client, err := repoFile("tools", "tufjs", "client.mjs")
	if err == nil {
		_, err = os.Stat(filepath.Join(filepath.Dir(client), "node_modules", "tuf-js", "package.json"))
	}
	if err != nil {
		Missing(t, "tuf-js", "run scripts/deps.sh (npm ci in tools/tufjs)")
	}
	return node, client
}
