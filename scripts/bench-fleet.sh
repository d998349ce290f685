#!/usr/bin/env bash
# make bench-fleet: fwrepo's fleet side at 10,000 devices, on the embedded
# SQLite and on PostgreSQL. fwrepo serve (with the director and the
# operator API) is pinned to core 0 with GOMAXPROCS=1; the load generator
# (tools/benchfleet, bounded: at most INFLIGHT polls in flight) to core 1,
# on 127.0.0.1. For each database it prints:
#
#   - the time to start a wave of all DEVICES devices (their director
#     metadata signed and published) through the operator API (goal <= 10 s)
#   - p50/p99 per poll, every device polling every POLL (goal p99 <= 50 ms),
#     with signed reports on top
#   - requests and bytes per no-update poll (goal <= 2 requests, <= 4 KB)
#   - fwrepo's CPU time for the wave and per poll, the machine's load, and
#     the director's publish phases (sign, write_files, syncs, renames)
#
# Environment: DEVICES (10000), POLL (60s), DURATION (60s), BACKENDS
# ("sqlite postgres"), KEEP=1 keeps the work directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEVICES=${DEVICES:-10000}
POLL=${POLL:-60s}
DURATION=${DURATION:-60s}
BACKENDS=${BACKENDS:-sqlite postgres}
INFLIGHT=${INFLIGHT:-512}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/fwctl-bench-fleet.XXXXXX")
PID=""
PGDIR=""
cleanup() {
  stop_server
  [ -n "$PGDIR" ] && "$ROOT/scripts/postgres.sh" stop "$PGDIR" >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
stop_server() {
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
  fi
}
trap cleanup EXIT
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (fwrepo on core 0, the load generator on core 1)"; exit 1; }

echo "building fwctl, fwrepo and tools/benchfleet"
(cd "$ROOT" && go build -o "$WORK/bin/" ./cmd/fwctl ./cmd/fwrepo ./tools/benchfleet)
BIN=$WORK/bin
chmod 755 "$WORK" # PostgreSQL runs as the postgres user when we are root
cd "$WORK"
export CI=1

echo "publishing a release and creating a director"
head -c $((1 << 20)) /dev/urandom >fw.img
"$BIN/fwctl" init ws --insecure-plaintext-keys >/dev/null
"$BIN/fwctl" -w ws target add fw.img --hardware acme-gw-v2 --version 2.0.0 --counter 2 --name firmware.img >/dev/null
"$BIN/fwctl" -w ws publish --out repo >/dev/null
TARGET=$("$BIN/fwctl" -w ws target list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); t=d["targets"] if isinstance(d,dict) else d; print([x["path"] for x in t if x["path"].endswith("firmware.img")][0])')
"$BIN/fwrepo" director init --out dkeys --dir repo --insecure-plaintext-keys >/dev/null

PORT=18190
for backend in $BACKENDS; do
  case $backend in
    sqlite) DSN=$WORK/fleet.db ;;
    postgres)
      PGDIR=$WORK/pg
      DSN=$("$ROOT/scripts/postgres.sh" start "$PGDIR") || { echo "PostgreSQL is not available; skipping"; PGDIR=""; continue; } ;;
    *) echo "unknown backend $backend"; exit 2 ;;
  esac
  # Each backend gets its own copy of the store, and nothing is deleted
  # until the end: ext4 without a journal skips every inode freed in the
  # last 60-300 s (one buffer lookup each) on every inode it allocates, so
  # the previous backend's 50,000 files and directories removed just before
  # made the second wave 3x slower (most of it in the kernel). For the same
  # reason a run within 5 minutes of another one (or of any big rm -rf on
  # the file system) shows slower waves.
  STORE=store-$backend
  cp -a repo "$STORE"
  echo
  echo "== $backend: registering $DEVICES devices"
  TOKEN=$(taskset -c 1 "$BIN/benchfleet" setup -db "$DSN" -devices "$DEVICES" -keys keys.txt)
  GOMAXPROCS=1 taskset -c 0 "$BIN/fwrepo" serve --dir "$STORE" --db "$DSN" --director-key dkeys/online.key \
    --addr 127.0.0.1:$PORT --access-log=false --rollout-interval 1m >serve.out 2>serve-$backend.log &
  PID=$!
  for _ in $(seq 200); do grep -q serving serve.out 2>/dev/null && break; sleep 0.05; done
  grep -q serving serve.out || { cat serve-$backend.log; exit 1; }
  taskset -c 1 "$BIN/benchfleet" run -url "http://127.0.0.1:$PORT" -keys keys.txt -token "$TOKEN" -target "$TARGET" \
    -poll "$POLL" -duration "$DURATION" -inflight "$INFLIGHT" -label "[$backend]" -server-pid "$PID"
  # The director's own account of the wave: signing, then each write phase.
  sed -n "s/.*msg=\"director published\" \(.*\)/[$backend] director publish: \1/p" serve-$backend.log
  stop_server
  PORT=$((PORT + 1))
  if [ "$backend" = postgres ]; then "$ROOT/scripts/postgres.sh" stop "$PGDIR" >/dev/null; PGDIR=""; fi
done
