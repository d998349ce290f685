#!/usr/bin/env bash
# Installs the Debian packages that tests, benchmarks and the demo use as
# real components (never mocks), only when they are missing, and says so.
set -euo pipefail

pkgs=(
  bc                                   # make bench
  swtpm swtpm-tools                    # TPM 2.0 (tpm)
  libubootenv-tool u-boot-tools        # fw_printenv/fw_setenv, mkenvimage (agent/bootenv)
  grub-common grub-emu e2fsprogs       # grub-editenv; grub.cfg booted in grub-emu
  qemu-system-arm u-boot-qemu          # boot.cmd run by real U-Boot under QEMU
  qemu-user-static binfmt-support      # arm64/riscv64 agent under qemu-user
  softhsm2 opensc                      # PKCS#11 HSM (signer)
  mariadb-server socat                 # Rekor's Trillian storage, loopback forwarder (scripts/rekor.sh)
  postgresql                           # fwrepo's inventory on PostgreSQL (scripts/postgres.sh)
  skopeo                               # inspects the fwrepo OCI image (make image)
  shellcheck jq                        # examples/ci: release.sh and the workflow's run: blocks, --json parsing
  strace                               # kills fwctl publish at every rename (cmd/fwctl TestPublishKilled)
  faketime                             # shifts the clock of the TUF conformance adapter (internal/fwagentcli TestConformanceClockFollowsFaketime)
  qemu-system-x86 grub-pc-bin busybox-static fdisk  # test/vm: whole machines booted by GRUB (make torture-vm)
  chromium                             # the fleet view in a real headless browser (repo/server/fleetui, chromedp)
  dosfstools mtools fusefat            # vfat sticks on loop devices for offline bundles (test/stick_test.go, demo-offline; fusefat where the kernel has no vfat)
  udev                                 # udevadm test runs examples/offline/90-fwctl-stick.rules (test/stick_examples_test.go)
)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing from Debian: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps: Debian packages present"

# An independent TUF client reading our repositories (test/tufjs_test.go):
# tuf-js at the version and hashes of tools/tufjs/package-lock.json.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "deps: installing from Debian: nodejs npm"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
tufjs=$(cd "$(dirname "$0")/../tools/tufjs" && pwd)
if ! cmp -s "$tufjs/package-lock.json" "$tufjs/node_modules/.fwctl-installed" 2>/dev/null; then
  echo "deps: npm ci in tools/tufjs (tuf-js, pinned by package-lock.json)"
  (cd "$tufjs" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && cp package-lock.json node_modules/.fwctl-installed)
fi
echo "deps: tuf-js present"
