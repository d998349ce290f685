#!/usr/bin/env bash
# Part of make demo (issue 15): a two-wave rollout through the director.
# Called by scripts/demo.sh with its bin directory and work directory (the
# workspace ws/ and published repo/ of the main demo). Two simulated devices
# with file identities report to fwrepo serve --db --director-key; the
# rollout assigns 2.0.0 to wave 1, starts wave 2 once wave 1 confirmed.
set -euo pipefail
BIN=$1
cd "$2"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
fwrepo() { "$BIN/fwrepo" "$@"; }
export FWREPO_DB=$PWD/fleet.db
# wait_for "STATUS WAVE": wait until the rollout is there (WAVE 0-based),
# for up to a minute (a busy machine)
wait_for() {
  for _ in $(seq 600); do
    [ "$(fwrepo rollout status demo --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["wave"])')" = "$1" ] && return 0
    sleep 0.1
  done
  echo "demo: rollout never reached $1" >&2; fwrepo rollout status demo; exit 1
}

step "R1. Fleet operator: a director, and fwrepo serve with the inventory and the rollout engine"
run fwrepo director init --out rollout-director --dir repo --insecure-plaintext-keys >/dev/null
"$BIN/fwrepo" serve --dir repo --addr 127.0.0.1:0 --db "$FWREPO_DB" --director-key rollout-director/online.key --rollout-interval 1s >fleet.out 2>fleet.log &
PID=$!
for _ in $(seq 100); do grep -q serving fleet.out 2>/dev/null && break; sleep 0.05; done
URL=$(sed -n 's/.* on \(http:[^ ]*\).*/\1/p' fleet.out)

step "R2. Two devices without a TPM: a file identity (weaker), registered and tagged"
for id in gw-1 gw-2; do
  mkdir "$id"; printf 'factory image\n' >"$id/slotA.img"; printf 'fwctl.slot=A\n' >"$id/cmdline"
  cat >"$id/config.json" <<JSON
{"repository": "$URL", "hardware": "acme-gw-v2", "state_dir": "state",
 "slots": {"A": "slotA.img", "B": "slotB.img"}, "bootloader": {"type": "file", "path": "bootenv", "tries": 3},
 "booted_slot": {"cmdline": "cmdline", "param": "fwctl.slot"},
 "identity": {"key_file": "state/identity.key"}, "report": {"device_id": "$id"},
 "director": {"root": "../rollout-director/1.root.json", "device_id": "$id"}}
JSON
  "$BIN/fwagent" -c "$id/config.json" provision --root ws/metadata/1.root.json >/dev/null
  "$BIN/fwagent" -c "$id/config.json" identity --pem >"$id.pem"
  fwrepo devices add "$id" --pubkey "$id.pem" >/dev/null
  fwrepo devices tag "$id" site=berlin >/dev/null
  "$BIN/fwagent" -c "$id/config.json" report >/dev/null
done
run fwrepo devices list

step "R3. Operators need a token: none is refused (401)"
TOKEN=$(fwrepo token create --role operator alice 2>/dev/null)
printf '$ curl -X POST %s/api/v1/fleet/rollouts/demo/start\n' "$URL"
curl -s -o /dev/null -w '  HTTP %{http_code}\n' -X POST "$URL/api/v1/fleet/rollouts/demo/start"

step "R4. A two-wave rollout of 2.0.0 to site=berlin, started over the operator API"
run fwrepo rollout create --id demo --target acme-gw-v2/2.0.0/firmware.img --filter site=berlin --waves 1,1
printf '$ curl -H "Authorization: Bearer fwop_…" -X POST %s/api/v1/fleet/rollouts/demo/start\n' "$URL"
curl -sf -o /dev/null -w '  HTTP %{http_code}\n' -H "Authorization: Bearer $TOKEN" -X POST "$URL/api/v1/fleet/rollouts/demo/start"
w1=$(fwrepo rollout status demo --json | python3 -c 'import json,sys; print([d["device_id"] for d in json.load(sys.stdin)["devices"] if d["wave"]==0][0])')
w2=gw-1; [ "$w1" = gw-1 ] && w2=gw-2
echo "The wave 2 device ($w2) is not assigned yet:"
run "$BIN/fwagent" -c "$w2/config.json" update

step "R5. Wave 1 ($w1) installs, confirms and reports; wave 2 starts on that signed report"
for id in "$w1" "$w2"; do
  # The director names the release for wave 2's device only once wave 1
  # confirmed: poll until fwagent installs it (exit 10).
  n=0
  until rc=0; "$BIN/fwagent" -c "$id/config.json" update >/dev/null || rc=$?; [ "$rc" = 10 ]; do
    if [ "$rc" != 0 ] || [ $((n += 1)) -gt 150 ]; then echo "demo: $id: fwagent update exited $rc, want 10 (installed)" >&2; exit 1; fi
    sleep 0.2
  done
  "$BIN/fwagent" -c "$id/config.json" simulate-boot >/dev/null
  "$BIN/fwagent" -c "$id/config.json" confirm >/dev/null
  run "$BIN/fwagent" -c "$id/config.json" report
  if [ "$id" = "$w1" ]; then wait_for 'running 1'; run fwrepo rollout status demo; fi
done
wait_for 'completed 1'
run fwrepo rollout status demo
run fwrepo devices history "$w2"
echo "The fleet view shows the same at $URL/ui/ (log in with an operator or viewer token), each device at $URL/ui/devices/ID."
