//go:build unix

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrBusy means another fwagent process holds the device's lock (an
// update or confirm in progress) and ctx ended before it let go.
var ErrBusy = errors.New("another fwagent is updating this device")

// lockFile is the file in the state directory that update and confirm
// flock: two of them at once (the daemon and an offline stick's service,
// or two operators) would write the same inactive slot and boot
// environment, and one could switch to a slot the other is still writing.
const lockFile = "lock"

// lock takes the device's exclusive lock, waiting while another process
// holds it, until ctx ends (ErrBusy). Without a state directory there is
// nothing to protect yet and the caller's own checks say why.
func (a *Agent) lock(ctx context.Context) (unlock func(), err error) {
	name := filepath.Join(a.cfg.StateDir, lockFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the device lock %s: %w", name, err)
	}
	for logged := false; ; logged = true {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if !logged {
			a.log.Info("waiting for another fwagent to finish with this device", "lock", name)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w (%s is locked): %w; wait for it to finish, or stop the fwagent daemon first", ErrBusy, name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
