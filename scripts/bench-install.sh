#!/usr/bin/env bash
# make bench-install: install a 256 MiB image with the real fwagent from a
# local fwrepo, into a file slot and into a loop-device slot, and compare
# wall time and peak RSS with the floor measured in the same run on the
# same machine: sha256sum of the image plus dd of it into the slot with
# conv=fsync (the least any verified install must do).
#
# Goals: wall time ≤ 1.3 × floor, peak RSS ≤ 32 MiB.
#
# coreutils' sha256sum does not use the CPU's SHA extensions, Go's
# crypto/sha256 does, so the script also reports a stricter floor that hashes
# with `openssl dgst -sha256` (when openssl is installed); the goal is judged
# against the sha256sum floor, as specified.
#
# Environment: SIZE_MIB (256), REPS (3; the median is reported),
# KEEP=1 keeps the work directory. The loop-device rows need root and
# losetup; without them they are skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-256}
REPS=${REPS:-3}
# On disk, not tmpfs: slots are storage.
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/fwctl-bench-install.XXXXXX")
REPO_PID="" LOOP=""
cleanup() {
  [ -n "$REPO_PID" ] && kill "$REPO_PID" 2>/dev/null && wait "$REPO_PID" 2>/dev/null || true
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time (/usr/bin/time -v measures peak RSS)"
  apt-get install -y -qq time >/dev/null
fi

echo "building fwctl, fwrepo, fwagent"
(cd "$ROOT" && go build -o "$WORK/bin/" ./cmd/fwctl ./cmd/fwrepo ./cmd/fwagent)
BIN=$WORK/bin
cd "$WORK"
export CI=1 # no progress bars

echo "creating a ${SIZE_MIB} MiB image and publishing it"
head -c $((SIZE_MIB << 20)) /dev/urandom >fw.img
"$BIN/fwctl" init ws --insecure-plaintext-keys >/dev/null
"$BIN/fwctl" -w ws target add fw.img --hardware acme-gw-v2 --version 1.0.0 --counter 1 --name firmware.img >/dev/null
"$BIN/fwctl" -w ws publish --out repo >/dev/null
"$BIN/fwrepo" serve --dir repo --addr 127.0.0.1:0 >fwrepo.out 2>fwrepo.log &
REPO_PID=$!
for _ in $(seq 200); do grep -q serving fwrepo.out 2>/dev/null && break; sleep 0.05; done
URL=$(sed -n 's/.* on \(http:[^ ]*\).*/\1/p' fwrepo.out)
[ -n "$URL" ] || { echo "fwrepo did not start:"; cat fwrepo.log; exit 1; }

LOOP_OK=0
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null; then
  truncate -s $(((SIZE_MIB + 16) << 20)) loop.img
  if LOOP=$(losetup -f --show loop.img 2>/dev/null); then LOOP_OK=1; else LOOP=""; fi
fi
[ "$LOOP_OK" = 1 ] || echo "no loop device (needs root and losetup): skipping the block-device rows"

# Warm the page cache the same way for everyone: the image and the file
# fwrepo serves are read once before any measurement.
cat fw.img repo/targets/acme-gw-v2/1.0.0/* >/dev/null

# measure NAME CMD...: run CMD under /usr/bin/time -v, append
# "NAME seconds maxrss_kib" to results.
measure() {
  local name=$1; shift
  /usr/bin/time -v -o time.out "$@" >cmd.out 2>&1 || {
    local rc=$?
    # fwagent update exits 10: installed, reboot needed.
    if [ "$rc" != 10 ]; then echo "$name failed (exit $rc):"; cat cmd.out time.out; exit 1; fi
  }
  local wall rss
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' time.out |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' time.out)
  echo "$name $wall $rss" >>results
}

# device N SLOT_B: a fresh simulated device whose slot B is SLOT_B.
device() {
  local d=dev$1
  rm -rf "$d"; mkdir "$d"
  printf 'factory image\n' >"$d/slotA.img"
  printf 'console=ttyS0 fwctl.slot=A\n' >"$d/cmdline"
  cat >"$d/config.json" <<JSON
{"repository": "$URL", "hardware": "acme-gw-v2", "state_dir": "state",
 "slots": {"A": "slotA.img", "B": "$2"},
 "bootloader": {"type": "file", "path": "bootenv", "tries": 3},
 "booted_slot": {"cmdline": "cmdline"}}
JSON
  "$BIN/fwagent" -c "$d/config.json" provision --root ws/metadata/1.root.json >/dev/null
  echo "$d/config.json"
}

OPENSSL=0
command -v openssl >/dev/null && OPENSSL=1
: >results
for i in $(seq "$REPS"); do
  echo "round $i/$REPS"
  rm -f slotfloor.img
  measure floor-file sh -c 'sha256sum fw.img >/dev/null && dd if=fw.img of=slotfloor.img bs=4M conv=fsync status=none'
  if [ "$OPENSSL" = 1 ]; then
    rm -f slotfloor.img
    measure strict-file sh -c 'openssl dgst -sha256 fw.img >/dev/null && dd if=fw.img of=slotfloor.img bs=4M conv=fsync status=none'
  fi
  cfg=$(device "f$i" slotB.img)
  measure fwagent-file "$BIN/fwagent" -c "$cfg" update
  rm -rf "devf$i"
  if [ "$LOOP_OK" = 1 ]; then
    measure floor-loop sh -c "sha256sum fw.img >/dev/null && dd if=fw.img of=$LOOP bs=4M conv=fsync status=none"
    if [ "$OPENSSL" = 1 ]; then
      measure strict-loop sh -c "openssl dgst -sha256 fw.img >/dev/null && dd if=fw.img of=$LOOP bs=4M conv=fsync status=none"
    fi
    cfg=$(device "l$i" "$LOOP")
    measure fwagent-loop "$BIN/fwagent" -c "$cfg" update
    rm -rf "devl$i"
  fi
done

echo
echo "install of a ${SIZE_MIB} MiB image, median of $REPS (goal: ≤ 1.3 × floor, ≤ 32 MiB RSS)"
awk '
  { n[$1]++; t[$1, n[$1]] = $2; r[$1, n[$1]] = $3 }
  function median(arr, name, k,   i, j, v, tmp) {
    for (i = 1; i <= k; i++) v[i] = arr[name, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
    return (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
  }
  END {
    printf "%-6s %10s %10s %7s %12s %7s %12s %10s %7s\n", "slot", "fwagent s", "floor s", "ratio", "strict s", "ratio", "fwagent RSS", "floor RSS", "goal"
    split("file loop", kinds, " ")
    for (x = 1; x <= 2; x++) {
      k = kinds[x]; a = "fwagent-" k; f = "floor-" k; st = "strict-" k
      if (!n[a]) continue
      ta = median(t, a, n[a]); tf = median(t, f, n[f])
      ra = median(r, a, n[a]) / 1024; rf = median(r, f, n[f]) / 1024
      strict = "-"; sratio = "-"
      if (n[st]) { ts = median(t, st, n[st]); strict = sprintf("%.2f", ts); sratio = sprintf("%.2fx", ta / ts) }
      ok = (ta <= 1.3 * tf && ra <= 32) ? "met" : "MISSED"
      printf "%-6s %10.2f %10.2f %6.2fx %12s %7s %8.1f MiB %6.1f MiB %7s\n", k, ta, tf, ta / tf, strict, sratio, ra, rf, ok
    }
    print "floor: sha256sum + dd bs=4M conv=fsync; strict: openssl dgst -sha256 + the same dd"
  }' results

# An offline bundle on a loop-mounted vfat stick (issue 17; scripts/bench-offline.sh).
if [ "$(id -u)" = 0 ]; then SIZE_MIB=$SIZE_MIB "$ROOT/scripts/bench-offline.sh"; else echo "bundle on a vfat stick: not measured: needs root (losetup, mount)"; fi
