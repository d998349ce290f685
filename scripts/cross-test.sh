#!/usr/bin/env bash
# cross-test.sh [ARCH...]: run the device agent's unit tests on the
# architectures it ships for, under qemu-user (default: arm64 riscv64; arm
# also works, slowly: ECDSA is ~25x slower there).
#
# Packages: ./agent/... and ./manifests/..., static (CGO_ENABLED=0), -short.
# Left out: tpm (needs swtpm) and the bootenv tests that run the host's
# U-Boot and GRUB tools; both run natively in 'make test'. The end-to-end run
# of the cross-compiled fwagent binary is test/cross_test.go.
#
# First run ~30-60 s per architecture (compiling the standard library for
# it), later runs a few seconds. Needs: apt-get install -y qemu-user-static
set -euo pipefail
cd "$(dirname "$0")/.."

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 riscv64)

# Tests that execute host tools (fw_printenv, fw_setenv, mkenvimage,
# grub-editenv, U-Boot under QEMU) or need block devices.
skip='GrubEditenv|GRUBSaveThenGrubEditenv|GRUBFull|FwPrintenv|FwSetenv|Mkenvimage|UBootTornWrite|UBootBlockDevice|TestExample|UBootExportMatches'

mapfile -t pkgs < <(go list ./agent/... ./manifests/... | grep -v -e '/tpm')

status=0
for arch in "${archs[@]}"; do
	case $arch in
	arm64) qemu=qemu-aarch64-static ;;
	riscv64) qemu=qemu-riscv64-static ;;
	arm) qemu=qemu-arm-static ;;
	*) echo "cross-test.sh: unknown architecture $arch (arm64, riscv64, arm)" >&2; exit 2 ;;
	esac
	if ! command -v "$qemu" >/dev/null; then
		echo "cross-test.sh: $qemu not found; apt-get install -y qemu-user-static" >&2
		exit 1
	fi
	echo "== $arch (under $qemu)"
	start=$(date +%s)
	if ! CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=7 go test -short -count=1 -exec "$qemu" -skip "$skip" "${pkgs[@]}"; then
		status=1
	fi
	echo "== $arch: $(($(date +%s) - start)) s"
done
exit $status
