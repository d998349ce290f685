#!/bin/bash
# bench-delta.sh - compare fwctl's delta engine with bsdiff, xdelta3 and zstd --patch-from.
#
# Usage: scripts/bench-delta.sh [pair...]     pairs: gobin gobin-deps ext4 sqfs (amd64, ../shared/bench)
#                                             gobin-ARCH gobin-deps-ARCH (ARCH arm64, arm, riscv64),
#                                             clib-arm64 ext4-arm64 sqfs-arm64 (scripts/bench-corpus-arch.sh)
#                                             big: a 2 GiB pair for the encoder's memory bound, fwdelta only
#                                             (four copies of each ext4 pair and 256 MiB of the same random
#                                             bytes, built in ARCH_CORPUS/big)
#                                             default: all of them
# Env:   CORPUS   amd64 corpus directory (default ~/.cache/fwctl-bench/amd64; built with make_corpus.sh if missing)
#        ARCH_CORPUS  the architectures' corpus (default ~/.cache/fwctl-bench; built if missing)
#        BUILD_CORPUS=0  use the corpus as it is (do not build missing parts)
#        WORK     scratch directory for deltas and outputs (default: a temp dir, removed at exit)
#        TIMEOUT  per-command limit in seconds (default 1800); a tool that exceeds it is reported as such
#        TOOLS    tools to run (default "bsdiff xdelta3 zstd fwdelta"; the goals need all four)
#        FWDELTA_REF  another fwdelta binary (an older build) to measure in the same run, as "fwdelta-ref"
#        BSDIFF_MAX_MB  skip bsdiff on targets above this size (default 160: it needs hours on 224 MiB)
# Prints one table per pair: delta size, encode/apply wall time, encode CPU time (user+system: on a
# shared machine wall times depend on the load) and peak RSS (GNU time -v), all from
# this run, plus our size relative to the best other tool. Runs under nice; commands run one at a time.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${CORPUS:-$HOME/.cache/fwctl-bench/amd64}
TIMEOUT=${TIMEOUT:-1800}
BSDIFF_MAX_MB=${BSDIFF_MAX_MB:-160}
TOOLS=${TOOLS:-bsdiff xdelta3 zstd fwdelta}
[ -n "${FWDELTA_REF:-}" ] && TOOLS="$TOOLS fwdelta-ref"
MAKE_CORPUS=${MAKE_CORPUS:-$HERE/../shared/bench/make_corpus.sh}
[ -x "$MAKE_CORPUS" ] || MAKE_CORPUS=/work/shared/bench/make_corpus.sh
ARCH_CORPUS=${ARCH_CORPUS:-$HOME/.cache/fwctl-bench}
PAIRS=("$@"); [ ${#PAIRS[@]} -gt 0 ] || PAIRS=(gobin gobin-deps ext4 sqfs gobin-arm64 gobin-deps-arm64 gobin-arm gobin-deps-arm
  gobin-riscv64 gobin-deps-riscv64 clib-arm64 ext4-arm64 sqfs-arm64 big)

need=()
command -v bsdiff >/dev/null || need+=(bsdiff)
command -v xdelta3 >/dev/null || need+=(xdelta3)
command -v zstd >/dev/null || need+=(zstd)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get install -y "${need[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi

amd64=0; arch=0
for p in "${PAIRS[@]}"; do case $p in gobin|gobin-deps|ext4|sqfs) amd64=1 ;; big) amd64=1 arch=1 ;; *) arch=1 ;; esac; done
if [ $arch = 1 ] && [ "${BUILD_CORPUS:-1}" = 1 ]; then R=$ARCH_CORPUS nice -n 10 "$HERE/scripts/bench-corpus-arch.sh" >&2; fi
if [ $amd64 = 1 ] && { ! [ -s "$CORPUS/img/rootfs-v2.sqfs" ] || ! [ -s "$CORPUS/bin/cosign-v2.6.5" ]; }; then
  echo "building corpus in $CORPUS (takes a while)" >&2
  mkdir -p "$CORPUS"; R=$CORPUS nice -n 10 "$MAKE_CORPUS" >&2
fi

# big_pair: the 2 GiB pair (issue 20: encode RSS <= 512 MiB for any image up to 2 GiB), made of
# the amd64 and arm64 ext4 pairs, so that it changes as a rootfs does, plus incompressible bytes.
big_pair() {
  local d=$ARCH_CORPUS/big v
  [ -s "$d/rootfs-2g-v2.img" ] && return 0
  echo "building the 2 GiB pair in $d" >&2
  mkdir -p "$d"
  head -c $((256 << 20)) /dev/urandom >"$d/random.tmp"
  for v in 1 2; do
    local parts=()
    for _ in 1 2 3 4; do parts+=("$ARCH_CORPUS/img/rootfs-arm64-v$v.ext4" "$CORPUS/img/rootfs-v$v.ext4"); done
    cat "${parts[@]}" "$d/random.tmp" >"$d/rootfs-2g-v$v.tmp"
    mv "$d/rootfs-2g-v$v.tmp" "$d/rootfs-2g-v$v.img"
  done
  rm -f "$d/random.tmp"
}
for p in "${PAIRS[@]}"; do if [ "$p" = big ]; then big_pair; fi; done

if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"
(cd "$HERE" && go build -trimpath -o "$WORK/fwdelta" ./cmd/fwdelta)
FW=$WORK/fwdelta
echo "# bench-delta $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg), fwctl ${FWCTL_REV:-$(cd "$HERE" && git rev-parse --short HEAD 2>/dev/null || echo unknown)}"

# measure NAME CMD...: run under nice and GNU time; sets T (wall seconds), C (CPU seconds, user+system)
# and M (peak RSS MiB), or T=fail/timeout.
measure() {
  local log=$WORK/time.log rc=0
  sync
  nice -n 10 /usr/bin/time -v -o "$log" timeout "$TIMEOUT" "$@" >/dev/null 2>"$WORK/err.log" || rc=$?
  if [ $rc -eq 124 ]; then T="timeout"; M="-"; C="-"; return 1; fi
  if [ $rc -ne 0 ]; then T="fail($rc)"; M="-"; C="-"; sed 's/^/    /' "$WORK/err.log" | tail -3 >&2; return 1; fi
  C=$(awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.1f", s}' "$log")
  T=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.2f", s}' "$log")
  M=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$log")
}

mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b/1e6 }'; }

bench_pair() { # name base target
  local name=$1 old=$2 new=$3 best="" bestsz=0 oursz=0 bssz=0 bset="" bsec="" floor ours_et="" ours_ec="" ours_em="" ours_at="" ours_am=""
  local newmb=$(( $(stat -c %s "$new") / 1000000 ))
  echo
  echo "## $name: $(basename "$old") -> $(basename "$new") ($(mb "$(stat -c %s "$old")") MB -> $(mb "$(stat -c %s "$new")") MB)"
  # Floor for any apply: read the base, write and hash the result. Best of two runs, so that it
  # is measured with the page cache as warm as the tools get it.
  local f1
  measure bash -c 'cat "$0" >/dev/null && tee "$2" <"$1" | sha256sum' "$old" "$new" "$WORK/floor.out"; f1=$T
  measure bash -c 'cat "$0" >/dev/null && tee "$2" <"$1" | sha256sum' "$old" "$new" "$WORK/floor.out"
  T=$(awk -v a="$f1" -v b="$T" 'BEGIN { print (a < b ? a : b) }')
  floor=$T
  echo "apply floor (read base, write and hash result): ${T} s"
  rm -f "$WORK/floor.out"
  printf '| %-34s | %9s | %9s | %9s | %9s | %9s | %9s |\n' tool "size MB" "enc s" "enc CPU s" "enc MiB" "apply s" "apply MiB"
  printf '|%s|%s|%s|%s|%s|%s|%s|\n' ------------------------------------ ----------- ----------- ----------- ----------- ----------- -----------
  local tool
  for tool in $TOOLS; do
    local d=$WORK/$name.$tool out=$WORK/$name.$tool.out et ec em at am label
    rm -f "$d" "$out"
    if [ "$name" = big ] && [ "$tool" != fwdelta ]; then
      printf '| %-34s | %9s | %9s | %9s | %9s | %9s | %9s |\n' "$tool" "not run" "(RSS pair)" - - - -; continue
    fi
    case $tool in
      bsdiff) label="bsdiff"
        if [ "$newmb" -gt "$BSDIFF_MAX_MB" ]; then
          printf '| %-34s | %9s | %9s | %9s | %9s | %9s | %9s |\n' "$label" "skipped" ">${BSDIFF_MAX_MB}MB" - - - -; continue; fi
        measure bsdiff "$old" "$new" "$d" && { et=$T ec=$C em=$M; measure bspatch "$old" "$out" "$d"; } || { et=$T ec=$C em=$M; T=-; M=-; } ;;
      xdelta3) label="xdelta3 -9 -S djw"
        measure xdelta3 -9 -S djw -e -f -s "$old" "$new" "$d" && { et=$T ec=$C em=$M; measure xdelta3 -d -f -s "$old" "$d" "$out"; } || { et=$T ec=$C em=$M; T=-; M=-; } ;;
      zstd) label="zstd -19 --long=31 --patch-from"
        measure zstd -q -19 --long=31 -f --patch-from="$old" "$new" -o "$d" && { et=$T ec=$C em=$M; measure zstd -q -d --long=31 -f --patch-from="$old" "$d" -o "$out"; } || { et=$T ec=$C em=$M; T=-; M=-; } ;;
      fwdelta) label="fwdelta (ours)"
        measure "$FW" encode "$old" "$new" "$d" && { et=$T ec=$C em=$M; measure "$FW" apply "$old" "$d" "$out"; } || { et=$T ec=$C em=$M; T=-; M=-; } ;;
      fwdelta-ref) label="fwdelta-ref ($(basename "$FWDELTA_REF"))"
        measure "$FWDELTA_REF" encode "$old" "$new" "$d" && { et=$T ec=$C em=$M; measure "$FWDELTA_REF" apply "$old" "$d" "$out"; } || { et=$T ec=$C em=$M; T=-; M=-; } ;;
    esac
    at=$T am=$M
    local sz="-"
    if [ -s "$d" ] && [ -s "$out" ] && cmp -s "$out" "$new"; then
      sz=$(stat -c %s "$d")
      [ "$tool" = bsdiff ] && bssz=$sz bset=$et bsec=$ec
      [ "$tool" = fwdelta ] && ours_et=$et ours_ec=$ec ours_em=$em ours_at=$at ours_am=$am
      if [ "$tool" = fwdelta ]; then oursz=$sz
      elif [ "$tool" = fwdelta-ref ]; then :
      elif [ -z "$best" ] || [ "$sz" -lt "$bestsz" ]; then best=$label bestsz=$sz; fi
      sz=$(mb "$sz")
    elif [ -s "$d" ]; then sz="BAD"; fi
    printf '| %-34s | %9s | %9s | %9s | %9s | %9s | %9s |\n' "$label" "$sz" "$et" "$ec" "$em" "$at" "$am"
    rm -f "$out"
  done
  if [ "$oursz" -gt 0 ] && [ -n "$best" ]; then
    awk -v o="$oursz" -v b="$bestsz" -v n="$best" 'BEGIN { printf "ours / best other (%s): %d / %d bytes = %.4f\n", n, o, b, o/b }'
  fi
  # Issue 20's goals: executables <= 0.8x bsdiff, ext4 <= 0.7x the best other tool, squashfs <= 1x.
  local goal="" ref=$bestsz refn=$best
  case $name in
    gobin*|clib*) goal=0.8; ref=$bssz refn=bsdiff ;;
    ext4*) goal=0.7 ;;
    sqfs*) goal=1.0 ;;
  esac
  if [ -n "$goal" ] && [ "$oursz" -gt 0 ] && [ "${ref:-0}" -gt 0 ]; then
    awk -v o="$oursz" -v b="$ref" -v g="$goal" -v n="$refn" -v p="$name" 'BEGIN { r=o/b; printf "goal %s size: ours / %s = %.4f, want <= %.2f: %s\n", p, n, r, g, (r <= g ? "met" : "NOT met") }' | tee -a "$WORK/goals"
  fi
  # Time and memory goals: encode <= 0.25x bsdiff's time and <= 512 MiB; apply <= 32 MiB and
  # <= 1.5x the floor.
  if [ "$oursz" -gt 0 ]; then
    local g=$WORK/goals
    if [ -n "$bset" ]; then
      awk -v o="$ours_et" -v b="$bset" -v oc="$ours_ec" -v bc="$bsec" -v p="$name" 'BEGIN { r=o/b; printf "goal %s encode time: ours / bsdiff = %.3f wall (%.3f CPU), want <= 0.25: %s\n", p, r, oc/bc, (r <= 0.25 ? "met" : "NOT met") }' | tee -a "$g"
    fi
    awk -v m="$ours_em" -v p="$name" 'BEGIN { printf "goal %s encode RSS: %d MiB, want <= 512: %s\n", p, m, (m <= 512 ? "met" : "NOT met") }' | tee -a "$g"
    awk -v m="$ours_am" -v p="$name" 'BEGIN { printf "goal %s apply RSS: %d MiB, want <= 32: %s\n", p, m, (m <= 32 ? "met" : "NOT met") }' | tee -a "$g"
    awk -v a="$ours_at" -v f="$floor" -v p="$name" 'BEGIN { r=(f > 0 ? a/f : 0); printf "goal %s apply time: %.2f s / floor %.2f s = %.2f, want <= 1.5: %s\n", p, a, f, r, (r <= 1.5 ? "met" : "NOT met") }' | tee -a "$g"
  fi
}

for p in "${PAIRS[@]}"; do
  case $p in
    gobin) bench_pair gobin "$CORPUS/bin/cosign-v2.6.4" "$CORPUS/bin/cosign-v2.6.5" ;;
    gobin-deps) bench_pair gobin-deps "$CORPUS/bin/cosign-v2.6.2" "$CORPUS/bin/cosign-v2.6.4" ;;
    ext4) bench_pair ext4 "$CORPUS/img/rootfs-v1.ext4" "$CORPUS/img/rootfs-v2.ext4" ;;
    sqfs) bench_pair sqfs "$CORPUS/img/rootfs-v1.sqfs" "$CORPUS/img/rootfs-v2.sqfs" ;;
    gobin-deps-*) a=${p#gobin-deps-}; bench_pair "$p" "$ARCH_CORPUS/bin/cosign-v2.6.2-$a" "$ARCH_CORPUS/bin/cosign-v2.6.4-$a" ;;
    gobin-*) a=${p#gobin-}; bench_pair "$p" "$ARCH_CORPUS/bin/cosign-v2.6.4-$a" "$ARCH_CORPUS/bin/cosign-v2.6.5-$a" ;;
    clib-arm64) bench_pair "$p" "$ARCH_CORPUS/bin/libcrypto-arm64-old.so.3" "$ARCH_CORPUS/bin/libcrypto-arm64-new.so.3" ;;
    ext4-arm64) bench_pair "$p" "$ARCH_CORPUS/img/rootfs-arm64-v1.ext4" "$ARCH_CORPUS/img/rootfs-arm64-v2.ext4" ;;
    sqfs-arm64) bench_pair "$p" "$ARCH_CORPUS/img/rootfs-arm64-v1.sqfs" "$ARCH_CORPUS/img/rootfs-arm64-v2.sqfs" ;;
    big) bench_pair big "$ARCH_CORPUS/big/rootfs-2g-v1.img" "$ARCH_CORPUS/big/rootfs-2g-v2.img"; rm -f "$WORK/big.fwdelta" ;;
    *) echo "unknown pair $p (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
echo
echo "## goals (issue 20)"
cat "$WORK/goals" 2>/dev/null || echo "no goal measured"
