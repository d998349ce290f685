#!/usr/bin/env bash
# sbom-testdata.sh writes repo/sbom/testdata: real SBOMs of real images.
#
# The benchmark corpus's two Debian 12 rootfs images (../shared/bench,
# make_corpus.sh) are unpacked from real .deb files with dpkg-deb -x, so
# they carry no /var/lib/dpkg/status: their package list is the control
# data of the .debs they are built from. This script reads those control
# fields (dpkg-deb -f: Package, Version, Architecture, Maintainer) from
# bench/debs, v1 taking each package's oldest version there and v2 its
# newest (make_corpus.sh's "security roll-up"), and writes them as
# CycloneDX 1.6 and SPDX 2.3 (plus 1.4/1.5/2.2 variants of v1) with purls
# pkg:deb/debian/NAME@VERSION?arch=ARCH. It also writes the SBOM of a real
# Go binary, cosign, from its embedded module list (go version -m).
#
# Usage: scripts/sbom-testdata.sh [BENCH_DIR]   (default ../shared/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${1:-../shared/bench}
OUT=repo/sbom/testdata
gen() { go run ./repo/sbom/internal/sbomgen "$@"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

[ -d "$BENCH/debs" ] || { echo "sbom-testdata.sh: error: no $BENCH/debs (the benchmark corpus's .deb files)" >&2; exit 1; }
for d in "$BENCH"/debs/*.deb; do
	dpkg-deb -f "$d" Package Version Architecture Maintainer |
		awk -F': ' '{v[NR]=$2} END {printf "deb\tdebian\t%s\t%s\t%s\t%s\n", v[1], v[2], v[3], v[4]}'
done > "$tmp/all.tsv"
# per package: oldest version for v1, newest for v2 (dpkg's own ordering)
cut -f3 "$tmp/all.tsv" | sort -u | while read -r p; do
	vs=$(awk -F'\t' -v p="$p" '$3 == p {print $4}' "$tmp/all.tsv")
	old=$(echo "$vs" | head -1); new=$old
	for v in $vs; do
		dpkg --compare-versions "$v" lt "$old" && old=$v
		dpkg --compare-versions "$v" gt "$new" && new=$v
	done
	awk -F'\t' -v p="$p" -v v="$old" '$3 == p && $4 == v' "$tmp/all.tsv" | head -1 >> "$tmp/v1.tsv"
	awk -F'\t' -v p="$p" -v v="$new" '$3 == p && $4 == v' "$tmp/all.tsv" | head -1 >> "$tmp/v2.tsv"
done
gen -format cyclonedx-1.6 -name rootfs -version 1.0.0 < "$tmp/v1.tsv" > "$OUT/rootfs-v1.cdx.json"
gen -format cyclonedx-1.6 -name rootfs -version 1.0.1 < "$tmp/v2.tsv" > "$OUT/rootfs-v2.cdx.json"
gen -format spdx-2.3 -name rootfs -version 1.0.0 < "$tmp/v1.tsv" > "$OUT/rootfs-v1.spdx.json"
gen -format spdx-2.3 -name rootfs -version 1.0.1 < "$tmp/v2.tsv" > "$OUT/rootfs-v2.spdx.json"
gen -format cyclonedx-1.4 -name rootfs -version 1.0.0 < "$tmp/v1.tsv" > "$OUT/rootfs-v1.cdx14.json"
gen -format cyclonedx-1.5 -name rootfs -version 1.0.0 < "$tmp/v1.tsv" > "$OUT/rootfs-v1.cdx15.json"
gen -format spdx-2.2 -name rootfs -version 1.0.0 < "$tmp/v1.tsv" > "$OUT/rootfs-v1.spdx22.json"

# cosign: its module list as golang purls (pkg:golang/NAMESPACE/NAME@VERSION)
COSIGN=${COSIGN:-$HOME/.cache/fwctl-tools/bin/cosign}
if [ -x "$COSIGN" ]; then
	go version -m "$COSIGN" | awk '$1 == "dep" || $1 == "=>" {
		m = $2; v = $3; n = split(m, a, "/"); name = a[n]; ns = substr(m, 1, length(m) - length(name) - 1)
		printf "golang\t%s\t%s\t%s\t-\t\n", ns, name, v }' > "$tmp/cosign.tsv"
	cv=$(go version -m "$COSIGN" | awk '$1 == "mod" {print $3; exit}')
	gen -format cyclonedx-1.5 -name cosign -version "$cv" < "$tmp/cosign.tsv" > "$OUT/cosign.cdx.json"
else
	echo "sbom-testdata.sh: no cosign at $COSIGN (scripts/cosign.sh builds it): skipping its SBOM" >&2
fi
wc -c "$OUT"/*.json
