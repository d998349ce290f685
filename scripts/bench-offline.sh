#!/usr/bin/env bash
# Part of make bench-install (issue 17): install a SIZE_MIB (256) release
# from a bundle on a loop-mounted vfat stick (kernel vfat, or fusefat where
# the kernel has none) and compare with the floor measured on the same
# stick: sha256sum of the bundle there plus dd of it into the slot with
# conv=fsync. Goals: wall time <= 1.3 x floor, peak RSS <= 32 MiB.
# Needs root; says so and fails otherwise.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/bin
SIZE_MIB=${SIZE_MIB:-256}
[ "$(id -u)" = 0 ] || { echo "bench-offline: needs root (losetup, mount)" >&2; exit 1; }
for tool in losetup mkfs.vfat mcopy /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-offline: $tool missing (scripts/deps.sh)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/fwctl-bench-offline.XXXXXX")
DEV=""
cleanup() {
  umount "$WORK/media" 2>/dev/null || true
  [ -n "$DEV" ] && { losetup -d "$DEV" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
export CI=1 FWCTL_PASSPHRASE=bench
head -c $((SIZE_MIB << 20)) /dev/urandom >fw.img
"$BIN/fwctl" init ws >/dev/null
"$BIN/fwctl" -w ws target add fw.img --hardware acme-gw-v2 --version 1.0.0 --counter 1 --name firmware.img >/dev/null
"$BIN/fwctl" -w ws publish --out repo >/dev/null
"$BIN/fwctl" bundle --repo repo --out site.fwbundle --release acme-gw-v2/1.0.0/firmware.img >/dev/null
rm fw.img
truncate -s $((SIZE_MIB + 64))M stick.img
DEV=$(losetup -f --show stick.img)
mkfs.vfat -n FWUPDATE "$DEV" >/dev/null 2>&1
mcopy -i "$DEV" site.fwbundle ::site.fwbundle
rm site.fwbundle
mkdir media
how="kernel vfat"
if ! mount -t vfat -o ro "$DEV" media 2>/dev/null; then
  fusefat -o ro "$DEV" media >/dev/null 2>&1
  how="fusefat (no vfat in this kernel)"
fi
mkdir device
printf 'factory\n' >device/slotA.img
printf 'fwctl.slot=A\n' >device/cmdline
cat >device/config.json <<JSON
{"repository": "http://127.0.0.1:1", "hardware": "acme-gw-v2", "state_dir": "state",
 "slots": {"A": "slotA.img", "B": "slotB.img"}, "bootloader": {"type": "file", "path": "bootenv", "tries": 3},
 "booted_slot": {"cmdline": "cmdline", "param": "fwctl.slot"}}
JSON
"$BIN/fwagent" -c device/config.json provision --root ws/metadata/1.root.json >/dev/null
cat media/site.fwbundle >/dev/null # the same cache state for both
measure() {
  /usr/bin/time -v -o time.out "$@" >cmd.out 2>&1 || { rc=$?; [ "$rc" = 10 ] || { cat cmd.out; exit 1; }; }
  sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' time.out | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%s ", s }'
  sed -n 's/.*Maximum resident set size (kbytes): //p' time.out
}
read -r ft fr < <(measure sh -c 'sha256sum media/site.fwbundle >/dev/null && dd if=media/site.fwbundle of=floor.img bs=4M conv=fsync status=none')
rm -f floor.img
read -r at ar < <(measure "$BIN/fwagent" -c device/config.json update --from media)
awk -v at="$at" -v ar="$ar" -v ft="$ft" -v fr="$fr" -v how="$how" -v size="$SIZE_MIB" 'BEGIN {
  ok = (at <= 1.3 * ft && ar / 1024 <= 32) ? "met" : "MISSED"
  printf "bundle on a vfat stick (%s), %d MiB:\n", how, size
  printf "%-8s %10s %10s %7s %12s %10s %7s\n", "source", "fwagent s", "floor s", "ratio", "fwagent RSS", "floor RSS", "goal"
  printf "%-8s %10.2f %10.2f %6.2fx %8.1f MiB %6.1f MiB %7s\n", "stick", at, ft, at / ft, ar / 1024, fr / 1024, ok
  print "floor: sha256sum of the bundle on the stick + dd bs=4M conv=fsync into the slot"
}'
