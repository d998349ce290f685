#!/usr/bin/env bash
# make demo-offline (issue 17): an air-gapped site. A release is bundled,
# the bundle goes onto a vfat "USB stick" (a loop device), the stick is
# mounted read-only, and a simulated device that never reaches a network
# installs from it with the online verification; then an expired bundle is
# refused under the default policy; the stick script of examples/offline
# writes the device's signed report back, and fwrepo imports it (a second
# import is refused as a replay). Needs root (loop devices, mount): if not
# root it says so and fails.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/bin
if [ "$(id -u)" != 0 ]; then
  echo "demo-offline: needs root for losetup and mount (a vfat stick on a loop device); run it as root" >&2
  exit 1
fi
for tool in losetup mkfs.vfat mcopy; do
  command -v "$tool" >/dev/null || { echo "demo-offline: $tool missing: scripts/deps.sh installs it" >&2; exit 1; }
done
DEMO=$(mktemp -d /tmp/fwctl-offline.XXXXXX)
DEV=""
cleanup() {
  umount "$DEMO/media" 2>/dev/null || true
  [ -n "$DEV" ] && losetup -d "$DEV" 2>/dev/null || true
  rm -rf "$DEMO"
}
trap cleanup EXIT
cd "$DEMO"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
expect() {
  local want=$1; shift
  printf '$ %s\n' "$*"
  set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo-offline: expected exit $want, got $got" >&2; exit 1; fi
  echo "  (exit $got)"
}
fwctl()  { "$BIN/fwctl" "$@"; }
fwagent(){ "$BIN/fwagent" -c device/config.json "$@"; }
export CI=1 FWCTL_PASSPHRASE="offline demo"

step "1. Release side: sign, publish and bundle 1.0.0"
{ printf 'ACME-GW firmware 1.0.0\n'; head -c $((8<<20)) /dev/urandom; } > fw-1.0.0.img
run fwctl init ws >/dev/null
run fwctl -w ws target add fw-1.0.0.img --hardware acme-gw-v2 --version 1.0.0 --counter 1 --name firmware.img
run fwctl -w ws publish --out repo >/dev/null
run fwctl bundle --repo repo --out site.fwbundle --release acme-gw-v2/1.0.0/firmware.img

step "2. Carry it: a vfat stick (loop device) labelled FWUPDATE"
truncate -s 64M stick.img
DEV=$(losetup -f --show stick.img)
run mkfs.vfat -n FWUPDATE "$DEV" >/dev/null
run mcopy -i "$DEV" site.fwbundle ::site.fwbundle
mkdir media
mount_stick() {
  if ! mount -t vfat -o ro "$DEV" media 2>/dev/null; then
    command -v fusefat >/dev/null || { echo "demo-offline: the kernel has no vfat and fusefat is missing (scripts/deps.sh)" >&2; exit 1; }
    echo "  (this kernel has no vfat driver: mounting the same loop device with fusefat)"
    fusefat -o ro "$DEV" media >/dev/null 2>&1
  fi
}
mount_stick
ls -l media

step "3. Device on the site: no network (its repository URL refuses), installs from the stick"
mkdir device
printf 'factory image\n' > device/slotA.img
printf 'console=ttyS0 fwctl.slot=A\n' > device/cmdline
cat > device/config.json <<JSON
{
  "repository": "http://127.0.0.1:1",
  "hardware": "acme-gw-v2",
  "state_dir": "state",
  "slots": {"A": "slotA.img", "B": "slotB.img"},
  "bootloader": {"type": "file", "path": "bootenv", "tries": 3},
  "booted_slot": {"cmdline": "cmdline", "param": "fwctl.slot"},
  "identity": {"key_file": "state/identity.key"}
}
JSON
run fwagent provision --root ws/metadata/1.root.json >/dev/null
expect 10 fwagent update --from media
run fwagent simulate-boot
run fwagent confirm

step "4. A damaged copy (cut short in transit) is refused; nothing changes"
head -c 4000000 site.fwbundle > cut.fwbundle
expect 3 fwagent update --from cut.fwbundle
run fwagent status | head -3

step "5. Plugged in again: examples/offline's stick script (as udev and systemd run it) writes the signed report back"
umount media
expect 0 env FWAGENT="$BIN/fwagent" FWAGENT_CONFIG="$DEMO/device/config.json" FWCTL_STICK_RUN="$DEMO/run" \
  "$ROOT/examples/offline/fwctl-stick-update" "$DEV"

step "6. At the office: the fleet learns what happened offline"
fwrepo() { "$BIN/fwrepo" "$@"; }
fwagent identity --pem > device.pem
run fwrepo devices add --db fleet.db --pubkey device.pem >/dev/null
mount_stick
run ls media/fwctl-reports
run fwrepo reports import --db fleet.db media
run fwrepo devices list --db fleet.db
echo "  the same stick imported again: its report is a replay"
expect 3 fwrepo reports import --db fleet.db media
echo
echo "demo-offline: done"
