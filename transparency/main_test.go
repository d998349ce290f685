package transparency

import (
	"os"
	"testing"

	"github.com/fwctl/fwctl/transparency/rekortest"
)

// The integration tests use the real log of package rekortest: started with
// scripts/rekor.sh by the first test that needs it and stopped here, or given
// by REKOR_URL and REKOR_PUBKEY (a log started by CI, shared by packages).

func TestMain(m *testing.M) {
	code := m.Run()
	rekortest.Stop()
	os.Exit(code)
}

// needRekor returns the log's URL and PEM key, or skips (fails under
// FW_REQUIRE_REAL=1) when there is none.
func needRekor(t *testing.T) (string, []byte) { return rekortest.Need(t) }

func toolsDir() string { return rekortest.ToolsDir() }
