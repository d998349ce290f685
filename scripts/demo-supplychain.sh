#!/usr/bin/env bash
# demo-supplychain.sh: the supply-chain part of make demo (scripts/demo.sh
# calls it). A release carries its SBOM (bound by hash in custom.fw.sbom), a
# security-support date, and in-toto attestations (the SBOM, SLSA
# provenance) signed with the release key; logged in Rekor when the demo
# has one (FW_DEMO_REKOR=1).
#
# Usage: demo-supplychain.sh BIN DIR [REKOR_URL]   (FWCTL_PASSPHRASE set)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$1 DIR=$2 REKOR_URL=${3:-}
SBOMS=$ROOT/repo/sbom/testdata
cd "$DIR"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*" >&2; "$@"; } # the echo on stderr: "run CMD > FILE" still shows it
expect() {
  local want=$1; shift
  printf '$ %s\n' "$*"
  set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo: expected exit $want, got $got" >&2; exit 1; fi
  echo "  (exit $got)"
}
fwctl() { "$BIN/fwctl" "$@"; }

step "Supply chain: releases with their SBOM, support period and provenance"
echo "(SBOMs of the benchmark corpus's Debian 12 images: scripts/sbom-testdata.sh)"
run fwctl init sc-ws >/dev/null
{ printf 'ACME-GW rootfs 1.0.0\n'; head -c $((1<<20)) /dev/urandom; } > rootfs-1.0.0.img
{ printf 'ACME-GW rootfs 1.0.1\n'; head -c $((1<<20)) /dev/urandom; } > rootfs-1.0.1.img
run fwctl -w sc-ws target add rootfs-1.0.0.img --hardware acme-gw-v2 --version 1.0.0 --counter 1 --name rootfs.img \
  --sbom "$SBOMS/rootfs-v1.spdx.json" --support-until 2027-06-30
echo "A malformed SBOM is refused, naming the file and the field; nothing is staged:"
sed 's/"name": "bash",//' "$SBOMS/rootfs-v2.cdx.json" > broken.cdx.json
expect 2 fwctl -w sc-ws target add rootfs-1.0.1.img --hardware acme-gw-v2 --version 1.0.1 --counter 2 --name rootfs.img --sbom broken.cdx.json
run fwctl -w sc-ws target add rootfs-1.0.1.img --hardware acme-gw-v2 --version 1.0.1 --counter 2 --name rootfs.img \
  --sbom "$SBOMS/rootfs-v2.cdx.json" --support-until 2031-12-31
rekor=(); [ -n "$REKOR_URL" ] && rekor=(--rekor "$REKOR_URL")
run fwctl -w sc-ws publish --out sc-repo --attest --builder-id https://ci.acme.example/fw-release \
  --source-repo git+https://git.acme.example/fw --source-revision 4f1c7a0e0b3d2c1a9f8e7d6c5b4a39281706f5e4 "${rekor[@]}"
run fwctl -w sc-ws sbom show 1.0.1 > show.out; head -8 show.out; echo "  … ($(wc -l < show.out) lines)"
run fwctl -w sc-ws sbom diff 1.0.0 1.0.1 > diff.out; head -6 diff.out; echo "  …"
run fwctl verify --root sc-ws/metadata/1.root.json --repo sc-repo --require-provenance https://ci.acme.example/fw-release --release-key sc-ws/release.pub > verify.out; grep '^OK' verify.out
expect 3 fwctl verify --root sc-ws/metadata/1.root.json --repo sc-repo --require-provenance https://evil.example/builder --release-key sc-ws/release.pub
run "$BIN/fwrepo" vulns import --db sc-fleet.db "$ROOT/repo/exposure/testdata/osv" && run "$BIN/fwrepo" exposure --db sc-fleet.db --dir sc-repo --cve CVE-2024-7264
COSIGN=${FW_TOOLS_DIR:-$HOME/.cache/fwctl-tools/bin}/cosign
if [ -x "$COSIGN" ]; then
  # The log side (a trusted root for the private Rekor) is checked by
  # TestPublishAttestations; here cosign checks signature, subject and type.
  echo "The real cosign checks the provenance with the release key:"
  echo '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}' > no-log-root.json
  run env HOME="$DIR" TUF_ROOT="$DIR/tuf" "$COSIGN" verify-blob-attestation --new-bundle-format --key sc-ws/release.pub \
    --type slsaprovenance1 --insecure-ignore-tlog=true --trusted-root no-log-root.json \
    --bundle sc-ws/targets/acme-gw-v2/1.0.1/rootfs.img.provenance.intoto.sigstore.json rootfs-1.0.1.img
fi
