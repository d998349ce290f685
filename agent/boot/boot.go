// Package boot owns the A/B boot decision kept in a bootloader environment:
// which slot is tried next and how many times, marking a slot good or bad,
// and finding out which slot is running now. It also contains the bootloader
// side of the same convention (Select) so simulators and tests can "reboot"
// a device exactly as the boot script in examples/boot would.
//
// The convention is RAUC's: BOOT_ORDER lists slots by preference and
// BOOT_<slot>_LEFT counts the boots left for each; the bootloader boots the
// first slot in BOOT_ORDER whose count is above zero and decrements it.
package boot

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/fwctl/fwctl/agent/bootenv"
)

// DefaultTries is how often a new slot is tried before falling back.
const DefaultTries = 3

// ErrAmbiguous means the running slot cannot be determined with certainty;
// the agent then refuses to write any slot.
var ErrAmbiguous = errors.New("cannot tell which slot is running")

// ErrNoBootable means no slot has boot attempts left.
var ErrNoBootable = errors.New("no bootable slot")

// Scheme is a boot-counting convention: how the agent asks the bootloader
// to try a slot, confirms or rejects it, and how the bootloader (Select)
// picks the slot to boot. Implementations: Switch (RAUC's BOOT_ORDER /
// BOOT_x_LEFT) and BootCount (U-Boot's bootcount / bootlimit /
// upgrade_available).
type Scheme interface {
	// Init sets up a blank environment to boot active; it reports whether
	// it wrote anything.
	Init(active string) (bool, error)
	// Disable makes slot unbootable before it is overwritten.
	Disable(slot string) error
	// Try makes slot the next boot, with a limited number of attempts.
	Try(slot string) error
	// MarkGood makes slot the permanent choice.
	MarkGood(slot string) error
	// MarkBad stops the bootloader from choosing slot.
	MarkBad(slot string) error
	// Primary returns the slot the bootloader will boot next.
	Primary() (string, int, error)
	// Tried reports whether the bootloader was asked to try slot (Try,
	// MarkGood) since Disable took it out: false means a switch that
	// never became durable, which is no fallback.
	Tried(slot string) (bool, error)
	// Select is the bootloader's side: choose and count a boot.
	Select() (string, error)
}

// Switch manipulates BOOT_ORDER/BOOT_x_LEFT in an environment.
type Switch struct {
	Env   bootenv.Env
	Slots []string // e.g. ["A", "B"]
	Tries int
}

func (s *Switch) tries() int {
	if s.Tries > 0 {
		return s.Tries
	}
	return DefaultTries
}

func left(vars map[string]string, slot string) int {
	n, err := strconv.Atoi(vars["BOOT_"+slot+"_LEFT"])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func (s *Switch) order(vars map[string]string) []string {
	var out []string
	for _, f := range strings.Fields(vars["BOOT_ORDER"]) {
		if slices.Contains(s.Slots, f) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func (s *Switch) update(fn func(vars map[string]string)) error {
	vars, err := s.Env.Load()
	if err != nil {
		return err
	}
	fn(vars)
	return s.Env.Save(vars)
}

// first puts slot at the front of BOOT_ORDER, keeping the others that are
// in it. Slots taken out (disabled) stay out until they are tried again.
func (s *Switch) first(vars map[string]string, slot string) {
	order := []string{slot}
	for _, o := range s.order(vars) {
		if !slices.Contains(order, o) {
			order = append(order, o)
		}
	}
	vars["BOOT_ORDER"] = strings.Join(order, " ")
}

// remove takes slot out of BOOT_ORDER.
func (s *Switch) remove(vars map[string]string, slot string) {
	var order []string
	for _, o := range s.order(vars) {
		if o != slot {
			order = append(order, o)
		}
	}
	vars["BOOT_ORDER"] = strings.Join(order, " ")
}

// Init writes a fresh environment that boots slot active, if the
// environment has no BOOT_ORDER yet. It reports whether it wrote anything.
func (s *Switch) Init(active string) (bool, error) {
	vars, err := s.Env.Load()
	if err != nil {
		return false, err
	}
	if _, ok := vars["BOOT_ORDER"]; ok {
		return false, nil
	}
	order := []string{active}
	for _, sl := range s.Slots {
		vars["BOOT_"+sl+"_LEFT"] = "0"
		if sl != active {
			order = append(order, sl)
		}
	}
	vars["BOOT_ORDER"] = strings.Join(order, " ")
	vars["BOOT_"+active+"_LEFT"] = strconv.Itoa(s.tries())
	return true, s.Env.Save(vars)
}

// Disable makes slot unbootable, before its contents are overwritten: no
// attempts left, and out of BOOT_ORDER so that the bootloader's last-resort
// refill (every slot in BOOT_ORDER out of attempts) never revives it.
func (s *Switch) Disable(slot string) error {
	return s.update(func(v map[string]string) {
		v["BOOT_"+slot+"_LEFT"] = "0"
		s.remove(v, slot)
	})
}

// Try makes slot the first choice with a limited number of attempts; if it
// never confirms, the bootloader falls back to the next slot in order.
func (s *Switch) Try(slot string) error {
	return s.update(func(v map[string]string) {
		s.first(v, slot)
		v["BOOT_"+slot+"_LEFT"] = strconv.Itoa(s.tries())
	})
}

// MarkGood makes slot the first choice and refills its attempts.
func (s *Switch) MarkGood(slot string) error { return s.Try(slot) }

// MarkBad stops the bootloader from choosing slot.
func (s *Switch) MarkBad(slot string) error { return s.Disable(slot) }

// Tried implements Scheme: Disable takes the slot out of BOOT_ORDER, Try
// puts it back, and the bootloader never removes it. (MarkBad takes it out
// too: a cut between the agent's MarkBad of an unhealthy slot and its state
// save gives that release one more trial, never a loop.)
func (s *Switch) Tried(slot string) (bool, error) {
	vars, err := s.Env.Load()
	if err != nil {
		return false, err
	}
	return slices.Contains(s.order(vars), slot), nil
}

// Primary returns the slot the bootloader will boot next, and its attempts.
func (s *Switch) Primary() (string, int, error) {
	vars, err := s.Env.Load()
	if err != nil {
		return "", 0, err
	}
	for _, sl := range s.order(vars) {
		if n := left(vars, sl); n > 0 {
			return sl, n, nil
		}
	}
	return "", 0, ErrNoBootable
}

// Select is the bootloader's side: it picks the slot to boot and decrements
// its attempts, exactly like examples/boot's scripts. With no attempts left
// for any slot in BOOT_ORDER it refills those (never a slot taken out of the
// order) and boots the first, rather than leaving the device dead.
func (s *Switch) Select() (string, error) {
	var chosen string
	err := s.update(func(v map[string]string) {
		order := s.order(v)
		if len(order) == 0 {
			order = s.Slots
		}
		for _, sl := range order {
			if n := left(v, sl); n > 0 {
				v["BOOT_"+sl+"_LEFT"] = strconv.Itoa(n - 1)
				chosen = sl
				return
			}
		}
		for _, sl := range order {
			v["BOOT_"+sl+"_LEFT"] = strconv.Itoa(s.tries())
		}
		chosen = order[0]
		v["BOOT_"+chosen+"_LEFT"] = strconv.Itoa(s.tries() - 1)
	})
	return chosen, err
}

// BootedSlot reads the running slot from a kernel command line file
// (normally /proc/cmdline) parameter such as fwctl.slot=A. It fails with
// ErrAmbiguous when the parameter is missing, repeated with different
// values, or names an unknown slot.
func BootedSlot(cmdlineFile, param string, slots []string) (string, error) {
	b, err := os.ReadFile(cmdlineFile)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrAmbiguous, err)
	}
	found := ""
	for _, f := range strings.Fields(string(b)) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != param {
			continue
		}
		if found != "" && found != v {
			return "", fmt.Errorf("%w: %s names both %s and %s", ErrAmbiguous, param, found, v)
		}
		found = v
	}
	if found == "" {
		return "", fmt.Errorf("%w: no %s= on the kernel command line (%s); configure the bootloader to pass it", ErrAmbiguous, param, cmdlineFile)
	}
	if !slices.Contains(slots, found) {
		return "", fmt.Errorf("%w: %s=%s is not a configured slot %v", ErrAmbiguous, param, found, slots)
	}
	return found, nil
}

// BootedSlotFromEnv reads the running slot from an environment variable the
// boot script sets (and saves) before it boots. A missing variable or an
// unknown slot name is ErrAmbiguous.
func BootedSlotFromEnv(vars map[string]string, variable string, slots []string) (string, error) {
	v, ok := vars[variable]
	if !ok || v == "" {
		return "", fmt.Errorf("%w: the boot environment has no %s; make the boot script set and save it, or use the kernel command line", ErrAmbiguous, variable)
	}
	if !slices.Contains(slots, v) {
		return "", fmt.Errorf("%w: %s=%s is not a configured slot %v", ErrAmbiguous, variable, v, slots)
	}
	return v, nil
}
