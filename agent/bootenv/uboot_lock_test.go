//go:build unix

package bootenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestUBootWaitsForLock checks that Save waits while another process (here:
// this test, as fw_setenv would) holds the libubootenv lock.
func TestUBootWaitsForLock(t *testing.T) {
	cfgPath := writeConfig(t, "env 0 0x400\nenv 0x400 0x400\n")
	b, _ := os.ReadFile(cfgPath)
	cfg, err := ParseFwEnvConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LockFile = filepath.Join(t.TempDir(), "fw_printenv.lock")
	u := NewUBoot(cfg)

	f, err := os.OpenFile(cfg.LockFile, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- u.Save(map[string]string{"a": "1"}) }()
	select {
	case err := <-done:
		t.Fatalf("Save finished while the lock was held (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	f.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Save still waiting after the lock was released")
	}
	assertVars(t, mustLoad(t, u), map[string]string{"a": "1"})
}
