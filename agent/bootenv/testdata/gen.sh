#!/bin/sh
# Regenerates the golden vectors in this directory with the real tools
# (Debian 12: apt-get install -y libubootenv-tool u-boot-tools grub-common).
# Each vector is checked by golden_test.go without the tools installed.
# grubenv-fwctl is our own encoder's output: go test -run GoldenGrub -update.
set -eu
cd "$(dirname "$0")"

# U-Boot: 1 KiB environment, variables from uboot-vars.txt (sorted, as
# U-Boot and fw_setenv store them), padded with 0x00 as fw_setenv pads.
mkenvimage -p 0 -s 0x400 -o uboot-single.bin uboot-vars.txt
mkenvimage -p 0 -s 0x400 -r -o uboot-redundant.bin uboot-vars.txt

# Two redundant copies written by fw_setenv: three writes from blank
# storage, so copy 1 holds flags 1 then 3 and copy 0 holds flags 2.
rm -f uboot-fwsetenv-0.bin uboot-fwsetenv-1.bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 1024 /dev/zero >uboot-fwsetenv-0.bin
head -c 1024 /dev/zero >uboot-fwsetenv-1.bin
printf '%s 0 0x400\n%s 0 0x400\n' "$PWD/uboot-fwsetenv-0.bin" "$PWD/uboot-fwsetenv-1.bin" >"$tmp/fw_env.config"
: >"$tmp/defenv"
fw_setenv -c "$tmp/fw_env.config" -f "$tmp/defenv" BOOT_ORDER "A B"
fw_setenv -c "$tmp/fw_env.config" -f "$tmp/defenv" BOOT_A_LEFT 3
fw_setenv -c "$tmp/fw_env.config" -f "$tmp/defenv" BOOT_ORDER "B A"

# GRUB: grub-editenv (Debian adds a warning comment after the signature).
rm -f grubenv
grub-editenv grubenv create
grub-editenv grubenv set BOOT_ORDER="A B" BOOT_A_LEFT=3 'path=C:\boot' "$(printf 'two=line 1\nline 2')"
