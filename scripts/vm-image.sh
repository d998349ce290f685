#!/usr/bin/env bash
# vm-image.sh ARCH FWAGENT OUTDIR: builds the test machine of test/vm
# (issue 19) from Debian packages only. ARCH is x86_64 (GRUB, BIOS) for now.
#
# Inputs come from apt: the kernel .deb is fetched with `apt-get download`
# into ~/.cache/fwctl-vm/debs (or $FWCTL_VM_CACHE) once; everything else is
# an installed package (busybox-static, grub-pc-bin, e2fsprogs, fdisk).
# Nothing is fetched at test time beyond that apt download.
#
# OUTDIR receives:
#   vmlinuz, initrd.img   the Debian kernel and a busybox initramfs holding
#                         FWAGENT, the virtio/ext4 modules and init
#   disk.img              one MBR disk: 1 boot (ext2, GRUB's grub.cfg built
#                         from examples/boot/grub.cfg, grubenv, kernel,
#                         initrd), 2 slot A (the factory image), 3 slot B,
#                         4 data (ext4, the agent's state), GRUB i386-pc in
#                         the MBR and the gap after it
#   factory.img           the image in slot A
# The guest's init runs /run.sh from a tar archive on a second disk (vdb),
# so the host decides per boot what the machine does.
set -euo pipefail
arch=$1 agent=$2 out=$3
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${FWCTL_VM_CACHE:-$HOME/.cache/fwctl-vm}
[ "$arch" = x86_64 ] || { echo "vm-image: architecture $arch: x86_64 only (arm64: scripts/vm-image-arm64.sh)" >&2; exit 2; }
for t in busybox mke2fs sfdisk grub-mkimage grub-editenv; do
  command -v "$t" >/dev/null || { echo "vm-image: $t missing: run scripts/deps.sh" >&2; exit 3; }
done
[ -d /usr/lib/grub/i386-pc ] || { echo "vm-image: grub-pc-bin missing: run scripts/deps.sh" >&2; exit 3; }
mkdir -p "$cache/debs" "$out"
bb=$(command -v busybox)

# --- kernel: linux-image-amd64's dependency, fetched once ----------------
kdeb=$(ls "$cache"/debs/linux-image-[0-9]*-amd64_*_amd64.deb 2>/dev/null | head -1 || true)
if [ -z "$kdeb" ]; then
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  (cd "$cache/debs" && apt-get download "$pkg" 2>/dev/null)
  kdeb=$(ls "$cache"/debs/linux-image-[0-9]*-amd64_*_amd64.deb | head -1)
fi
kx="$cache/x86_64/kernel-$(basename "$kdeb" .deb)"
if [ ! -f "$kx/.done" ]; then
  rm -rf "$kx" && mkdir -p "$kx"
  dpkg-deb -x "$kdeb" "$kx"
  kver=$(ls "$kx/lib/modules")
  "$bb" depmod -b "$kx" "$kver"
  touch "$kx/.done"
fi
kver=$(ls "$kx/lib/modules")
cp "$kx/boot/vmlinuz-$kver" "$out/vmlinuz"

# --- initramfs ------------------------------------------------------------
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ir=$work/initrd
mkdir -p "$ir"/{bin,dev,proc,sys,boot,data,ctl,tmp,etc} "$ir/lib/modules/$kver"
cp "$bb" "$ir/bin/busybox"
ln -s busybox "$ir/bin/sh"
install -m 0755 "$agent" "$ir/bin/fwagent"
# e2fsck from e2fsprogs with its libraries: init checks both file systems
# before mounting them, as a distribution's boot does (ext2 has no journal).
cp /sbin/e2fsck "$ir/bin/e2fsck"
for lib in $(ldd /sbin/e2fsck | awk '/=>/{print $3} /ld-linux/{print $1}'); do
  mkdir -p "$ir$(dirname "$lib")"; cp -L "$lib" "$ir$lib"
done
# shellcheck source=scripts/lib/vm-modules.sh
. "$here/scripts/lib/vm-modules.sh"
vm_modules "$kx" "$kver" "$ir"
cat > "$ir/init" <<'INIT'
#!/bin/sh
# fwctl test machine (test/vm): mounts the disk, reports the booted slot
# and its image hashes on the console, then runs the host's /run.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci virtio_net crc32c_generic ext4; do modprobe "$m"; done
# The host answers "go EPOCH" (the host's clock, which a fresh boot would
# read from the RTC), or saves the machine here (QEMU migration) and later
# restores copies of it with another disk: no disk has been probed yet
# (virtio_blk is not loaded), so a restored copy reads the disk it is given
# from scratch, as a fresh boot does (test/vm's split boot).
echo "FWVM wait kernel"
read -r _ t; [ -n "$t" ] && date -u -s "@$t" >/dev/null
modprobe virtio_blk
i=0; while [ ! -b /dev/vdb ] || [ ! -b /dev/vda4 ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done
tar -xf /dev/vdb -C /ctl 2>/dev/null
# -p, as a distribution's boot runs it: exit 4 or more stops an unattended
# device, and the test fails the boot. (The agent rewrites grubenv in place,
# as GRUB does; its old temp-file rename could leave ext2 with an unattached
# inode that -p refuses to repair.)
for p in vda1 vda4; do
  e2fsck -p /dev/$p >/tmp/fsck.$p 2>&1; rc=$?
  [ $rc -ge 4 ] && { echo "FWVM error fsck $p exit $rc"; cat /tmp/fsck.$p; }
  [ $rc -ge 1 ] && [ $rc -lt 4 ] && { echo "FWVM fsck $p repaired (exit $rc)"; grep -v '^e2fsck\|^Pass\|^ *$' /tmp/fsck.$p | head -5; }
done
mount -t ext2 /dev/vda1 /boot || echo "FWVM error mount boot"
mount -t ext4 /dev/vda4 /data || echo "FWVM error mount data"
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
slot=$(sed -n 's/.*fwctl\.slot=\([AB]\).*/\1/p' /proc/cmdline)
case $slot in A) dev=/dev/vda2;; B) dev=/dev/vda3;; *) dev=;; esac
echo "FWVM boot slot=$slot"
if [ -n "$dev" ] && [ -f /ctl/images ]; then
  while read name size; do
    echo "FWVM hash $name $(head -c "$size" "$dev" | sha256sum | cut -d' ' -f1)"
  done < /ctl/images
fi
[ -f /ctl/run.sh ] && . /ctl/run.sh
echo "FWVM done"
sync; umount /data; umount /boot
poweroff -f
INIT
chmod 0755 "$ir/init"
(cd "$ir" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -1) > "$out/initrd.img"

# --- disk -----------------------------------------------------------------
# sectors of 512 bytes: boot 48 MiB, slots 8 MiB each, data 32 MiB
bootsz=$((48 * 2048)) slotsz=$((8 * 2048)) datasz=$((32 * 2048))
s1=2048 s2=$((2048 + bootsz)) s3=$((s2 + slotsz)) s4=$((s3 + slotsz))
total=$((s4 + datasz))
bd=$work/boot
mkdir -p "$bd/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$bd/grub/i386-pc/"
cp "$out/vmlinuz" "$out/initrd.img" "$bd/"
{
  echo "# test/vm machine: examples/boot/grub.cfg's slot selection, this machine's settings and menu entry"
  echo "set fwctl_tries=3"
  # no_timer_check: under TCG on a loaded host the emulated PIT can miss
  # the kernel's IO-APIC timer check, which then panics ("IO-APIC + timer
  # doesn't work!"); the check is for broken real hardware
  echo "set fwctl_args=\"console=ttyS0,115200 quiet panic=-1 no_timer_check\""
  echo "set timeout=0"
  echo "serial --unit=0 --speed=115200; terminal_input serial; terminal_output serial"
  # the selection logic, verbatim: from load_env to the line before the menu entry
  sed -n '/^load_env /,/^menuentry /p' "$here/examples/boot/grub.cfg" | sed '$d'
  cat <<'ENTRY'
echo "FWVM grub slot=$fwctl_slot A_LEFT=$BOOT_A_LEFT B_LEFT=$BOOT_B_LEFT ORDER=$BOOT_ORDER"
menuentry "fwctl slot $fwctl_slot" {
	linux /vmlinuz $fwctl_args fwctl.slot=$fwctl_slot
	initrd /initrd.img
}
ENTRY
} > "$bd/grub/grub.cfg"
grub-editenv "$bd/grub/grubenv" create
grub-editenv "$bd/grub/grubenv" set "BOOT_ORDER=A B" BOOT_A_LEFT=3 BOOT_B_LEFT=0
mke2fs -q -t ext2 -b 4096 -L boot -d "$bd" "$work/boot.img" $((bootsz / 8))
mkdir -p "$work/data"
mke2fs -q -t ext4 -b 4096 -L data -d "$work/data" "$work/data.img" $((datasz / 8))
# the factory image: deterministic bytes, 1 MiB
head -c $((1 << 20)) /dev/zero | tr '\0' 'F' > "$out/factory.img"
printf 'fwctl factory image\n' | dd of="$out/factory.img" conv=notrunc status=none
rm -f "$out/disk.img"
truncate -s $((total * 512)) "$out/disk.img"
sfdisk -q "$out/disk.img" <<PT
label: dos
start=$s1, size=$bootsz, type=83, bootable
start=$s2, size=$slotsz, type=da
start=$s3, size=$slotsz, type=da
start=$s4, size=$datasz, type=83
PT
dd if="$work/boot.img" of="$out/disk.img" bs=512 seek=$s1 conv=notrunc,sparse status=none
dd if="$out/factory.img" of="$out/disk.img" bs=512 seek=$s2 conv=notrunc status=none
dd if="$work/data.img" of="$out/disk.img" bs=512 seek=$s4 conv=notrunc,sparse status=none

# --- GRUB in the MBR: boot.img, then core.img from sector 1 ---------------
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/grub' \
  biosdisk part_msdos ext2 normal configfile search search_label linux loadenv test echo reboot halt serial terminal
corelen=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ $corelen -lt 2047 ] || { echo "vm-image: core.img too large ($corelen sectors)" >&2; exit 1; }
# boot.img's code (440 bytes) keeps the partition table; it loads sector 1
dd if=/usr/lib/grub/i386-pc/boot.img of="$out/disk.img" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$out/disk.img" bs=512 seek=1 conv=notrunc status=none
# diskboot.img's block list (end of core.img's first sector): start 2, length corelen-1
printf "$(printf '\\x%02x\\x%02x' $(( (corelen - 1) & 255 )) $(( (corelen - 1) >> 8 )))" |
  dd of="$out/disk.img" bs=1 seek=$((512 + 0x1fc)) conv=notrunc status=none
echo "$kver $(sha256sum "$agent" | cut -c1-16)" > "$out/stamp"
echo "vm-image: $out/disk.img ($arch, kernel $kver)"
