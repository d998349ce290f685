// Package tpmtest runs a private swtpm for tests: one per test, on free
// local ports, with its own state directory that is removed when the test
// ends. It skips the test when swtpm is not installed, or fails it under
// FW_REQUIRE_REAL=1 (see internal/testenv). It is for tests only and never
// used by the agent.
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
	port   int // command port; control is port+1
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
	ctrl := "127.0.0.1:" + strconv.Itoa(s.port+1)
	if out, err := exec.Command(s.ioctl, "--tcp", ctrl, "-s").CombinedOutput(); err != nil {
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
	// Another test may grab the ports between our check and swtpm's bind:
	// try a few pairs.
	for range 5 {
		port, err := freePortPair()
		if err != nil {
			last = err
			continue
		}
		if last = s.run(port); last == nil {
			return
		}
	}
	s.t.Fatalf("start swtpm: %v", last)
}

func (s *Sim) run(port int) error {
	p := strconv.Itoa(port)
	c := strconv.Itoa(port + 1)
	cmd := exec.Command(s.swtpm, "socket", "--tpm2",
		"--server", "type=tcp,port="+p+",bindaddr=127.0.0.1",
		"--ctrl", "type=tcp,port="+c+",bindaddr=127.0.0.1",
		"--tpmstate", "dir="+s.dir,
		"--flags", "not-need-init,startup-clear")
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("swtpm state dir: %w", err)
	}
	stderr := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run swtpm: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("swtpm exited early: %s", stderr.Bytes())
		default:
		}
		if dialable("127.0.0.1:"+p) && dialable("127.0.0.1:"+c) {
			s.cmd, s.port, s.stderr, s.done = cmd, port, stderr, done
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

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// freePortPair finds a port P such that P and P+1 are both free right now.
func freePortPair() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free pair of adjacent local ports")
}
