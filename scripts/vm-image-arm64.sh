#!/usr/bin/env bash
# vm-image-arm64.sh FWAGENT|- OUTDIR: builds test/vm's arm64 machine (issue
# 19) from Debian packages only, booted by Debian's own U-Boot
# (u-boot-qemu's qemu_arm64 build, run with qemu-system-aarch64 -bios).
#
# The arm64 packages are fetched with `apt-get download` into
# ~/.cache/fwctl-vm/debs-arm64 (or $FWCTL_VM_CACHE) once: the kernel of
# linux-image-arm64, busybox-static, and e2fsprogs with the libraries its
# e2fsck needs. The host tools are installed packages (u-boot-tools'
# mkimage and mkenvimage, e2fsprogs, fdisk).
#
# OUTDIR receives:
#   Image, initrd.img     the Debian kernel, uncompressed for U-Boot's booti,
#                         and a busybox initramfs (uncompressed cpio) holding
#                         FWAGENT, e2fsck, the virtio/ext4 modules and init
#   disk.img              one MBR disk with the layout of vm-image.sh's:
#                         1 boot (ext2, bootable: boot.scr, Image,
#                         initrd.img), 2 slot A (the factory image), 3 slot
#                         B, 4 data (ext4); in the gap before partition 1,
#                         the U-Boot environment's two redundant copies at
#                         0x40000 and 0x80000, 0x4000 bytes each (copy 0 from
#                         mkenvimage -r, copy 1 blank)
#   fw_env.config         those two copies, for the agent (libubootenv syntax)
#   factory.img           the image in slot A
# U-Boot's default bootcmd (distro_bootcmd) finds boot.scr on partition 1;
# test/vm/uboot/boot.cmd keeps the redundant environment and the bootcount.
# The guest's init is vm-image.sh's: it runs /run.sh from a tar archive on
# a second disk (vdb).
set -euo pipefail
agent=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${FWCTL_VM_CACHE:-$HOME/.cache/fwctl-vm}
tools="mke2fs sfdisk mkimage mkenvimage"
[ "$agent" = - ] || tools="$tools dpkg-deb readelf apt-get"
for t in $tools; do
  command -v "$t" >/dev/null || { echo "vm-image-arm64: $t missing: run scripts/deps.sh" >&2; exit 3; }
done
debs=$cache/debs-arm64
mkdir -p "$debs" "$out"

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# FWAGENT "-": only the disk U-Boot needs to reach its decision (boot.scr
# and the environment; no kernel, no packages), for TestUBootRedundantEnv
if [ "$agent" != - ]; then
# --- arm64 packages, fetched once -----------------------------------------
# apt fetches arm64 packages only once dpkg knows the architecture
if ! dpkg --print-foreign-architectures | grep -qx arm64 && [ "$(dpkg --print-architecture)" != arm64 ]; then
  [ "$(id -u)" = 0 ] || { echo "vm-image-arm64: run dpkg --add-architecture arm64; apt-get update (as root)" >&2; exit 4; }
  dpkg --add-architecture arm64 && apt-get update -qq >/dev/null
fi
kpkg=$(ls "$debs"/linux-image-[0-9]*-arm64_*_arm64.deb 2>/dev/null | head -1 || true)
if [ -z "$kpkg" ]; then
  pkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$pkg" ] || { echo "vm-image-arm64: apt knows no linux-image-arm64:arm64 (dpkg --add-architecture arm64; apt-get update)" >&2; exit 4; }
  (cd "$debs" && apt-get download "$pkg" 2>/dev/null) ||
    { echo "vm-image-arm64: apt-get download $pkg (linux-image-arm64) failed" >&2; exit 4; }
  kpkg=$(ls "$debs"/linux-image-[0-9]*-arm64_*_arm64.deb | head -1)
fi
userland="busybox-static e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6"
for p in $userland; do
  ls "$debs/${p}"_*_arm64.deb >/dev/null 2>&1 && continue
  (cd "$debs" && apt-get download "$p:arm64" 2>/dev/null) ||
    { echo "vm-image-arm64: apt-get download $p:arm64 failed (dpkg --add-architecture arm64; apt-get update)" >&2; exit 4; }
done
root=$cache/arm64/root-$(cd "$debs" && for p in $userland; do ls "${p}"_*_arm64.deb; done | sha256sum | cut -c1-12)
if [ ! -f "$root/.done" ]; then
  rm -rf "$root" && mkdir -p "$root"
  for p in $userland; do dpkg-deb -x "$(ls "$debs/${p}"_*_arm64.deb | head -1)" "$root"; done
  touch "$root/.done"
fi
kx="$cache/arm64/kernel-$(basename "$kpkg" .deb)"
if [ ! -f "$kx/.done" ]; then
  rm -rf "$kx" && mkdir -p "$kx"
  dpkg-deb -x "$kpkg" "$kx"
  kver=$(ls "$kx/lib/modules")
  busybox depmod -b "$kx" "$kver"
  touch "$kx/.done"
fi
kver=$(ls "$kx/lib/modules")
# booti takes an uncompressed Image; Debian's arm64 vmlinuz is one, or a
# gzip of one in other releases
if [ "$(head -c2 "$kx/boot/vmlinuz-$kver" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
  gzip -dc "$kx/boot/vmlinuz-$kver" > "$out/Image"
else
  cp "$kx/boot/vmlinuz-$kver" "$out/Image"
fi

# --- initramfs ------------------------------------------------------------
ir=$work/initrd
mkdir -p "$ir"/{bin,dev,proc,sys,boot,data,ctl,tmp,etc,var/lock} "$ir/lib/modules/$kver"
cp "$root/bin/busybox" "$ir/bin/busybox"
ln -s busybox "$ir/bin/sh"
install -m 0755 "$agent" "$ir/bin/fwagent"
cp "$root/sbin/e2fsck" "$ir/bin/e2fsck"
# e2fsck's libraries, by their ELF NEEDED entries, and the loader
mkdir -p "$ir/lib/aarch64-linux-gnu"
cp -L "$root/lib/ld-linux-aarch64.so.1" "$ir/lib/"
todo="$root/sbin/e2fsck" seen=" "
while [ -n "$todo" ]; do
  set -- $todo; f=$1; shift; todo="$*"
  for lib in $(readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    case $seen in *" $lib "*) continue;; esac
    seen="$seen$lib "
    src=
    for d in lib usr/lib; do [ -e "$root/$d/aarch64-linux-gnu/$lib" ] && src=$root/$d/aarch64-linux-gnu/$lib && break; done
    [ -n "$src" ] || { echo "vm-image-arm64: $lib (for $f) not in the arm64 packages" >&2; exit 1; }
    cp -L "$src" "$ir/lib/aarch64-linux-gnu/$lib"
    todo="$todo $src"
  done
done
# shellcheck source=scripts/lib/vm-modules.sh
. "$here/scripts/lib/vm-modules.sh"
vm_modules "$kx" "$kver" "$ir"
# init: vm-image.sh's, verbatim (one machine behaviour for both
# architectures); only the serial console's name differs, and that is on
# the kernel command line
sed -n "/^cat > \"\$ir\/init\" <<'INIT'$/,/^INIT$/p" "$here/scripts/vm-image.sh" | sed '1d;$d' > "$ir/init"
grep -q 'poweroff -f' "$ir/init" || { echo "vm-image-arm64: could not take init from scripts/vm-image.sh" >&2; exit 1; }
chmod 0755 "$ir/init"
# uncompressed: under TCG the kernel's gunzip costs more than U-Boot's read
(cd "$ir" && find . | busybox cpio -o -H newc 2>/dev/null) > "$out/initrd.img"

fi

# --- disk -----------------------------------------------------------------
# sectors of 512 bytes: boot 48 MiB, slots 8 MiB each, data 32 MiB, as in
# vm-image.sh (test/vm's layout constants)
bootsz=$((48 * 2048)) slotsz=$((8 * 2048)) datasz=$((32 * 2048))
s1=2048 s2=$((2048 + bootsz)) s3=$((s2 + slotsz)) s4=$((s3 + slotsz))
total=$((s4 + datasz))
envoff0=$((0x40000)) envoff1=$((0x80000)) envsize=$((0x4000))
bd=$work/boot
mkdir -p "$bd"
[ "$agent" = - ] || cp "$out/Image" "$out/initrd.img" "$bd/"
mkimage -A arm64 -T script -C none -n "fwctl test machine" -d "$here/test/vm/uboot/boot.cmd" "$bd/boot.scr" >/dev/null
mke2fs -q -t ext2 -b 4096 -L boot -d "$bd" "$work/boot.img" $((bootsz / 8))
mkdir -p "$work/data"
mke2fs -q -t ext4 -b 4096 -L data -d "$work/data" "$work/data.img" $((datasz / 8))
head -c $((1 << 20)) /dev/zero | tr '\0' 'F' > "$out/factory.img"
printf 'fwctl factory image\n' | dd of="$out/factory.img" conv=notrunc status=none
# the factory environment, as examples/boot/bootcount.env starts it
printf 'fwctl_slot=A\nbootlimit=3\nbootcount=0\nupgrade_available=0\n' > "$work/env.txt"
mkenvimage -s $envsize -r -o "$work/env.bin" "$work/env.txt"
rm -f "$out/disk.img"
truncate -s $((total * 512)) "$out/disk.img"
sfdisk -q "$out/disk.img" <<PT
label: dos
start=$s1, size=$bootsz, type=83, bootable
start=$s2, size=$slotsz, type=da
start=$s3, size=$slotsz, type=da
start=$s4, size=$datasz, type=83
PT
dd if="$work/env.bin" of="$out/disk.img" bs=512 seek=$((envoff0 / 512)) conv=notrunc status=none
dd if="$work/boot.img" of="$out/disk.img" bs=512 seek=$s1 conv=notrunc,sparse status=none
dd if="$out/factory.img" of="$out/disk.img" bs=512 seek=$s2 conv=notrunc status=none
dd if="$work/data.img" of="$out/disk.img" bs=512 seek=$s4 conv=notrunc,sparse status=none
printf '# test/vm arm64 machine: test/vm/uboot/boot.cmd reads and writes these\n/dev/vda %#x %#x\n/dev/vda %#x %#x\n' \
  $envoff0 $envsize $envoff1 $envsize > "$out/fw_env.config"
if [ "$agent" = - ]; then
  echo "boot-only" > "$out/stamp"
  echo "vm-image-arm64: $out/disk.img (arm64, U-Boot's part only)"
else
  echo "$kver $(sha256sum "$agent" | cut -c1-16)" > "$out/stamp"
  echo "vm-image-arm64: $out/disk.img (arm64, kernel $kver)"
fi
