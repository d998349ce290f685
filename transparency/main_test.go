package transparency

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
)

// rekor is the log the integration tests use: started with
// scripts/rekor.sh by the first test that needs it and stopped by TestMain,
// or given by REKOR_URL and REKOR_PUBKEY (a log started by CI, shared
// between packages).
var rekor struct {
	once    sync.Once
	stop    func()
	url     string
	pubPEM  []byte
	missing string // why there is no log, for testenv.Missing
	fresh   bool   // started by TestMain: empty at the start
}

func toolsDir() string {
	if d := os.Getenv("FW_TOOLS_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "fwctl-tools", "bin")
}

// needRekor returns the log's URL and PEM key, or skips (fails under
// FW_REQUIRE_REAL=1) when there is none.
func needRekor(t *testing.T) (string, []byte) {
	t.Helper()
	rekor.once.Do(func() {
		stop, err := startRekor()
		rekor.stop = stop
		if err != nil {
			rekor.missing = err.Error()
		}
	})
	if rekor.url == "" {
		testenv.Missing(t, "Rekor", rekor.missing)
	}
	return rekor.url, rekor.pubPEM
}

func TestMain(m *testing.M) {
	code := m.Run()
	if rekor.stop != nil {
		rekor.stop()
	}
	os.Exit(code)
}

func startRekor() (stop func(), err error) {
	stop = func() {}
	if u := os.Getenv("REKOR_URL"); u != "" {
		pub, err := os.ReadFile(os.Getenv("REKOR_PUBKEY"))
		if err != nil {
			return stop, fmt.Errorf("REKOR_URL is set but REKOR_PUBKEY is not readable: %w", err)
		}
		rekor.url, rekor.pubPEM = u, pub
		return stop, nil
	}
	hint := "run scripts/rekor.sh build (needs root, Go and Debian's mariadb-server and socat)"
	for _, b := range []string{"rekor-server", "trillian_log_server", "trillian_log_signer", "createtree"} {
		if _, err := os.Stat(filepath.Join(toolsDir(), b)); err != nil {
			return stop, fmt.Errorf("%s not built in %s: %s", b, toolsDir(), hint)
		}
	}
	if os.Geteuid() != 0 {
		return stop, fmt.Errorf("scripts/rekor.sh needs root for its network namespace")
	}
	dir, err := os.MkdirTemp("", "fwrekor-")
	if err != nil {
		return stop, err
	}
	script, _ := filepath.Abs("../scripts/rekor.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, script, args...)
		cmd.Env = append(os.Environ(), "FW_QUIET=1")
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("rekor.sh %s: %w: %s", args[0], err, ee.Stderr)
		}
		return string(out), err
	}
	stop = func() {
		if _, err := run(context.Background(), "stop", dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		os.RemoveAll(dir)
	}
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
	rekor.url, rekor.pubPEM, rekor.fresh = env["REKOR_URL"], pub, true
	return stop, nil
}
