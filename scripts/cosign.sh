#!/usr/bin/env bash
# cosign.sh builds the pinned cosign CLI into $FW_TOOLS_DIR (default
# ~/.cache/fwctl-tools/bin) once, and prints its path. Tests and users run
# it to check fwctl's bundles with the real `cosign verify-blob`.
set -euo pipefail

COSIGN_VERSION=v2.6.5
TOOLS=${FW_TOOLS_DIR:-$HOME/.cache/fwctl-tools/bin}

bin=$TOOLS/cosign
if [ "$(go version -m "$bin" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')" != "$COSIGN_VERSION" ]; then
	command -v go >/dev/null || { echo "cosign.sh: error: go is not on PATH" >&2; exit 1; }
	mkdir -p "$TOOLS"
	[ -n "${FW_QUIET:-}" ] || echo "cosign.sh: building cosign $COSIGN_VERSION into $TOOLS (a few minutes, once)" >&2
	(cd / && GOBIN=$TOOLS GOFLAGS=-buildvcs=false nice go install "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION") ||
		{ echo "cosign.sh: error: go install cosign@$COSIGN_VERSION failed" >&2; exit 1; }
fi
echo "$bin"
