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
# Time: emulated code runs 5-30x slower (armv7 most: no assembly for
# P-256, 32-bit emulation), so the packages run with -short, which drops
# the slow repetitions only (delta's 32 MiB memory bound, U-Boot booted
# under qemu-system: both also run natively in 'go test ./...'); the 32-bit
# tests of agent/slot and agent/bootenv (offsets and lengths above 4 GiB on
# a sparse 5 GiB file) run either way. FW_CROSS_FULL=1 runs everything.
# The end-to-end update of the cross-compiled fwagent on each architecture is
# test/cross_test.go.
#
# The tests build with the default flags, not build-agent.sh's: sharing them
# would save the standard-library compile per architecture that
# TestCrossAgent's release build already did, but without inlining the
# emulated tests ran 2-3x slower (measured: agent/tufclient and delta under
# qemu-arm 117 s -> 167 s and 64 s -> 207 s), a net loss.
#
# First run ~1-2 min per architecture more (compiling the standard library
# for it); warm, 1-5 min each on a busy machine (README: Cross-compilation).
# Needs: apt-get install -y qemu-user-static
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
	go test $short -count=1 -exec "$qemu" "${pkgs[@]}" || status=1
	echo "== $arch: $(($(date +%s) - start)) s"
done
unset CGO_ENABLED GOOS GOARCH GOARM FW_EMULATOR
exit $status
