#!/usr/bin/env bash
# build-agent.sh GOARCH OUT [GOARM]: the release build of fwagent — static,
# stripped, HTTP/1.1 only, and without inlining outside crypto and our own
# code (the agent is I/O bound; this keeps it inside its 8 MiB budget).
# make cross and the size test both use it, so they measure the same binary.
set -euo pipefail
arch=$1 out=$2 arm=${3:-7}
cd "$(dirname "$0")/.."
CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOARM="$arm" go build -trimpath \
  -tags nethttpomithttp2 \
  -gcflags=all=-l -gcflags=crypto/...= -gcflags=github.com/fwctl/fwctl/...= -gcflags=github.com/klauspost/compress/...= \
  -ldflags "-s -w" -o "$out" ./cmd/fwagent
