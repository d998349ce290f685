package test

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fwctl/fwctl/internal/testenv"
)

// swtpmScript is scripts/swtpm.sh; tests run in the test/ directory.
var swtpmScript, _ = filepath.Abs(filepath.Join("..", "scripts", "swtpm.sh"))

// swtpm check: fail under FW_REQUIRE_REAL=1 when swtpm is missing (a
// script then skips with [!exec:swtpm] skip).
//
// swtpm start DIR VAR: start a private swtpm with scripts/swtpm.sh, state
// in DIR, and set $VAR to its address (tcp://127.0.0.1:PORT) for
// trust.device. It is stopped when the script ends.
func cmdSwtpm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 || (args[0] == "check") != (len(args) == 1) || (args[0] != "check" && (args[0] != "start" || len(args) != 3)) {
		ts.Fatalf("usage: swtpm check | swtpm start DIR VAR")
	}
	for _, p := range []string{"swtpm", "swtpm_ioctl"} {
		if _, err := exec.LookPath(p); err != nil && testenv.RequireReal() {
			ts.Fatalf("%s is required (FW_REQUIRE_REAL=1) but missing: apt-get install -y swtpm swtpm-tools", p)
		}
	}
	if args[0] == "check" {
		return
	}
	dir := ts.MkAbs(args[1])
	var last error
	for range 5 { // another test may take the ports between our check and swtpm's bind
		port, err := twoFreePorts()
		if err != nil {
			ts.Fatalf("%v", err)
		}
		out, err := exec.Command(swtpmScript, "start", dir, strconv.Itoa(port)).CombinedOutput()
		if err != nil {
			last = fmt.Errorf("%v: %s", err, out)
			continue
		}
		ts.Defer(func() {
			if out, err := exec.Command(swtpmScript, "stop", dir, strconv.Itoa(port)).CombinedOutput(); err != nil {
				ts.Logf("swtpm stop: %v: %s", err, out)
			}
		})
		ts.Setenv(args[2], "tcp://127.0.0.1:"+strconv.Itoa(port))
		return
	}
	ts.Fatalf("start swtpm: %v", last)
}

// twoFreePorts returns a port P such that P and P+1 are free right now
// (swtpm.sh puts the control channel on P+1).
func twoFreePorts() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no two consecutive free local ports for swtpm")
}
