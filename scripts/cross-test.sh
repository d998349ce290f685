#!/usr/bin/env bash
# cross-test.sh [ARCH...]: run the tests of every package fwagent links on
# the architectures it ships for, under qemu-user (default: arm arm64
# riscv64; arm means GOARM=7, the one 32-bit target). amd64 is the host and
# runs them natively in 'go test ./...'.
#
# Packages: this module's packages in 'go list -deps ./cmd/fwagent' for the
# target (agent/..., delta, manifests, tlog, tpm, the agent's CLI and
# leaves), static (CGO_ENABLED=0), with the real components: tpm runs
# against swtpm and agent/bootenv against fw_printenv, fw_setenv,
# mkenvimage, grub-editenv and U-Boot under qemu-system (the tools are host
# binaries; an emulated test starts them like any program). Nothing is left
# out by name: a test that cannot run under emulation skips itself, saying
# why, when FW_EMULATOR (set here to the emulator's name) is set.
#
# Slow parts: ECDSA and the delta codec are 10-30x slower under qemu, so
# packages run with -short except agent/slot and agent/bootenv on arm (their
# 32-bit tests at offsets above 4 GiB). -short drops only repetitions and
# size sweeps; every test body still runs once (see each package's
# testing.Short uses). Set FW_CROSS_FULL=1 to run everything without -short.
# The end-to-end update of the cross-compiled fwagent on each architecture is
# test/cross_test.go.
#
# First run ~1-2 min per architecture (compiling the standard library for
# it), later runs well under a minute each. Needs: apt-get install -y
# qemu-user-static
set -euo pipefail
cd "$(dirname "$0")/.."

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm arm64 riscv64)

short=-short
[ "${FW_CROSS_FULL:-}" != 1 ] || short=

status=0
for arch in "${archs[@]}"; do
	case $arch in
	arm) qemu=qemu-arm-static ;;
	arm64) qemu=qemu-aarch64-static ;;
	riscv64) qemu=qemu-riscv64-static ;;
	*) echo "cross-test.sh: unknown architecture $arch (arm, arm64, riscv64)" >&2; exit 2 ;;
	esac
	if ! command -v "$qemu" >/dev/null; then
		echo "cross-test.sh: $qemu not found; apt-get install -y qemu-user-static" >&2
		exit 1
	fi
	export CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=7 FW_EMULATOR=$qemu
	mapfile -t pkgs < <(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./cmd/fwagent | grep '^github.com/fwctl/fwctl/')
	echo "== $arch (under $qemu): ${#pkgs[@]} packages"
	start=$(date +%s)
	if [ "$arch" = arm ]; then
		# The 32-bit offset tests run in full, the rest with $short.
		full=(./agent/slot ./agent/bootenv)
		mapfile -t rest < <(printf '%s\n' "${pkgs[@]}" | grep -v -x -e github.com/fwctl/fwctl/agent/slot -e github.com/fwctl/fwctl/agent/bootenv)
		go test -count=1 -exec "$qemu" "${full[@]}" || status=1
		go test $short -count=1 -exec "$qemu" "${rest[@]}" || status=1
	else
		go test $short -count=1 -exec "$qemu" "${pkgs[@]}" || status=1
	fi
	echo "== $arch: $(($(date +%s) - start)) s"
done
unset CGO_ENABLED GOOS GOARCH GOARM FW_EMULATOR
exit $status
