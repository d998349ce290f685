// Package rekortest gives tests a real Rekor v1 log: one per test binary,
// started lazily with scripts/rekor.sh and stopped by Stop (call it from
// TestMain), or the log named by REKOR_URL and REKOR_PUBKEY. Without the
// binaries (scripts/rekor.sh build) or root, tests skip — or fail under
// FW_REQUIRE_REAL=1.
package rekortest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
)

var log struct {
	once    sync.Once
	stop    func()
	url     string
	pubPEM  []byte
	missing string
	fresh   bool // started here, so it began empty
}

// Fresh reports whether the log was started by this test binary (and so
// held no entries before its tests ran), rather than given by REKOR_URL.
func Fresh() bool { return log.fresh }

// ToolsDir is where scripts/rekor.sh and scripts/cosign.sh put binaries.
func ToolsDir() string {
	if d := os.Getenv("FW_TOOLS_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "fwctl-tools", "bin")
}

// Need returns the log's URL and PEM public key, starting it on first use.
func Need(t testing.TB) (url string, pubPEM []byte) {
	t.Helper()
	log.once.Do(func() {
		stop, err := start()
		log.stop = stop
		if err != nil {
			log.missing = err.Error()
		}
	})
	if log.url == "" {
		testenv.Missing(t, "Rekor", log.missing)
	}
	return log.url, log.pubPEM
}

// Stop stops a log Need started.
func Stop() {
	if log.stop != nil {
		log.stop()
	}
}

func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "rekor.sh")
}

func start() (stop func(), err error) {
	stop = func() {}
	if u := os.Getenv("REKOR_URL"); u != "" {
		pub, err := os.ReadFile(os.Getenv("REKOR_PUBKEY"))
		if err != nil {
			return stop, fmt.Errorf("REKOR_URL is set but REKOR_PUBKEY is not readable: %w", err)
		}
		log.url, log.pubPEM = u, pub
		return stop, nil
	}
	for _, b := range []string{"rekor-server", "trillian_log_server", "trillian_log_signer", "createtree"} {
		if _, err := os.Stat(filepath.Join(ToolsDir(), b)); err != nil {
			return stop, fmt.Errorf("%s not built in %s: run scripts/rekor.sh build", b, ToolsDir())
		}
	}
	if os.Geteuid() != 0 {
		return stop, fmt.Errorf("scripts/rekor.sh needs root for its private network namespace")
	}
	dir, err := os.MkdirTemp("", "fwrekor-")
	if err != nil {
		return stop, err
	}
	run := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, script(), args...)
		cmd.Env = append(os.Environ(), "FW_QUIET=1")
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("rekor.sh %s: %w: %s", args[0], err, ee.Stderr)
		}
		return string(out), err
	}
	stop = func() {
		if _, err := run(context.Background(), "stop", dir); err == nil {
			os.RemoveAll(dir)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := run(ctx, "start", dir); err != nil {
		return stop, err
	}
	out, err := run(ctx, "env", dir)
	if err != nil {
		return stop, err
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	pub, err := os.ReadFile(env["REKOR_PUBKEY"])
	if err != nil {
		return stop, fmt.Errorf("rekor.sh env: %w", err)
	}
	log.url, log.pubPEM, log.fresh = env["REKOR_URL"], pub, true
	return stop, nil
}
