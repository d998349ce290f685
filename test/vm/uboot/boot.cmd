# fwctl test machine (test/vm, arm64): the boot script Debian's U-Boot
# (u-boot-qemu, qemu_arm64) finds on the boot partition through its default
# bootcmd (distro_bootcmd). scripts/vm-image-arm64.sh builds it with
#   mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
#
# That U-Boot keeps its environment in NOR flash with one copy. This script
# keeps the board's environment on the disk instead, as a board built with
# CONFIG_ENV_IS_IN_MMC and CONFIG_SYS_REDUNDAND_ENVIRONMENT does, in
# fw_env.config's layout (the agent writes it with that file):
#   /dev/vda  0x40000  0x4000     copy 0, sectors 0x200-0x21f
#   /dev/vda  0x80000  0x4000     copy 1, sectors 0x400-0x41f
# Each copy is a CRC32 of the data, a flags byte, then the variables. The
# copy in use is the valid one with the higher flags (0 follows 255; copy 0
# on a tie), as env_import_redund and libubootenv decide; a save writes the
# other copy with flags one higher, so a torn save leaves the old copy in
# use. On it, this script runs U-Boot's CONFIG_BOOTCOUNT_LIMIT with
# CONFIG_BOOTCOUNT_ENV (agent/boot.BootCount, examples/boot/bootcount.env):
# during a trial (upgrade_available=1) every boot adds one to bootcount and
# saves; past bootlimit, altbootcmd's work: the other slot, trial over.
#
# Scratch values are hush variables (name=value): they stay out of the
# environment. setexpr always sets environment variables, so it runs only
# before env import -d, which deletes everything but what it imports.

# --- layout (512-byte sectors) and RAM ------------------------------------
# copy 0 is read to 0x48000000, copy 1 to 0x48100000, the new copy is built
# at 0x48200000, 0x48300000 is scratch.
fwctl_n=0x20
fwctl_size=0x4000
k=${kernel_addr_r}
r=${ramdisk_addr_r}
fdt=${fdtcontroladdr}
dev=${devnum}
part=${distro_bootpart}

virtio dev ${dev}
virtio read 0x48000000 0x200 ${fwctl_n}
virtio read 0x48100000 0x400 ${fwctl_n}
setexpr.b fwtmp *0x48000004
f0=${fwtmp}
setexpr fwtmp ${f0} + 1
n0=${fwtmp}
setexpr.b fwtmp *0x48100004
f1=${fwtmp}
setexpr fwtmp ${f1} + 1
n1=${fwtmp}

# The copy with the higher flags first; if its CRC is bad, the other.
first=0
if itest ${f1} -eq 0 && itest ${f0} -eq 0xff; then
	first=1
elif itest ${f0} -eq 0 && itest ${f1} -eq 0xff; then
	first=0
elif itest ${f1} -gt ${f0}; then
	first=1
fi
# env import -c wants the CRC right before the data: move it over the flags
# byte (kept above) and let U-Boot check it. A copy whose CRC is bad is not
# imported and changes nothing.
cp.b 0x48000000 0x48300000 4
cp.b 0x48300000 0x48000001 4
cp.b 0x48100000 0x48300000 4
cp.b 0x48300000 0x48100001 4
cur=none
if test ${first} = 1; then
	if env import -d -c 0x48100001 0x3fff; then cur=1; elif env import -d -c 0x48000001 0x3fff; then cur=0; fi
else
	if env import -d -c 0x48000001 0x3fff; then cur=0; elif env import -d -c 0x48100001 0x3fff; then cur=1; fi
fi

if test ${cur} = none; then
	# U-Boot would boot its built-in default environment; on this machine
	# that means the environment was lost, which the test counts as a failure.
	echo "FWVM error uboot: neither environment copy is valid (flags ${f0} ${f1})"
	setenv fwctl_slot A
	setenv upgrade_available 0
fi
test -n "${fwctl_slot}" || setenv fwctl_slot A

# --- CONFIG_BOOTCOUNT_LIMIT, CONFIG_BOOTCOUNT_ENV -------------------------
save=no
if test "${upgrade_available}" = 1; then
	test -n "${bootcount}" || setenv bootcount 0
	# setexpr computes in hex: bootlimit stays at 9 or below
	setexpr bootcount ${bootcount} + 1
	save=yes
	if test -n "${bootlimit}" && itest ${bootcount} -gt ${bootlimit}; then
		# altbootcmd
		echo "fwctl: slot ${fwctl_slot} failed ${bootcount} times, falling back"
		if test "${fwctl_slot}" = B; then setenv fwctl_slot A; else setenv fwctl_slot B; fi
		setenv upgrade_available 0
		setenv bootcount 0
	fi
fi

if test ${save} = yes && test ${cur} != none; then
	# saveenv: export with U-Boot's own CRC (env export -c puts it right
	# before the data), move the CRC to the front, set the flags byte and
	# write the copy not in use.
	env export -c -s 0x3fff 0x48200001
	cp.b 0x48200001 0x48300000 4
	cp.b 0x48300000 0x48200000 4
	if test ${cur} = 0; then
		mw.b 0x48200004 ${n0}
		virtio write 0x48200000 0x400 ${fwctl_n}
	else
		mw.b 0x48200004 ${n1}
		virtio write 0x48200000 0x200 ${fwctl_n}
	fi
fi

echo "FWVM uboot slot=${fwctl_slot} copy=${cur} flags=${f0},${f1} saved=${save} upgrade_available=${upgrade_available} bootcount=${bootcount} bootlimit=${bootlimit}"
setenv bootargs "console=ttyAMA0 quiet panic=-1 fwctl.slot=${fwctl_slot}"
if load virtio ${dev}:${part} ${k} /Image; then
	if load virtio ${dev}:${part} ${r} /initrd.img; then
		booti ${k} ${r}:${filesize} ${fdt}
	fi
fi
echo "FWVM error uboot: slot ${fwctl_slot} failed to boot"
reset
