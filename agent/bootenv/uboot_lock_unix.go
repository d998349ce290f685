//go:build unix

package bootenv

import (
	"errors"
	"os"
	"syscall"
)

// lockEnv takes the exclusive flock libubootenv takes around every
// fw_printenv and fw_setenv, so that the agent and those tools never
// interleave a read-modify-write of the environment. Like libubootenv it is
// best effort: a missing or read-only lock directory must not stop a boot
// switch.
func lockEnv(path string) (unlock func()) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return func() {}
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return func() {}
	}
	return func() { f.Close() } // closing releases the lock
}
