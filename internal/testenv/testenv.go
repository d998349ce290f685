// Package testenv decides what a test does when a real component it needs
// (swtpm, SoftHSM2, Rekor, fw_printenv, qemu-user, ...) is missing: skip with
// a clear message on a laptop, fail when FW_REQUIRE_REAL=1 (as in CI).
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireReal reports whether missing real components must fail tests.
func RequireReal() bool { return os.Getenv("FW_REQUIRE_REAL") == "1" }

// Missing skips t, or fails it under FW_REQUIRE_REAL=1, explaining what is
// missing and how to get it.
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if RequireReal() {
		t.Fatalf("%s is required (FW_REQUIRE_REAL=1) but missing: %s", what, hint)
	}
	t.Skipf("skipping: %s is missing (%s); set FW_REQUIRE_REAL=1 to make this a failure", what, hint)
}

// LookPath returns the path of the named program, or calls Missing.
func LookPath(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, hint)
	}
	return p
}
