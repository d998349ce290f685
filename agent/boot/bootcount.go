package boot

import (
	"strconv"

	"github.com/fwctl/fwctl/agent/bootenv"
)

// BootCount is U-Boot's own boot-limit convention (CONFIG_BOOTCOUNT_LIMIT
// with CONFIG_BOOTCOUNT_ENV), as in examples/boot/bootcount.env:
// fwctl_slot names the slot to boot; while upgrade_available=1 U-Boot adds
// one to bootcount at every boot, and once bootcount exceeds bootlimit it
// runs altbootcmd, which switches fwctl_slot to the other slot and ends the
// trial. Confirming sets upgrade_available=0 and bootcount=0.
type BootCount struct {
	Env   bootenv.Env
	Slots []string
	Tries int
}

func (b *BootCount) tries() int {
	if b.Tries > 0 {
		return b.Tries
	}
	return DefaultTries
}

func (b *BootCount) other(slot string) string {
	for _, s := range b.Slots {
		if s != slot {
			return s
		}
	}
	return slot
}

func (b *BootCount) update(fn func(v map[string]string)) error {
	v, err := b.Env.Load()
	if err != nil {
		return err
	}
	fn(v)
	return b.Env.Save(v)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Init implements Scheme.
func (b *BootCount) Init(active string) (bool, error) {
	v, err := b.Env.Load()
	if err != nil {
		return false, err
	}
	if _, ok := v["fwctl_slot"]; ok {
		return false, nil
	}
	v["fwctl_slot"] = active
	v["upgrade_available"] = "0"
	v["bootcount"] = "0"
	v["bootlimit"] = strconv.Itoa(b.tries())
	return true, b.Env.Save(v)
}

// Disable implements Scheme: the slot being overwritten is never the one
// fwctl_slot names (that is the running slot), and ending any trial makes
// sure altbootcmd cannot switch to it. It removes bootcount, which U-Boot
// reads only during a trial and Try, MarkGood and altbootcmd set: its
// absence tells Tried that no trial started since.
func (b *BootCount) Disable(slot string) error {
	return b.update(func(v map[string]string) {
		if v["fwctl_slot"] == slot {
			v["fwctl_slot"] = b.other(slot)
		}
		v["upgrade_available"] = "0"
		delete(v, "bootcount")
	})
}

// Tried implements Scheme.
func (b *BootCount) Tried(slot string) (bool, error) {
	v, err := b.Env.Load()
	if err != nil {
		return false, err
	}
	_, ok := v["bootcount"]
	return ok || v["fwctl_slot"] == slot, nil
}

// Try implements Scheme.
func (b *BootCount) Try(slot string) error {
	return b.update(func(v map[string]string) {
		v["fwctl_slot"] = slot
		v["upgrade_available"] = "1"
		v["bootcount"] = "0"
		v["bootlimit"] = strconv.Itoa(b.tries())
	})
}

// MarkGood implements Scheme.
func (b *BootCount) MarkGood(slot string) error {
	return b.update(func(v map[string]string) {
		v["fwctl_slot"] = slot
		v["upgrade_available"] = "0"
		v["bootcount"] = "0"
	})
}

// MarkBad implements Scheme.
func (b *BootCount) MarkBad(slot string) error {
	return b.update(func(v map[string]string) {
		if v["fwctl_slot"] == slot {
			v["fwctl_slot"] = b.other(slot)
		}
		v["upgrade_available"] = "0"
		v["bootcount"] = "0"
	})
}

// Primary implements Scheme.
func (b *BootCount) Primary() (string, int, error) {
	v, err := b.Env.Load()
	if err != nil {
		return "", 0, err
	}
	slot := v["fwctl_slot"]
	if slot == "" {
		return "", 0, ErrNoBootable
	}
	if v["upgrade_available"] != "1" {
		return slot, b.tries(), nil
	}
	left := atoi(v["bootlimit"]) - atoi(v["bootcount"])
	if left <= 0 {
		return b.other(slot), b.tries(), nil
	}
	return slot, left, nil
}

// Select implements Scheme, as U-Boot plus altbootcmd would.
func (b *BootCount) Select() (string, error) {
	var chosen string
	err := b.update(func(v map[string]string) {
		if v["fwctl_slot"] == "" {
			v["fwctl_slot"] = b.Slots[0]
		}
		if v["upgrade_available"] == "1" {
			n := atoi(v["bootcount"]) + 1
			v["bootcount"] = strconv.Itoa(n)
			if n > atoi(v["bootlimit"]) { // altbootcmd
				v["fwctl_slot"] = b.other(v["fwctl_slot"])
				v["upgrade_available"] = "0"
				v["bootcount"] = "0"
			}
		}
		chosen = v["fwctl_slot"]
	})
	return chosen, err
}
