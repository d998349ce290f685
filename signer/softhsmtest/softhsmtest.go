// Package softhsmtest creates throwaway SoftHSM2 tokens for tests. It never
// touches a token it did not create: each token lives under the test's
// temporary directory with its own SOFTHSM2_CONF.
package softhsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/signer"
)

// Module is SoftHSM2's PKCS#11 library on Debian.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN and SOPIN are the PINs of every test token.
const (
	PIN   = "1234"
	SOPIN = "5678"
)

var (
	once    sync.Once
	conf    string
	confErr error
)

// Token initialises a new token labelled label and returns a key URI
// prefix for it ("pkcs11:token=LABEL"); append ";object=NAME". All tokens of
// a test process share one SOFTHSM2_CONF under a temporary directory,
// because SoftHSM reads its configuration once, when the module is first
// initialised. It skips (or, under FW_REQUIRE_REAL=1, fails) the test when
// SoftHSM2 or cgo is missing. $FWCTL_PKCS11_PIN is set to PIN.
func Token(t testing.TB, label string) string {
	t.Helper()
	if !signer.PKCS11Available {
		testenv.Missing(t, "cgo (PKCS#11 support)", "build with CGO_ENABLED=1")
	}
	testenv.LookPath(t, "softhsm2-util", "apt-get install -y softhsm2")
	if _, err := os.Stat(Module); err != nil {
		testenv.Missing(t, Module, "apt-get install -y softhsm2")
	}
	once.Do(func() { conf, confErr = newConfig() })
	if confErr != nil {
		t.Fatal(confErr)
	}
	os.Setenv(signer.PINEnv, PIN)
	os.Setenv(signer.ModuleEnv, Module)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return "pkcs11:token=" + label
}

// Conf returns the SOFTHSM2_CONF that Token uses ("" before the first
// token), for tests that run fwctl as a separate process.
func Conf() string { return conf }

func newConfig() (string, error) {
	dir, err := os.MkdirTemp("", "fwctl-softhsm-")
	if err != nil {
		return "", err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	c := filepath.Join(dir, "softhsm2.conf")
	body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\n"
	if err := os.WriteFile(c, []byte(body), 0o600); err != nil {
		return "", err
	}
	// Set before the module is initialised in this process.
	os.Setenv("SOFTHSM2_CONF", c)
	return c, nil
}
