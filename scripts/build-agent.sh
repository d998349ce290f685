#!/usr/bin/env bash
# build-agent.sh GOARCH OUT [GOARM]: the release build of fwagent — static,
# stripped, HTTP/1.1 only, and without inlining outside the crypto cores,
# zstd and the delta decoder (the agent is I/O bound; this keeps it inside
# its budget of 7,000,000 bytes on every architecture, test/cross_test.go).
# make cross and the size test both use it, so they measure the same binary.
# $FWAGENT_LDFLAGS adds linker flags (make deb-agents stamps the version).
set -euo pipefail
arch=$1 out=$2 arm=${3:-7}
cd "$(dirname "$0")/.."
CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOARM="$arm" go build -trimpath \
  -tags nethttpomithttp2 \
  -gcflags=all=-l -gcflags=crypto/internal/...= -gcflags=crypto/sha256= \
  -gcflags=github.com/klauspost/compress/...= -gcflags=github.com/fwctl/fwctl/delta= \
  -ldflags "-s -w ${FWAGENT_LDFLAGS:-}" -o "$out" ./cmd/fwagent
