#!/bin/sh
# Start or stop a software TPM 2.0 (swtpm) for development and CI.
#
#   scripts/swtpm.sh start DIR PORT   # TPM commands on 127.0.0.1:PORT, control on PORT+1
#   scripts/swtpm.sh stop  DIR PORT   # graceful shutdown, SIGKILL after 5 s
#
# DIR holds the TPM state (NV indexes, keys) and survives stop/start: reuse it
# to simulate a reboot, delete it for a factory-new TPM. One DIR belongs to one
# swtpm at a time. Then: fwagent --tpm tcp://127.0.0.1:PORT ...
# Needs: apt-get install -y swtpm swtpm-tools
set -eu

usage() {
	echo "usage: $0 start|stop DIR PORT" >&2
	exit 2
}

[ $# -eq 3 ] || usage
cmd=$1 dir=$2 port=$3
case $port in
'' | *[!0-9]*) echo "swtpm.sh: PORT must be a number, got '$port'" >&2; exit 2 ;;
esac
ctrl=$((port + 1))
pidfile=$dir/swtpm.pid

# alive PID: true while PID runs (a zombie awaiting its reaper counts as gone).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
	[ "$state" != Z ]
}

# ready: true once swtpm answers on its control channel.
ready() {
	swtpm_ioctl --tcp "127.0.0.1:$ctrl" -c >/dev/null 2>&1
}

case $cmd in
start)
	command -v swtpm >/dev/null || { echo "swtpm.sh: swtpm not found; apt-get install -y swtpm swtpm-tools" >&2; exit 1; }
	mkdir -p "$dir"
	if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
		echo "swtpm.sh: swtpm already running for $dir (pid $(cat "$pidfile"))" >&2
		exit 1
	fi
	# No PowerOn needed or wanted: not-need-init,startup-clear leaves the TPM
	# started (see /work/shared/HARDWARE.md).
	swtpm socket --tpm2 \
		--server "type=tcp,port=$port,bindaddr=127.0.0.1" \
		--ctrl "type=tcp,port=$ctrl,bindaddr=127.0.0.1" \
		--tpmstate "dir=$dir" \
		--flags not-need-init,startup-clear \
		--log "file=$dir/swtpm.log" \
		--daemon --pid "file=$pidfile"
	i=0
	until ready; do
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			echo "swtpm.sh: swtpm not ready on 127.0.0.1:$port after 10 s; see $dir/swtpm.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "swtpm running: tcp://127.0.0.1:$port (state $dir, pid $(cat "$pidfile"))"
	;;
stop)
	pid=
	[ -f "$pidfile" ] && pid=$(cat "$pidfile")
	swtpm_ioctl --tcp "127.0.0.1:$ctrl" -s 2>/dev/null || true
	if [ -n "$pid" ]; then
		i=0
		while alive "$pid"; do
			i=$((i + 1))
			if [ $i -ge 50 ]; then
				echo "swtpm.sh: swtpm (pid $pid) did not stop; killing it" >&2
				kill -9 "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	fi
	rm -f "$pidfile"
	echo "swtpm stopped (state kept in $dir)"
	;;
*)
	usage
	;;
esac
