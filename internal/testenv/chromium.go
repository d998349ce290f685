package testenv

import (
	"os/exec"
	"testing"
)

// Chromium returns the path of a headless-capable Chromium (Debian's
// chromium), or calls Missing.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Missing(t, "Chromium", "apt-get install chromium (scripts/deps.sh)")
	return ""
}
