# scripts/lib/service.sh: what the scripts that run a private server for
# tests (rekor.sh, s3.sh) share. Set SERVICE to the script's name, define
# build, then source this file; `service_args "$@"` parses
# "build | start STATEDIR | stop STATEDIR | env STATEDIR", runs build and
# exits for "build", and otherwise sets cmd and S (STATEDIR, absolute).

say() { [ -n "${FW_QUIET:-}" ] || echo "$SERVICE: $*" >&2; }
die() {
	echo "$SERVICE: error: $*" >&2
	exit 1
}

# modversion BINARY prints the version of the main module BINARY was built from.
modversion() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'; }

# running PID succeeds if PID is a live process that is not a zombie (one
# that exited but whose parent has not reaped it yet does not count).
running() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) && [ -n "$st" ] && [ "$st" != Z ]
}

# freeport prints a TCP port on which nothing listens.
freeport() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		ss -Htln "sport = :$p" | grep -q . || {
			echo "$p"
			return
		}
	done
	die "no free port found"
}

service_args() {
	cmd=${1:-}
	case $cmd in
	build)
		build
		exit 0
		;;
	start | stop | env) ;;
	*) die "usage: $0 build | start STATEDIR | stop STATEDIR | env STATEDIR" ;;
	esac
	[ $# -eq 2 ] || die "usage: $0 $cmd STATEDIR"
	if [ ! -d "$2" ]; then
		case $cmd in
		start) mkdir -p "$2" ;;
		stop) exit 0 ;;
		env) die "not running for $2: run $0 start $2" ;;
		esac
	fi
	S=$(cd "$2" && pwd)
}
