// Package vm tests power cuts on whole emulated machines (issue 19): a
// Debian kernel, a busybox initramfs holding the static fwagent, and one
// virtual disk with a boot partition, two slots and a data partition,
// booted by the real GRUB (scripts/vm-image.sh builds it). The host kills
// the whole QEMU process during updates, then boots the disk again; and it
// records the disk's write and flush stream with QEMU's blklogwrites
// driver and boots crash states rebuilt from it (package logwrites).
// docs/powerloss.md describes what each part models.
package vm
