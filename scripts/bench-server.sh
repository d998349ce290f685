#!/usr/bin/env bash
# make bench-server: fwrepo against nginx on the same published repository,
# in one run on this machine. Each server is pinned to core 0 (fwrepo with
# GOMAXPROCS=1, nginx with one worker), the load generator (wrk -t1) to
# core 1, and the two servers are run alternately, ROUNDS times each; the
# best round of each is reported with the ratio fwrepo/nginx:
#
#   1. requests/s for metadata/timestamp.json   (goal: >= 0.8x nginx)
#   2. throughput for a 64 MiB image            (goal: >= 0.9x nginx)
#   3. peak RSS under 200 concurrent requests for a 16 MiB targets.json
#      (goal: fwrepo <= 100 MiB; nginx's is shown for scale)
#
# Both servers log one line per request to a file (nginx's access_log,
# fwrepo's access log), and both use sendfile. The repository is published
# with bin/fwctl (built here); the 16 MiB targets.json is a file of that
# size under a versioned targets name (the server does not parse metadata).
#
# Environment: DURATION (10s), CONNS (64), ROUNDS (2), KEEP=1 keeps the
# work directory. nginx-light, wrk and GNU time are installed from Debian
# when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/fwctl-bench-server.XXXXXX")
PID=""
cleanup() {
  stop_server
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

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian"
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${missing[@]}" >/dev/null ||
    { apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null && apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${missing[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (server on core 0, wrk on core 1)"; exit 1; }

echo "building fwctl and fwrepo"
(cd "$ROOT" && go build -o "$WORK/bin/" ./cmd/fwctl ./cmd/fwrepo)
BIN=$WORK/bin
chmod 755 "$WORK" # nginx's workers run as www-data
cd "$WORK"
export CI=1

echo "publishing a 64 MiB image with fwctl"
head -c $((64 << 20)) /dev/urandom >fw.img
"$BIN/fwctl" init ws --insecure-plaintext-keys >/dev/null
"$BIN/fwctl" -w ws target add fw.img --hardware acme-gw-v2 --version 1.0.0 --counter 1 --name firmware.img >/dev/null
"$BIN/fwctl" -w ws publish --out repo >/dev/null
IMAGE=$(cd repo && find targets -type f -name '*.firmware.img' | head -1)
[ -n "$IMAGE" ] || { echo "no published image under repo/targets"; exit 1; }
# 16 MiB of JSON under a targets metadata name.
python3 -c 'import sys; n=16<<20; body="{\"signed\":{\"pad\":\"" + "x"*(n-len("{\"signed\":{\"pad\":\"\"}}")) + "\"}}"; sys.stdout.write(body)' >repo/metadata/999.targets.json
BIG=metadata/999.targets.json
TS=metadata/timestamp.json
echo "timestamp.json: $(stat -c %s repo/$TS) bytes; image: $(stat -c %s "repo/$IMAGE") bytes; $BIG: $(stat -c %s repo/$BIG) bytes"

PORT=18090
cat >nginx.conf <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log $WORK/nginx-access.log;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT;
    root $WORK/repo;
    location / { }
  }
}
EOF

start_fwrepo() {
  GOMAXPROCS=1 taskset -c 0 "$BIN/fwrepo" serve --dir repo --addr 127.0.0.1:$PORT --revalidate 1s >fwrepo.out 2>>fwrepo.log &
  PID=$!
  wait_port
}
start_nginx() {
  taskset -c 0 "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" 2>>nginx-error.log &
  PID=$!
  wait_port
}
wait_port() {
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/$TS" && return 0
    sleep 0.05
  done
  echo "server did not start"; tail -5 fwrepo.log nginx-error.log 2>/dev/null; exit 1
}

# wrk prints "Requests/sec: N" and "Transfer/sec: N.NNMB".
run_wrk() { # conns path
  local out
  out=$(taskset -c 1 wrk -t1 -c"$1" -d"$DURATION" "http://127.0.0.1:$PORT/$2" 2>&1)
  echo "$out"
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "error responses for $2:" >&2; echo "$out" >&2; exit 1
  fi
}
reqs() { awk '/^Requests\/sec:/ {print $2}'; }
mbps() {
  awk '/^Transfer\/sec:/ {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v);
    m = (u=="GB") ? 1024 : (u=="MB") ? 1 : (u=="KB") ? 1/1024 : 1/1048576; printf "%.1f\n", v*m}'
}
# Peak RSS (VmHWM) of a process and its children, in MiB.
peak_rss() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo $((total / 1024))
}
best() { sort -g | tail -1; }

declare -A R
for round in $(seq "$ROUNDS"); do
  for srv in fwrepo nginx; do
    echo "round $round: $srv"
    "start_$srv"
    run_wrk "$CONNS" "$TS" >"wrk-$srv-ts-$round.txt"
    run_wrk "$CONNS" "$IMAGE" >"wrk-$srv-img-$round.txt"
    stop_server
    # A fresh process for the RSS figure: its peak is this load's alone.
    "start_$srv"
    run_wrk 200 "$BIG" >"wrk-$srv-big-$round.txt"
    peak_rss "$PID" >"rss-$srv-$round.txt"
    stop_server
  done
done
for srv in fwrepo nginx; do
  R[$srv.ts]=$(cat wrk-$srv-ts-*.txt | reqs | best)
  R[$srv.img]=$(for f in wrk-$srv-img-*.txt; do mbps <"$f"; done | best)
  R[$srv.rss]=$(cat rss-$srv-*.txt | best)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "fwrepo vs nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), each on core 0, wrk -t1 on core 1, best of $ROUNDS rounds, $DURATION each"
printf '%-44s %12s %12s %8s  %s\n' "" fwrepo nginx ratio goal
printf '%-44s %12.0f %12.0f %8s  %s\n' "timestamp.json, requests/s (c=$CONNS)" "${R[fwrepo.ts]}" "${R[nginx.ts]}" "$(ratio "${R[fwrepo.ts]}" "${R[nginx.ts]}")" ">= 0.80"
printf '%-44s %12.1f %12.1f %8s  %s\n' "64 MiB image, MB/s (c=$CONNS)" "${R[fwrepo.img]}" "${R[nginx.img]}" "$(ratio "${R[fwrepo.img]}" "${R[nginx.img]}")" ">= 0.90"
printf '%-44s %12d %12d %8s  %s\n' "16 MiB targets.json x200, peak RSS MiB" "${R[fwrepo.rss]}" "${R[nginx.rss]}" "$(ratio "${R[fwrepo.rss]}" "${R[nginx.rss]}")" "fwrepo <= 100"
