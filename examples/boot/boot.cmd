# fwctl A/B boot script for U-Boot, RAUC-style convention:
#
#   BOOT_ORDER   slots by preference, e.g. "A B"
#   BOOT_A_LEFT  boot attempts left for slot A (BOOT_B_LEFT for B)
#
# U-Boot boots the first slot in BOOT_ORDER with attempts left, decrements
# its count and saves the environment *before* loading the kernel, then
# passes fwctl.slot=A|B on the kernel command line. fwagent refills the count
# once the slot is confirmed healthy; if it never is, the count runs out and
# the next slot in BOOT_ORDER boots. This is the logic of Select in
# fwctl/agent/boot, which tests it.
#
# Build:  mkimage -A arm64 -T script -C none -n "fwctl A/B" -d boot.cmd boot.scr
# Needs:  CONFIG_CMD_SETEXPR, CONFIG_CMD_SAVEENV, a writable environment
#         (CONFIG_ENV_IS_IN_MMC, ideally CONFIG_SYS_REDUNDAND_ENVIRONMENT)
#         matching /etc/fw_env.config on the device.

# --- board specific: edit -------------------------------------------------
fwctl_tries=3
fwctl_dev=mmc
fwctl_devnum=0
fwctl_part_A=2
fwctl_part_B=3
fwctl_kernel=/boot/Image
fwctl_fdt=/boot/dtb/${fdtfile}
fwctl_args="console=${console} rootwait ro"
# ---------------------------------------------------------------------------

# A missing order means "A B"; a missing count means no attempts left.
# (Shell variables written as name=value stay out of the saved environment.)
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 0
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 0

fwctl_slot=
for s in ${BOOT_ORDER}; do
	if test -n "${fwctl_slot}"; then
		# a slot is chosen; ignore the rest of BOOT_ORDER
		true
	elif test "${s}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
		# setexpr computes in hex: keep fwctl_tries at 9 or below.
		setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
		fwctl_slot=A
		fwctl_part=${fwctl_part_A}
	elif test "${s}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
		setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
		fwctl_slot=B
		fwctl_part=${fwctl_part_B}
	fi
done

if test -z "${fwctl_slot}"; then
	# Every slot in BOOT_ORDER used up its attempts. Rather than leave the
	# device dead, give those slots their attempts back and start over. A
	# slot the agent took out of BOOT_ORDER (being written, or bad) is
	# never refilled: it may hold a partial image.
	echo "fwctl: no slot has boot attempts left; refilling and resetting"
	for s in ${BOOT_ORDER}; do
		if test "${s}" = "A"; then setenv BOOT_A_LEFT ${fwctl_tries}; fi
		if test "${s}" = "B"; then setenv BOOT_B_LEFT ${fwctl_tries}; fi
	done
	saveenv
	reset
fi

# Count this attempt before anything can hang or crash.
saveenv

echo "fwctl: booting slot ${fwctl_slot} (A left ${BOOT_A_LEFT}, B left ${BOOT_B_LEFT})"
setenv bootargs "${fwctl_args} root=/dev/mmcblk${fwctl_devnum}p${fwctl_part} fwctl.slot=${fwctl_slot}"
if load ${fwctl_dev} ${fwctl_devnum}:${fwctl_part} ${kernel_addr_r} ${fwctl_kernel}; then
	if load ${fwctl_dev} ${fwctl_devnum}:${fwctl_part} ${fdt_addr_r} ${fwctl_fdt}; then
		booti ${kernel_addr_r} - ${fdt_addr_r}
	fi
fi
# Loading or booting failed: this attempt is already counted, so a reset
# tries again and eventually falls back to the other slot.
echo "fwctl: slot ${fwctl_slot} failed to boot; resetting"
reset
