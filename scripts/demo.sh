#!/usr/bin/env bash
# make demo: the whole release → publish → install flow on this machine, in a
# temporary directory, with a simulated device (two file slots, a file-backed
# bootloader environment, simulated reboots). Cleans up after itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/bin
DEMO=$(mktemp -d /tmp/fwctl-demo.XXXXXX)
REPO_PID=""
REKOR_DIR=""
cleanup() {
  [ -n "$REPO_PID" ] && kill "$REPO_PID" 2>/dev/null && wait "$REPO_PID" 2>/dev/null || true
  [ -n "$REKOR_DIR" ] && FW_QUIET=1 "$ROOT/scripts/rekor.sh" stop "$REKOR_DIR" >/dev/null 2>&1 || true
  rm -rf "$DEMO"
}
trap cleanup EXIT
cd "$DEMO"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
# expect CODE CMD...: run CMD and require its exit code.
expect() {
  local want=$1; shift
  printf '$ %s\n' "$*"
  set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo: expected exit $want, got $got" >&2; exit 1; fi
  echo "  (exit $got)"
}
fwctl()  { "$BIN/fwctl" "$@"; }
fwagent(){ "$BIN/fwagent" -c device/config.json "$@"; }
export CI=1 # no progress bars in the transcript

export FWCTL_PASSPHRASE="demo passphrase (in real life: a prompt or your CI secret store)"

step "1. Release engineer: create a signing workspace (keys encrypted at rest)"
run fwctl init ws
echo "Key files are encrypted:"; grep -l '"encrypted"' ws/keys/*.json | sed 's/^/  /'

step "2. Build sample firmware images (2.0.0 is 1.0.0 with a 64 KiB fix, like a security patch)"
mkfw() { { printf 'ACME-GW firmware %s\n' "$1"; head -c $((8<<20)) /dev/urandom; } > "$2"; }
mkfw 1.0.0 fw-1.0.0.img; mkfw 3.0.0 fw-3.0.0.img
{ printf 'ACME-GW firmware 2.0.0\n'; tail -c +24 fw-1.0.0.img; } > fw-2.0.0.img
head -c 65536 /dev/urandom | dd of=fw-2.0.0.img bs=65536 seek=50 conv=notrunc status=none
ls -l fw-*.img | awk '{print "  " $5, $9}'

step "3. Release v1.0.0 (security counter 1) and publish"
run fwctl -w ws target add fw-1.0.0.img --hardware acme-gw-v2 --version 1.0.0 --counter 1 --name firmware.img
run fwctl -w ws publish --out repo
run fwctl verify --root ws/metadata/1.root.json --repo repo

step "4. Start fwrepo on 127.0.0.1"
"$BIN/fwrepo" serve --dir repo --addr 127.0.0.1:0 >fwrepo.out 2>fwrepo.log &
REPO_PID=$!
for _ in $(seq 100); do grep -q 'serving' fwrepo.out 2>/dev/null && break; sleep 0.05; done
URL=$(sed -n 's/.* on \(http:[^ ]*\).*/\1/p' fwrepo.out)
echo "  fwrepo serving at $URL"

step "5. Provision a simulated device (slot A runs the factory image)"
mkdir device
printf 'factory image\n' > device/slotA.img
printf 'console=ttyS0 fwctl.slot=A\n' > device/cmdline
cat > device/config.json <<JSON
{
  "repository": "$URL",
  "hardware": "acme-gw-v2",
  "state_dir": "state",
  "slots": {"A": "slotA.img", "B": "slotB.img"},
  "bootloader": {"type": "file", "path": "bootenv", "tries": 3},
  "booted_slot": {"cmdline": "cmdline", "param": "fwctl.slot"}
}
JSON
run fwagent provision --root ws/metadata/1.root.json

step "6. Install v1.0.0, reboot, confirm"
expect 10 fwagent update
run fwagent simulate-boot
run fwagent confirm

step "7. Release v2.0.0 (counter 2) with a delta from v1.0.0; the device installs it by delta"
run fwctl -w ws target add fw-2.0.0.img --hardware acme-gw-v2 --version 2.0.0 --counter 2 --name firmware.img --delta-from 1
run fwctl -w ws publish --out repo
ls -l repo/targets/acme-gw-v2/2.0.0/ | awk 'NR>1 {print "  " $5, $9}'
expect 10 fwagent update >update.log
cat update.log
grep -q 'rebuilt from delta' update.log || { echo "demo: expected the device to install by delta" >&2; exit 1; }
run fwagent simulate-boot
run fwagent confirm
run fwagent status

step "8. Attack: an image tampered with on the server is refused"
run fwctl -w ws target add fw-3.0.0.img --hardware acme-gw-v2 --version 3.0.0 --counter 3 --name firmware.img
run fwctl -w ws publish --out repo
f=$(ls repo/targets/acme-gw-v2/3.0.0/*.firmware.img)
printf 'backdoor' | dd of="$f" bs=1 seek=4096 conv=notrunc status=none
echo "  (an attacker on the server patched 8 bytes of $f)"
expect 3 fwagent update
echo "Nothing switched: the device still boots slot $(fwagent status --json | sed -n 's/.*"next_boot": "\(.\)".*/\1/p') with v2.0.0."
cp fw-3.0.0.img "$f" # the operator restores the file

step "9. Attack: an older security counter is refused (rollback)"
echo "Someone with the release key signs a vulnerable old build as 3.0.1 with counter 1:"
run fwctl -w ws target add fw-1.0.0.img --hardware acme-gw-v2 --version 3.0.1 --counter 1 --name firmware.img --force
run fwctl -w ws publish --out repo
expect 3 fwagent update --target acme-gw-v2/3.0.1/firmware.img

if [ -n "${FW_DEMO_REKOR:-}" ]; then
  step "10. Transparency (FW_DEMO_REKOR=1): a private Rekor log, proofs required by the device"
  REKOR_DIR=$DEMO/rekor
  "$ROOT/scripts/rekor.sh" build
  FW_QUIET=1 "$ROOT/scripts/rekor.sh" start "$REKOR_DIR"
  eval "$("$ROOT/scripts/rekor.sh" env "$REKOR_DIR")"
  echo "  Rekor at $REKOR_URL"
  mkfw 4.0.0 fw-4.0.0.img
  run fwctl -w ws target add fw-4.0.0.img --hardware acme-gw-v2 --version 4.0.0 --counter 4 --name firmware.img
  run fwctl -w ws publish --out repo --rekor "$REKOR_URL"
  cp "$REKOR_PUBKEY" device/rekor.pub; cp ws/release.pub device/release.pub
  sed -i 's|"booted_slot"|"transparency": {"require": true, "log_public_key": "rekor.pub", "release_public_key": "release.pub"},\n  "booted_slot"|' device/config.json
  expect 10 fwagent update
  run fwagent simulate-boot
  run fwagent confirm
  echo "Audit: every image now has a proof, but targets versions 1-4 were signed before the log was used, so they are reported:"
  expect 3 fwctl -w ws audit --repo repo --root ws/metadata/1.root.json --rekor "$REKOR_URL"
fi

"$ROOT/scripts/demo-supplychain.sh" "$BIN" "$DEMO" "${REKOR_URL:-}" # SBOM, support period, provenance (issue 16)
"$ROOT/scripts/demo-rollout.sh" "$BIN" "$DEMO" # two-wave rollout through the director (issue 15)

step "Done"
run fwagent status
