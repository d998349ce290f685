#!/usr/bin/env bash
# s3.sh runs a private S3-compatible object store (versitygw with its POSIX
# backend) on 127.0.0.1 for tests, CI and demos, with fixed test
# credentials and one bucket.
#
#   scripts/s3.sh build           build the pinned versitygw into $FW_TOOLS_DIR (once)
#   scripts/s3.sh start STATEDIR  start it on a free port (objects under STATEDIR/data)
#   scripts/s3.sh env STATEDIR    print AWS_ENDPOINT_URL=... and the other variables
#   scripts/s3.sh stop STATEDIR   stop it and remove STATEDIR's data
#
# The credentials are for tests only: the server listens on loopback.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
TOOLS=${FW_TOOLS_DIR:-$HOME/.cache/fwctl-tools/bin}
ACCESS_KEY=fwctl-test
SECRET_KEY=fwctl-test-secret
BUCKET=${FW_S3_BUCKET:-fwctl-test}

SERVICE=s3.sh
# shellcheck source=lib/service.sh
. "$(dirname "$0")/lib/service.sh"

build() {
	command -v go >/dev/null || die "go is not on PATH"
	[ "$(modversion "$TOOLS/versitygw")" = "$VERSITYGW_VERSION" ] && return 0
	mkdir -p "$TOOLS"
	say "building versitygw $VERSITYGW_VERSION into $TOOLS (about 3 minutes, once)"
	(cd / && GOBIN=$TOOLS GOFLAGS=-buildvcs=false nice go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION") ||
		die "go install versitygw@$VERSITYGW_VERSION failed"
}

alive() {
	local pid
	pid=$(cat "$S/pid" 2>/dev/null) && [ -n "$pid" ] && running "$pid"
}

start() {
	if alive && [ -f "$S/env" ]; then
		say "already running ($(head -1 "$S/env"))"
		return 0
	fi
	stop 2>/dev/null || true
	[ -x "$TOOLS/versitygw" ] || build
	mkdir -p "$S/data/$BUCKET"
	local port='' attempt
	for attempt in 1 2 3; do
		port=$(freeport)
		: >"$S/versitygw.log"
		setsid env ROOT_ACCESS_KEY_ID="$ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$SECRET_KEY" \
			"$TOOLS/versitygw" --port "127.0.0.1:$port" --quiet posix "$S/data" \
			</dev/null >>"$S/versitygw.log" 2>&1 &
		echo $! >"$S/pid"
		disown
		local deadline=$((SECONDS + 20))
		# Any HTTP answer (403 without a signature) means it is serving.
		until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; do
			alive || break
			[ $SECONDS -lt $deadline ] || die "versitygw did not answer on 127.0.0.1:$port, see $S/versitygw.log"
			sleep 0.1
		done
		alive && break
		say "versitygw exited (port $port taken?), attempt $attempt: $(tail -1 "$S/versitygw.log")"
	done
	alive || die "versitygw would not start, see $S/versitygw.log"
	printf 'AWS_ENDPOINT_URL=http://127.0.0.1:%s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_REGION=us-east-1\nFW_S3_BUCKET=%s\n' \
		"$port" "$ACCESS_KEY" "$SECRET_KEY" "$BUCKET" >"$S/env"
	say "running at http://127.0.0.1:$port, bucket $BUCKET"
}

stop() {
	local pid
	if pid=$(cat "$S/pid" 2>/dev/null) && running "$pid"; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 5))
		while running "$pid"; do
			if [ $SECONDS -ge $deadline ]; then
				kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	fi
	rm -rf "$S/pid" "$S/env" "$S/data"
}

service_args "$@"
case $cmd in
start) start ;;
stop) stop ;;
env)
	alive && [ -f "$S/env" ] || die "not running for $S: run $0 start $S"
	cat "$S/env"
	;;
esac
