#!/usr/bin/env bash
# Installs the Debian packages the tests and demo use as real components,
# only when they are missing, and says what it is doing.
set -euo pipefail

# package:command pairs; a package is installed when its command is missing.
need=(
  "bc:bc"
)
missing=()
for pair in "${need[@]}"; do
  pkg=${pair%%:*} cmd=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]} from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps: all real components present"
