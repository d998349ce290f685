package test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fwctl/fwctl/internal/fwagentcli"
	"github.com/fwctl/fwctl/internal/fwctlcli"
	"github.com/fwctl/fwctl/internal/fwrepocli"
	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/transparency/rekortest"
)

func TestMain(m *testing.M) {
	testscript.Main(stopRekor{m}, map[string]func(){
		"fwctl":   func() { os.Exit(fwctlcli.Main()) },
		"fwrepo":  func() { os.Exit(fwrepocli.Main()) },
		"fwagent": func() { os.Exit(fwagentcli.Main()) },
	})
}

// stopRekor runs the tests, then stops the one Rekor log they share
// (rekortest starts it on first use). A test must not stop it itself: the
// tests after it would get the URL of a stopped log.
type stopRekor struct{ m *testing.M }

func (s stopRekor) Run() int {
	defer rekortest.Stop()
	return s.m.Run()
}

// setupScript gives a script a free $PORT for fwrepo, $PORT2 for a
// second server (fwrepo mirror), and CI=1 (no progress bars).
func setupScript(env *testscript.Env) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	env.Setenv("PORT", strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	defer l.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0") // while l holds $PORT
	if err != nil {
		return err
	}
	env.Setenv("PORT2", strconv.Itoa(l2.Addr().(*net.TCPAddr).Port))
	l2.Close()
	env.Setenv("CI", "1")
	return nil
}

// TestScripts runs the CLI flows in testdata/*.txtar across the three
// programs, as a user would type them.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata",
		Setup: setupScript,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitport": cmdWaitPort,
			"subst":    cmdSubst,
			"mkimage":  cmdMkImage,
			"exitcode": cmdExitCode,
			"missing":  cmdMissing,
			"swtpm":    cmdSwtpm,
			"postgres": cmdPostgres,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "postgres" {
				return testenv.HavePostgres(), nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// missing WHAT: a real component is missing; under FW_REQUIRE_REAL=1 (CI)
// that fails the script, otherwise the next line should skip it.
func cmdMissing(ts *testscript.TestScript, neg bool, args []string) {
	if testenv.RequireReal() {
		ts.Fatalf("%s is required (FW_REQUIRE_REAL=1) but missing", strings.Join(args, " "))
	}
}

// waitport PORT: wait until 127.0.0.1:PORT accepts connections.
func cmdWaitPort(ts *testscript.TestScript, neg bool, args []string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", "127.0.0.1:"+args[0])
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("nothing listens on port %s", args[0])
}

// subst FILE...: expand $VARS in files.
func cmdSubst(ts *testscript.TestScript, neg bool, args []string) {
	for _, f := range args {
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(os.Expand(ts.ReadFile(f), ts.Getenv)), 0o644))
	}
}

// mkimage FILE SIZE SEED: write a deterministic pseudo-random image.
func cmdMkImage(ts *testscript.TestScript, neg bool, args []string) {
	size, _ := strconv.Atoi(args[1])
	seed, _ := strconv.ParseUint(args[2], 10, 64)
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
}

// exitcode N PROG ARGS...: run PROG and require exit code N.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	want, _ := strconv.Atoi(args[0])
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "FWCTL_PASSPHRASE", "FWAGENT_CONFIG", "CI",
		"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	out, _ := cmd.CombinedOutput()
	got := cmd.ProcessState.ExitCode()
	ts.Logf("%s", out)
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
	fmt.Fprint(ts.Stdout(), string(out))
}
