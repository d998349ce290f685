// Package tpmtest runs a private swtpm for tests: one per test, on a free
// local TCP port with a private control socket, and its own state directory
// that is removed when the test ends. It skips the test when swtpm is not
// installed, or fails it under FW_REQUIRE_REAL=1 (see internal/testenv). It
// is for tests only and never used by the agent.
//
// The state lives in /dev/shm when that exists, else under t.TempDir():
// swtpm syncs its state file on every NV write, which makes a counter
// increment about 1.5 ms on disk and 0.2 ms in memory.
package tpmtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
)

const hint = "apt-get install -y swtpm swtpm-tools"

// Sim is a running (or stopped) swtpm with its own state directory.
type Sim struct {
	t      testing.TB
	swtpm  string
	ioctl  string
	dir    string
	port   int    // TPM command port
	ctrl   string // swtpm's control socket
	socks  string // directory for control sockets, short enough for Unix paths
	starts int
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	mu     sync.Mutex
}

// Start starts a fresh swtpm for t and stops it when t ends.
func Start(t testing.TB) *Sim {
	t.Helper()
	s := &Sim{
		t:     t,
		swtpm: testenv.LookPath(t, "swtpm", hint),
		ioctl: testenv.LookPath(t, "swtpm_ioctl", hint),
		dir:   stateDir(t),
		socks: tempDir(t, "fwctl-swtpm-ctrl-"),
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the address for tpm.Open: tcp://127.0.0.1:PORT.
func (s *Sim) Addr() string { return "tcp://127.0.0.1:" + strconv.Itoa(s.port) }

// Dir is the swtpm state directory.
func (s *Sim) Dir() string { return s.dir }

// Restart stops swtpm gracefully (if it is running) and starts it again on
// the same state, as a device reboot would. The address may change: call
// Addr again.
func (s *Sim) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Stop shuts swtpm down gracefully (swtpm_ioctl -s), killing it if it does
// not exit within 5 s. Its state stays in Dir. Stopping twice is a no-op.
func (s *Sim) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if out, err := exec.Command(s.ioctl, "--unix", s.ctrl, "-s").CombinedOutput(); err != nil {
		s.t.Logf("swtpm_ioctl -s: %v: %s (killing swtpm)", err, out)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Kill stops swtpm with SIGKILL, as a power cut would; its state stays in
// Dir. Start it again with Restart.
func (s *Sim) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *Sim) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var last error
	// Another test may take the port between our check and swtpm's bind;
	// swtpm then exits and we try another.
	for range 5 {
		if last = s.run(); last == nil {
			return
		}
	}
	s.t.Fatalf("start swtpm: %v", last)
}

// run starts swtpm with its TPM port on TCP and its control channel on a
// Unix socket of its own, so that readiness checks and shutdown can never
// reach another test's swtpm.
func (s *Sim) run() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("swtpm state dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.starts++
	ctrl := filepath.Join(s.socks, "ctrl"+strconv.Itoa(s.starts))
	p := strconv.Itoa(port)
	cmd := exec.Command(s.swtpm, "socket", "--tpm2",
		"--server", "type=tcp,port="+p+",bindaddr=127.0.0.1",
		"--ctrl", "type=unixio,path="+ctrl,
		"--tpmstate", "dir="+s.dir,
		"--flags", "not-need-init,startup-clear")
	stderr := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run swtpm: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-done:
			return fmt.Errorf("swtpm exited early: %s", stderr.Bytes())
		default:
		}
		if exec.Command(s.ioctl, "--unix", ctrl, "-c").Run() == nil && dialable("127.0.0.1:"+p) {
			select {
			case <-done: // the port answered, but not for our swtpm
				return fmt.Errorf("swtpm exited early: %s", stderr.Bytes())
			default:
			}
			s.cmd, s.port, s.ctrl, s.stderr, s.done = cmd, port, ctrl, stderr, done
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("swtpm not ready after 10s: %s", stderr.Bytes())
}

// stateDir returns an empty directory for swtpm's state that is removed
// when t ends (after swtpm is stopped: cleanups run last-in first-out).
func stateDir(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "fwctl-swtpm-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return filepath.Join(t.TempDir(), "tpmstate")
}

// tempDir returns a new directory with a short path under os.TempDir(),
// removed when t ends. t.TempDir() paths can exceed the 108 bytes a Unix
// socket path may have.
func tempDir(t testing.TB, prefix string) string {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("swtpm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// freePort returns a local TCP port that is free right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for swtpm: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
