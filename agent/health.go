package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrUnhealthy means a health check failed after an update, so the new
// slot was marked bad and the device falls back on the next boot.
var ErrUnhealthy = errors.New("health check failed")

// ErrHook means a pre- or post-install hook failed and the install was
// abandoned before anything became bootable.
var ErrHook = errors.New("install hook failed")

// Check is a health check: a command that must exit 0 within Timeout.
type Check struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Timeout Duration `json:"timeout,omitempty"` // default 30s
}

// Hooks are commands run around an install. They get FWAGENT_SLOT,
// FWAGENT_SLOT_PATH, FWAGENT_TARGET and FWAGENT_VERSION in the environment.
type Hooks struct {
	// PreInstall runs before the inactive slot is touched; failing aborts.
	PreInstall []string `json:"pre_install,omitempty"`
	// PostInstall runs after the slot is written and verified, before the
	// bootloader is switched; failing aborts the switch.
	PostInstall []string `json:"post_install,omitempty"`
	// Timeout bounds each hook (default 5m).
	Timeout Duration `json:"timeout,omitempty"`
}

// run executes argv with a timeout and extra environment, returning its
// combined output in the error when it fails.
func run(ctx context.Context, argv []string, timeout time.Duration, env []string) error {
	if len(argv) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s: timed out after %s", strings.Join(argv, " "), timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
	}
	return nil
}

// healthy runs every configured health check.
func (a *Agent) healthy(ctx context.Context) error {
	for _, c := range a.cfg.HealthChecks {
		t := time.Duration(c.Timeout)
		if t <= 0 {
			t = 30 * time.Second
		}
		if err := run(ctx, c.Command, t, nil); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnhealthy, c.Name, err)
		}
		a.log.Info("health check passed", "check", c.Name)
	}
	return nil
}

func (a *Agent) hook(ctx context.Context, which string, argv []string, rel *Release, slotName string) error {
	if len(argv) == 0 {
		return nil
	}
	t := time.Duration(a.cfg.Hooks.Timeout)
	if t <= 0 {
		t = 5 * time.Minute
	}
	env := []string{"FWAGENT_SLOT=" + slotName, "FWAGENT_SLOT_PATH=" + a.cfg.Slots[slotName],
		"FWAGENT_TARGET=" + rel.Target, "FWAGENT_VERSION=" + rel.Version}
	if err := run(ctx, argv, t, env); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrHook, which, err)
	}
	return nil
}
