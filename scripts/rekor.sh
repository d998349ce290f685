#!/usr/bin/env bash
# rekor.sh runs a private Rekor v1 transparency log (MariaDB + Trillian +
# rekor-server) for tests, CI and demos.
#
#   scripts/rekor.sh build           build the pinned binaries into $FW_TOOLS_DIR (once)
#   scripts/rekor.sh start STATEDIR  start the log (fresh, or with STATEDIR's data)
#   scripts/rekor.sh env STATEDIR    print REKOR_URL=... and REKOR_PUBKEY=...
#   scripts/rekor.sh stop STATEDIR   stop everything started for STATEDIR
#
# Every server runs inside a private network namespace that has only a
# loopback interface, because rekor-server v1 always listens on *:2112 for
# metrics. A socat in the host namespace forwards 127.0.0.1:$REKOR_PORT (a
# free port unless REKOR_PORT is set) to rekor-server inside it, entering
# the namespace with nsenter for each connection. Needs root (unshare,
# nsenter); installs mariadb-server and socat from Debian when missing.
set -euo pipefail

REKOR_VERSION=v1.5.4
TRILLIAN_VERSION=v1.7.2
TOOLS=${FW_TOOLS_DIR:-$HOME/.cache/fwctl-tools/bin}
ORIGIN_HOST=rekor.fwctl.local

SERVICE=rekor.sh
# shellcheck source=lib/service.sh
. "$(dirname "$0")/lib/service.sh"

build() {
	command -v go >/dev/null || die "go is not on PATH"
	mkdir -p "$TOOLS"
	local need=()
	for b in trillian_log_server trillian_log_signer createtree; do
		[ "$(modversion "$TOOLS/$b")" = "$TRILLIAN_VERSION" ] || need+=("github.com/google/trillian/cmd/$b@$TRILLIAN_VERSION")
	done
	for b in rekor-server rekor-cli; do
		[ "$(modversion "$TOOLS/$b")" = "$REKOR_VERSION" ] || need+=("github.com/sigstore/rekor/cmd/$b@$REKOR_VERSION")
	done
	[ ${#need[@]} -eq 0 ] && return 0
	say "building ${need[*]} into $TOOLS (a few minutes, once)"
	# One go install per module: go install rejects mixing modules.
	local trillian=() rekor=()
	for p in "${need[@]}"; do
		case $p in github.com/google/trillian/*) trillian+=("$p") ;; *) rekor+=("$p") ;; esac
	done
	(
		cd /
		export GOBIN=$TOOLS GOFLAGS=-buildvcs=false
		[ ${#trillian[@]} -eq 0 ] || nice go install "${trillian[@]}"
		[ ${#rekor[@]} -eq 0 ] || nice go install "${rekor[@]}"
	) || die "go install failed"
}

packages() {
	local missing=()
	[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || missing+=(mariadb-server)
	command -v socat >/dev/null || missing+=(socat)
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]} from Debian"
	[ "$(id -u)" = 0 ] || die "need root to install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# alive NAME succeeds if the process recorded as NAME runs.
alive() {
	local pid
	pid=$(cat "$S/run/$1.pid" 2>/dev/null) && [ -n "$pid" ] && running "$pid"
}

# spawn NAME CMD... starts CMD inside the namespace in its own session, with
# its output in $S/log/NAME.log, and records its PID.
spawn() {
	local name=$1
	shift
	setsid nsenter --net="$NS" -- "$@" </dev/null >>"$S/log/$name.log" 2>&1 &
	echo $! >"$S/run/$name.pid"
	disown
}

# retry SECONDS CMD... runs CMD every 0.2 s until it succeeds.
retry() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}

# ns_ready succeeds once $NS is a network namespace other than ours.
ns_ready() { [ "$(readlink "$NS")" != "$(readlink /proc/self/ns/net)" ]; }

sql() { mariadb --no-defaults --socket="$SOCK" -u root "$@"; }

stop_on_failure() {
	local rc=$?
	[ $rc -eq 0 ] || stop_all
	exit $rc
}

start() {
	if alive rekor && alive socat && [ -f "$S/env" ]; then
		say "already running ($(head -1 "$S/env"))"
		return 0
	fi
	stop_all 2>/dev/null || true
	[ "$(id -u)" = 0 ] || die "must run as root (network namespace)"
	# Leave nothing running when a step fails; the logs stay.
	trap stop_on_failure EXIT
	build
	packages
	mkdir -p "$S/run" "$S/log"
	: >"$S/log/start.log"

	# The namespace lives as long as this holder process.
	setsid unshare -n sleep infinity </dev/null >/dev/null 2>&1 &
	echo $! >"$S/run/netns.pid"
	disown
	NS=/proc/$(cat "$S/run/netns.pid")/ns/net
	retry 5 ns_ready || die "unshare -n failed"
	nsenter --net="$NS" -- ip link set lo up

	# tree_id is written last when setting up the database: without it,
	# start over rather than trust a half-done one.
	local fresh=
	if [ ! -s "$S/tree_id" ]; then
		fresh=1
		rm -rf "$S/mysql"
		mariadb-install-db --no-defaults --datadir="$S/mysql" --user=root --auth-root-authentication-method=socket \
			>>"$S/log/start.log" 2>&1 || die "mariadb-install-db failed, see $S/log/start.log"
	fi
	spawn mariadb mariadbd --no-defaults --datadir="$S/mysql" --user=root --bind-address=127.0.0.1 --port=3306 \
		--socket="$SOCK" --pid-file="$S/run/mariadbd.pid" --skip-log-bin --innodb-buffer-pool-size=32M
	retry 30 sql -e 'SELECT 1' || die "MariaDB did not start, see $S/log/mariadb.log"
	if [ -n "$fresh" ]; then
		local schema
		schema=$(cd / && go env GOMODCACHE)/github.com/google/trillian@$TRILLIAN_VERSION/storage/mysql/schema/storage.sql
		[ -f "$schema" ] || die "Trillian schema $schema missing: run $0 build"
		sql <<-EOF || die "database setup failed"
			CREATE DATABASE trillian; CREATE DATABASE rekor;
			CREATE USER 'trillian'@'127.0.0.1' IDENTIFIED BY 'trillian';
			GRANT ALL ON trillian.* TO 'trillian'@'127.0.0.1';
			GRANT ALL ON rekor.* TO 'trillian'@'127.0.0.1';
		EOF
		sql trillian <"$schema" || die "loading $schema failed"
	fi

	local dsn='trillian:trillian@tcp(127.0.0.1:3306)'
	spawn tlserver "$TOOLS/trillian_log_server" --storage_system=mysql --mysql_uri="$dsn/trillian" \
		--rpc_endpoint=127.0.0.1:8090 --http_endpoint=127.0.0.1:8091 --alsologtostderr
	spawn tlsigner "$TOOLS/trillian_log_signer" --storage_system=mysql --mysql_uri="$dsn/trillian" \
		--rpc_endpoint=127.0.0.1:8190 --http_endpoint=127.0.0.1:8191 --force_master --sequencer_interval=50ms \
		--alsologtostderr
	if [ -n "$fresh" ]; then
		local id='' deadline=$((SECONDS + 30))
		until id=$(nsenter --net="$NS" -- "$TOOLS/createtree" --admin_server=127.0.0.1:8090 --display_name=fwctl \
			2>>"$S/log/start.log"); do
			[ $SECONDS -lt $deadline ] || die "createtree failed, see $S/log/start.log and $S/log/tlserver.log"
			sleep 0.3
		done
		echo "$id" >"$S/tree_id"
	fi
	[ -s "$S/tree_id" ] || die "no tree ID"

	# The log's signing key: stable across restarts, never overwritten.
	if [ ! -s "$S/signer.pem" ]; then
		(umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$S/signer.pem") 2>>"$S/log/start.log" ||
			die "openssl could not create $S/signer.pem"
	fi
	openssl ec -in "$S/signer.pem" -pubout -out "$S/rekor.pub" 2>>"$S/log/start.log" ||
		die "openssl could not read $S/signer.pem"
	spawn rekor "$TOOLS/rekor-server" serve --log_type=prod \
		--rekor_server.address=127.0.0.1 --port=3000 --rekor_server.hostname="$ORIGIN_HOST" \
		--rekor_server.signer="$S/signer.pem" \
		--trillian_log_server.address=127.0.0.1 --trillian_log_server.port=8090 \
		--trillian_log_server.tlog_id="$(cat "$S/tree_id")" \
		--search_index.storage_provider=mysql --search_index.mysql.dsn="$dsn/rekor" \
		--enable_attestation_storage=false

	# Keep the port of the previous run when it is free, so REKOR_URL is stable.
	local port=${REKOR_PORT:-}
	if [ -z "$port" ] && [ -s "$S/port" ] && ! ss -Htln "sport = :$(cat "$S/port")" | grep -q .; then
		port=$(cat "$S/port")
	fi
	port=${port:-$(freeport)}
	echo "$port" >"$S/port"
	setsid socat TCP-LISTEN:"$port",bind=127.0.0.1,reuseaddr,fork \
		EXEC:"nsenter --net=$NS -- socat STDIO TCP\:127.0.0.1\:3000" </dev/null >>"$S/log/socat.log" 2>&1 &
	echo $! >"$S/run/socat.pid"
	disown
	local deadline=$((SECONDS + 60))
	until curl -fsS --max-time 2 "http://127.0.0.1:$port/api/v1/log/publicKey" >/dev/null 2>&1; do
		alive rekor || die "rekor-server exited, see $S/log/rekor.log"
		alive socat || die "socat could not listen on 127.0.0.1:$port, see $S/log/socat.log"
		[ $SECONDS -lt $deadline ] || die "rekor-server did not answer on 127.0.0.1:$port, see $S/log/rekor.log"
		sleep 0.2
	done
	printf 'REKOR_URL=http://127.0.0.1:%s\nREKOR_PUBKEY=%s\n' "$port" "$S/rekor.pub" >"$S/env"
	say "running at http://127.0.0.1:$port (tree $(cat "$S/tree_id"))"
}

# stop_one NAME SECONDS sends SIGTERM, then SIGKILL after SECONDS.
stop_one() {
	local pid
	pid=$(cat "$S/run/$1.pid" 2>/dev/null) || return 0
	rm -f "$S/run/$1.pid"
	running "$pid" || return 0
	# Each server leads its own process group (setsid): this also ends
	# socat's per-connection children.
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + $2))
	while running "$pid"; do
		if [ $SECONDS -ge $deadline ]; then
			[ "$1" = tlsigner ] || [ "$1" = tlserver ] || say "$1 (pid $pid) ignored SIGTERM, killing it"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
}

stop_all() {
	[ -d "$S/run" ] || return 0
	stop_one socat 2
	stop_one rekor 5
	# Trillian keeps its state in MariaDB transactions, and both servers
	# often ignore SIGTERM: do not wait long before SIGKILL.
	stop_one tlsigner 1
	stop_one tlserver 1
	stop_one mariadb 30
	stop_one netns 2
	rm -f "$S/env"
}

service_args "$@"
# A Unix socket path must fit in 108 bytes.
SOCK=$S/run/mysql.sock
[ ${#SOCK} -lt 100 ] || SOCK=/tmp/fwrekor-$(printf %s "$S" | sha256sum | cut -c1-16).sock
NS=

case $cmd in
start) start ;;
stop) stop_all ;;
env)
	if ! alive rekor || [ ! -f "$S/env" ]; then
		die "not running for $S: run $0 start $S"
	fi
	cat "$S/env"
	;;
esac
