#!/usr/bin/env bash
# release.sh — sign and publish one firmware release from CI with fwctl.
# Both examples/ci/github-workflow.yml and examples/ci/gitlab-ci.yml call it,
# and fwctl's own tests run it against a local directory
# (test/integration_ci_test.go), so what CI runs is what was tested.
#
# Any failure exits non-zero, with fwctl's own exit code where it has one
# (2 bad input, 3 refused, 4 unreachable; see the README's exit codes).
#
# Input, from the environment:
#   FW_IMAGE       the firmware image built by the pipeline       (required)
#   FW_HARDWARE    hardware ID(s), comma-separated                (required)
#   FW_VERSION     human version, e.g. 2.4.1                      (required)
#   FW_COUNTER     security counter (devices refuse lower ones)   (required)
#   FW_OUT         where to publish: s3://BUCKET/PREFIX or a directory (required)
#   FWCTL_WORKSPACE  the signing workspace without its private keys
#                  (fwctl.json, metadata/, keys/*.ref, staged/), default ./release
#   FW_KEY_FILES   encrypted key files (fwctl key files, from CI secrets),
#                  space-separated; each is put in the workspace's keys/
#                  under the name fwctl looks for (ROLE-KEYID.json), mode 0600
#   FWCTL_PASSPHRASE   passphrase of those key files (a CI secret)
#   FWCTL_PKCS11_PIN   user PIN when the workspace's keys are on a PKCS#11
#                  token (keys/*.ref name pkcs11: URIs; nothing to copy)
#   FW_NAME        file name in the target path (default: the image's)
#   FW_DELTA_FROM  also publish deltas from the last N releases (default 0)
#   FW_S3_ENDPOINT S3 API endpoint for a non-AWS store (else $AWS_ENDPOINT_URL)
#   FW_REKOR_URL   also record the release in this Rekor log
#   FW_RESULT      where to write the release summary (default release.json)
#   FWCTL          the fwctl binary (default: fwctl on PATH)
set -euo pipefail

die() { echo "release.sh: $*" >&2; exit "${2:-1}"; }
need() { [ -n "${!1:-}" ] || die "\$$1 is required (see the header of $0)" 2; }
for v in FW_IMAGE FW_HARDWARE FW_VERSION FW_COUNTER FW_OUT; do need "$v"; done
command -v jq >/dev/null || die "jq is needed to read fwctl's --json output (apt-get install jq)" 2
FWCTL=${FWCTL:-fwctl}
WS=${FWCTL_WORKSPACE:-release}
RESULT=${FW_RESULT:-release.json}
export FWCTL_WORKSPACE=$WS CI=${CI:-true}
[ -f "$WS/fwctl.json" ] || die "$WS is not a signing workspace (no fwctl.json): set FWCTL_WORKSPACE" 2
[ -f "$FW_IMAGE" ] || die "image $FW_IMAGE not found" 2

# run CMD...: run fwctl with --json, keep its document, and stop on failure
# with fwctl's exit code and error message.
run() {
  local out rc=0
  out=$("$FWCTL" --json "$@") || rc=$?
  if [ "$rc" != 0 ]; then
    echo "release.sh: fwctl $1 failed (exit $rc): $(jq -r '.error? // empty' <<<"$out" 2>/dev/null)" >&2
    exit "$rc"
  fi
  printf '%s' "$out"
}

"$FWCTL" version

# Key files from secrets go where the workspace expects them; they are
# removed again on exit, whatever happens.
installed=()
cleanup() { for f in "${installed[@]}"; do rm -f "$f"; done; }
trap cleanup EXIT
for k in ${FW_KEY_FILES:-}; do
  role=$(jq -r '.role // empty' "$k" 2>/dev/null) || true
  id=$(jq -r '.keyid // empty' "$k" 2>/dev/null) || true
  if [ -z "$role" ] || [ -z "$id" ]; then die "$k is not an fwctl key file (no role and keyid)" 2; fi
  dst="$WS/keys/$role-${id:0:16}.json"
  install -m 0600 "$k" "$dst"
  installed+=("$dst")
done

args=(target add "$FW_IMAGE" --version "$FW_VERSION" --counter "$FW_COUNTER")
IFS=, read -ra hws <<<"$FW_HARDWARE"
for h in "${hws[@]}"; do args+=(--hardware "$h"); done
[ -n "${FW_NAME:-}" ] && args+=(--name "$FW_NAME")
[ "${FW_DELTA_FROM:-0}" != 0 ] && args+=(--delta-from "$FW_DELTA_FROM")
added=$(run "${args[@]}")
target=$(jq -er '.target.path' <<<"$added") || die "fwctl target add printed no target path"
echo "staged $target ($(jq -r '.target.sha256' <<<"$added"))"

pub=(publish --out "$FW_OUT")
[ -n "${FW_S3_ENDPOINT:-}" ] && pub+=(--s3-endpoint "$FW_S3_ENDPOINT")
[ -n "${FW_REKOR_URL:-}" ] && pub+=(--rekor "$FW_REKOR_URL")
published=$(run "${pub[@]}")
targets_version=$(jq -er '.versions.targets' <<<"$published") || die "fwctl publish printed no targets version"
echo "published targets v$targets_version to $FW_OUT"

# Verify what was published as a device would, from the first root.
ver=(verify --root "$WS/metadata/1.root.json" --repo "$FW_OUT")
[ -n "${FW_S3_ENDPOINT:-}" ] && ver+=(--s3-endpoint "$FW_S3_ENDPOINT")
verified=$(run "${ver[@]}")
got=$(jq -r '.versions.targets' <<<"$verified")
[ "$got" = "$targets_version" ] || die "verify read targets v$got from $FW_OUT, published v$targets_version"
jq -e --arg t "$target" '[.targets[]? | .path] | index($t) != null' <<<"$verified" >/dev/null ||
  die "verify of $FW_OUT does not list $target"

jq -n --arg target "$target" --arg out "$FW_OUT" --argjson added "$added" --argjson published "$published" \
  '{target: $target, out: $out, sha256: $added.target.sha256, length: $added.target.length,
    counter: $added.target.fw.counter, versions: $published.versions}' >"$RESULT"
echo "release.sh: released $target (targets v$targets_version); summary in $RESULT"
