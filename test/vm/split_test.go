package vm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Split boots (docs/powerloss.md, "Split boots"). Under TCG three
// quarters of a boot is the Debian kernel's XZ self-decompression and its
// start, which read nothing from the disk and write nothing. A split boot
// runs the real firmware and GRUB on the disk as it is, stops the machine
// at GRUB's "FWVM grub" line (after GRUB's last disk write, before it
// loads the kernel), and continues from a saved machine: the same kernel
// and initramfs, booted by the real GRUB with the same command line for
// the slot GRUB chose, and saved at init's first wait, before any disk
// driver was loaded. The restored machine then probes the disk it is
// given from scratch.

// fullBoot runs one complete boot, from power-on.
func (s *session) fullBoot(o runOpts) (*boot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	s.stats.full++
	return s.im.run(ctx, o)
}

// resumed is a copy of saved (the boot up to where its machine was
// saved), for a restored copy of that machine to continue.
func resumed(saved *boot) *boot {
	b := *saved
	b.lines, b.times = slices.Clone(saved.lines), slices.Clone(saved.times)
	b.hashes, b.rc = maps.Clone(saved.hashes), maps.Clone(saved.rc)
	b.errs = slices.Clone(saved.errs)
	b.saved, b.handedOver, b.killed, b.done = false, false, false, false
	b.start = time.Now().Add(-saved.took)
	return &b
}

// restore continues a machine saved at a wait, with disk as its disk.
func (s *session) restore(snap string, o runOpts) (*boot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	o.incoming = snap
	return s.im.run(ctx, o)
}

var grubSlotRe = regexp.MustCompile(`^FWVM grub slot=(\S*)`)

// grubSlot is the slot GRUB's "FWVM grub" line names.
func grubSlot(line string) string {
	if m := grubSlotRe.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// splitBoot boots o.disk: GRUB for real, then the saved kernel of the
// slot GRUB chose. o.saveAt, if set, applies to the second half.
func (s *session) splitBoot(o runOpts) (*boot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	first := o
	first.handover, first.saveAt, first.saveTo = true, "", ""
	b, err := s.im.run(ctx, first)
	if err != nil || !b.handedOver || b.killed {
		// killed in the firmware or GRUB, or GRUB did not boot a slot
		// (its refill path reboots): that is the whole boot
		return b, err
	}
	slot := grubSlot(b.grub)
	snap := s.kernels[slot]
	if snap == "" {
		return b, fmt.Errorf("no saved kernel for GRUB's choice (%s)", b.grub)
	}
	if err := s.sameBootFiles(o.disk); err != nil {
		return b, err
	}
	b.handedOver = false
	o.into = b
	o.incoming = snap
	b, err = s.im.run(ctx, o)
	s.stats.split++
	if err == nil && b.slot != "" && b.slot != slot {
		err = fmt.Errorf("GRUB chose %s, the restored kernel booted %s:\n%s", slot, b.slot, b.transcript())
	}
	return b, err
}

// bootFiles are the files GRUB reads to boot the kernel: all three must
// be the pristine image's in every state, or a split boot does not model
// the boot (the updates never write them).
var bootFiles = []string{"grub/grub.cfg", "vmlinuz", "initrd.img"}

// sameBootFiles reads grub.cfg, the kernel and the initramfs from the
// disk's boot partition as it is (debugfs, as GRUB reads them: through
// the file system, no fsck) and compares them with the pristine image's.
func (s *session) sameBootFiles(disk string) error {
	for _, f := range bootFiles {
		h, err := s.bootFile(disk, f)
		if err != nil {
			return fmt.Errorf("split boot: %v", err)
		}
		if h != s.pristine[f] {
			return fmt.Errorf("split boot does not apply: %s on the boot partition differs from the pristine image's (the saved kernel would not be the one GRUB loads)", f)
		}
	}
	return nil
}

func (s *session) bootFile(disk, name string) (string, error) {
	out, err := exec.Command(s.debugfs, "-R", "cat "+name, fmt.Sprintf("%s?offset=%d", disk, bootStart*sectorSize)).Output()
	if err != nil {
		return "", fmt.Errorf("debugfs cat %s: %v", name, err)
	}
	if len(out) == 0 {
		return "", fmt.Errorf("debugfs cat %s: empty", name)
	}
	h := sha256.Sum256(out)
	return hex.EncodeToString(h[:]), nil
}

// savingBoot boots o.disk fully, saving the machine at init's kernel wait
// as the saved kernel of the slot GRUB chose, and continues the boot from
// the saved machine (so the first use of every saved kernel is checked by
// the boot that made it).
func (s *session) savingBoot(o runOpts) (*boot, error) {
	tmp := filepath.Join(s.dir, "kernel-saving.snap")
	o.saveAt, o.saveTo = "FWVM wait kernel", tmp
	b, err := s.fullBoot(o)
	if err != nil {
		return b, err
	}
	if !b.saved {
		return b, fmt.Errorf("the machine was not saved at init's kernel wait:\n%s", b.transcript())
	}
	slot := grubSlot(b.grub)
	if slot == "" {
		return b, fmt.Errorf("saved machine without GRUB's choice:\n%s", b.transcript())
	}
	snap := filepath.Join(s.dir, "kernel-"+slot+".snap")
	if err := os.Rename(tmp, snap); err != nil {
		return b, err
	}
	s.kernels[slot] = snap
	o.saveAt, o.saveTo, o.into = "", "", b
	b, err = s.restore(snap, o)
	if err == nil && b.slot != slot {
		err = fmt.Errorf("GRUB chose %s, the restored kernel booted %q:\n%s", slot, b.slot, b.transcript())
	}
	return b, err
}

// phaseTimes is one boot's timeline, for the docs' table.
func phaseTimes(b *boot) string {
	var out []string
	if i := slices.Index(b.lines, b.grub); b.grub != "" && i >= 0 {
		out = append(out, fmt.Sprintf("loader %.1fs", b.times[i].Seconds()))
	}
	for _, p := range []struct{ name, prefix string }{
		{"kernel-wait", "FWVM wait kernel"}, {"slot", "FWVM boot slot"},
		{"confirm", "FWVM step confirm"}, {"update", "FWVM step update"}, {"update-rc", "FWVM rc update"}, {"done", "FWVM done"},
	} {
		if d, ok := lineAt(b, p.prefix); ok {
			out = append(out, fmt.Sprintf("%s %.1fs", p.name, d.Seconds()))
		}
	}
	return strings.Join(out, ", ") + fmt.Sprintf(", off %.1fs", b.took.Seconds())
}
