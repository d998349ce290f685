#!/usr/bin/env bash
# Start or stop a private PostgreSQL server for tests and development: its
# own cluster in DIR (initdb), listening on 127.0.0.1 at a free port, trust
# authentication for the superuser "fwrepo", no other state on the machine.
#
#   scripts/postgres.sh start DIR        # prints the DSN of database "fwrepo"
#   scripts/postgres.sh createdb DIR DB  # prints the DSN of a new empty database DB
#   scripts/postgres.sh dsn DIR          # prints the DSN of database "fwrepo" again
#   scripts/postgres.sh stop DIR         # fast shutdown, then removes DIR
#
# DIR must not exist or be empty; it belongs to one server. PostgreSQL
# refuses to run as root, so as root the cluster runs as the "postgres"
# system user (created by Debian's postgresql package), which then owns DIR.
# Exit 3: PostgreSQL is not installed (apt-get install -y postgresql).
set -euo pipefail

usage() {
	echo "usage: $0 start DIR | createdb DIR DB | dsn DIR | stop DIR" >&2
	exit 2
}
die() {
	echo "postgres.sh: $*" >&2
	exit 1
}

# bindir: the newest installed PostgreSQL's programs (Debian keeps them off
# PATH in /usr/lib/postgresql/VERSION/bin).
bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		echo "$d"
	elif command -v initdb >/dev/null; then
		dirname "$(command -v initdb)"
	else
		echo "postgres.sh: PostgreSQL not found (no initdb); apt-get install -y postgresql" >&2
		exit 3
	fi
}

# as CMD...: run CMD as the cluster's owner.
as() {
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (apt-get install -y postgresql)"
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

dsn() { echo "postgres://fwrepo@127.0.0.1:$(cat "$1/port")/$2?sslmode=disable"; }

[ $# -ge 2 ] || usage
cmd=$1 dir=$2
case $cmd in
start)
	[ $# -eq 2 ] || usage
	bin=$(bindir)
	mkdir -p "$dir"
	[ -z "$(ls -A "$dir")" ] || die "$dir is not empty; give a new directory (one per server)"
	dir=$(cd "$dir" && pwd)
	[ "$(id -u)" != 0 ] || chown postgres: "$dir"
	chmod 700 "$dir"
	as "$bin/initdb" -D "$dir/data" -U fwrepo --auth=trust --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
		die "initdb failed (is $dir reachable by user $(as id -un)? a parent directory with mode 0700 is not); see $dir/initdb.log"
	# Another process may take the port between our choice and the bind:
	# try a few random ports.
	for _ in 1 2 3 4 5 6 7 8; do
		port=$((20000 + RANDOM % 40000))
		if as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
			-o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c fsync=off -c max_connections=100" \
			>/dev/null 2>&1; then
			echo "$port" >"$dir/port"
			break
		fi
		as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
	done
	[ -f "$dir/port" ] || die "PostgreSQL did not start on 127.0.0.1; see $dir/server.log"
	as "$bin/createdb" -h 127.0.0.1 -p "$port" -U fwrepo fwrepo || die "createdb fwrepo failed; see $dir/server.log"
	dsn "$dir" fwrepo
	;;
createdb)
	[ $# -eq 3 ] || usage
	[ -f "$dir/port" ] || die "no server started in $dir; run '$0 start $dir' first"
	as "$(bindir)/createdb" -h 127.0.0.1 -p "$(cat "$dir/port")" -U fwrepo "$3" || die "createdb $3 failed; see $dir/server.log"
	dsn "$dir" "$3"
	;;
dsn)
	[ $# -eq 2 ] || usage
	[ -f "$dir/port" ] || die "no server started in $dir"
	dsn "$dir" fwrepo
	;;
stop)
	[ $# -eq 2 ] || usage
	[ -d "$dir" ] || exit 0
	if [ -f "$dir/data/postmaster.pid" ]; then
		as "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null ||
			as "$(bindir)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null || true
	fi
	rm -rf "$dir"
	;;
*) usage ;;
esac
