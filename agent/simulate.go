package agent

import (
	"errors"
	"fmt"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// ErrNotSimulator means SimulateBoot was asked to act as the bootloader of a
// device whose booted slot comes from the real /proc/cmdline.
var ErrNotSimulator = errors.New("simulating a boot needs booted_slot.cmdline set to a file of the simulator, not /proc/cmdline")

// SimulateBoot is the bootloader's side of the A/B convention, for
// simulators and tests with file slots: it chooses the slot to boot on the
// configured environment (counting the attempt, as the boot script does),
// writes param=SLOT to the configured kernel command line file and, when the
// booted slot is read from the environment, records it there as the boot
// script would before booting. It is the one simulated boot: 'fwagent
// simulate-boot' and the test harnesses all use it.
func (a *Agent) SimulateBoot() (string, error) {
	bs := a.cfg.BootedSlot
	if bs.Cmdline == "/proc/cmdline" {
		return "", ErrNotSimulator
	}
	slot, err := a.sw.Select()
	if err != nil {
		return "", fmt.Errorf("bootloader: %w", err)
	}
	line := fmt.Sprintf("console=ttyS0 %s=%s\n", bs.Param, slot)
	if err := atomicfile.Write(bs.Cmdline, []byte(line), 0o644); err != nil {
		return "", err
	}
	if bs.Source != "cmdline" && bs.Source != "" {
		vars, err := a.env.Load()
		if err != nil {
			return "", err
		}
		vars[bs.Variable] = slot
		if err := a.env.Save(vars); err != nil {
			return "", err
		}
	}
	return slot, nil
}
