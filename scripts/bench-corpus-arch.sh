#!/bin/bash
# bench-corpus-arch.sh - delta-benchmark pairs for the architectures devices run (issue 20).
#
# Usage: scripts/bench-corpus-arch.sh [part...]    parts: cosign debs rootfs cpair (default: all)
# Env:   R      output directory (default ~/.cache/fwctl-bench); ../shared/bench stays as it is
#        ARCHS  cosign architectures (default "arm64 arm riscv64"; arm means GOARM=7)
#
# Produces under $R:
#   bin/cosign-v2.6.{2,4,5}-{arm64,arm,riscv64}   the versions ../shared/bench/make_corpus.sh builds for
#                                                amd64, same flags (static, -s -w, -trimpath, no buildid)
#   img/rootfs-arm64-v{1,2}.{ext4,sqfs}          the amd64 rootfs recipe (same package names and versions,
#                                                same trimming, timestamps, UUID, mke2fs and mksquashfs
#                                                options) with Debian's arm64 packages; a version the
#                                                mirror no longer has is replaced by the nearest one it
#                                                has, and listed in img/rootfs-arm64.versions
#   bin/libcrypto-arm64-{old,new}.so.3           a C pair: libcrypto.so.3 from libssl3:arm64 at the two
#                                                versions the amd64 rootfs uses (3.0.20 -> 3.0.22, or the
#                                                nearest the mirror has)
# Builds are cached: a present output is not rebuilt. Go builds take minutes each.
set -euo pipefail
R=${R:-$HOME/.cache/fwctl-bench}
ARCHS=${ARCHS:-arm64 arm riscv64}
PARTS=("$@"); [ ${#PARTS[@]} -gt 0 ] || PARTS=(cosign rootfs cpair)
EPOCH=1700000000
UUID=5f0c1e2a-9d0b-4c7e-8a11-0123456789ab
mkdir -p "$R"/{bin,debs-arm64,img,trees}
log() { echo "bench-corpus-arch: $*" >&2; }
has() { local p; for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

cosign() {
  local a v out d
  # The patch-release pair of every architecture first, then the older version.
  for av in $(for a in $ARCHS; do echo "$a/v2.6.4 $a/v2.6.5"; done) $(for a in $ARCHS; do echo "$a/v2.6.2"; done); do
      a=${av%/*} v=${av#*/}
      out=$R/bin/cosign-$v-$a
      [ -s "$out" ] && continue
      log "building cosign $v for $a"
      # go install is the only way to build pkg@version; cross-compiled, it cannot use GOBIN and
      # installs into $GOPATH/bin/linux_$GOARCH, so take the binary from there.
      d=$(go env GOPATH)/bin/linux_$a
      rm -f "$d/cosign"
      (cd / && env -u GOBIN CGO_ENABLED=0 GOOS=linux GOARCH=$a GOARM=7 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
        go install -trimpath -ldflags="-s -w -buildid=" github.com/sigstore/cosign/v2/cmd/cosign@$v)
      cp "$d/cosign" "$out.tmp" && mv "$out.tmp" "$out"; rm -f "$d/cosign"
  done
}

ensure_arm64_apt() {
  dpkg --print-foreign-architectures | grep -qx arm64 && apt-cache policy libc6:arm64 2>/dev/null | grep -q Candidate && return
  dpkg --add-architecture arm64; apt-get update -q >/dev/null
}

# fetch PKG VERSION -> prints the .deb path for PKG:arm64 at VERSION, or at the nearest version the
# mirror has (the newest one not newer than VERSION, else the oldest newer one).
fetch() {
  local p=$1 want=$2 v f have
  f=$(ls "$R/debs-arm64/${p}_${want/:/%3a}_"*.deb 2>/dev/null | head -1)
  [ -n "$f" ] && { echo "$f"; return; }
  have=$(apt-cache madison "$p:arm64" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -u)
  [ -z "$have" ] && have=$(apt-cache madison "$p" 2>/dev/null | awk -F'|' '$3 ~ /all|arm64/ {gsub(/ /,"",$2); print $2}' | sort -u)
  if printf '%s\n' "$have" | grep -qxF "$want"; then v=$want
  else
    v=""
    for h in $have; do dpkg --compare-versions "$h" le "$want" && { [ -z "$v" ] || dpkg --compare-versions "$h" gt "$v"; } && v=$h; done
    if [ -z "$v" ]; then for h in $have; do { [ -z "$v" ] || dpkg --compare-versions "$h" lt "$v"; } && v=$h; done; fi
    [ -n "$v" ] || { log "no arm64 version of $p on the mirror"; return 1; }
    echo "$p $want -> $v" >> "$R/img/rootfs-arm64.versions.tmp"
  fi
  f=$(ls "$R/debs-arm64/${p}_${v/:/%3a}_"*.deb 2>/dev/null | head -1)
  if [ -z "$f" ]; then
    (cd "$R/debs-arm64" && { apt-get download -q "$p:arm64=$v" >/dev/null 2>&1 || apt-get download -q "$p=$v" >/dev/null; })
    f=$(ls "$R/debs-arm64/${p}_${v/:/%3a}_"*.deb | head -1)
  fi
  echo "$f"
}

# Package names and versions: the amd64 corpus's lists (../shared/bench/make_corpus.sh).
COMMON="bash=5.2.15-2+b13 coreutils=9.1-1 busybox=1:1.35.0-4+deb12u1+b1 vim-tiny=2:9.0.1378-2+deb12u2
libsqlite3-0=3.40.1-2+deb12u2 gnupg=2.2.40-1.1+deb12u2 gpgv=2.2.40-1.1+deb12u2"
CHANGED="libc6 2.36-9+deb12u7 2.36-9+deb12u14
libc-bin 2.36-9+deb12u7 2.36-9+deb12u14
openssl 3.0.20-1~deb12u2 3.0.22-1~deb12u2
libssl3 3.0.20-1~deb12u2 3.0.22-1~deb12u2
curl 7.88.1-10+deb12u5 7.88.1-10+deb12u15
libcurl4 7.88.1-10+deb12u5 7.88.1-10+deb12u15
python3.11-minimal 3.11.2-6+deb12u8 3.11.2-6+deb12u9
libpython3.11-minimal 3.11.2-6+deb12u8 3.11.2-6+deb12u9
libpython3.11-stdlib 3.11.2-6+deb12u8 3.11.2-6+deb12u9
systemd 252.38-1~deb12u1 252.39-1~deb12u2
libsystemd0 252.38-1~deb12u1 252.39-1~deb12u2
perl-base 5.36.0-7+deb12u3 5.36.0-7+deb12u4
libperl5.36 5.36.0-7+deb12u3 5.36.0-7+deb12u4
perl-modules-5.36 5.36.0-7+deb12u3 5.36.0-7+deb12u4
git 1:2.39.5-0+deb12u2 1:2.39.5-0+deb12u3
tzdata 2026b-0+deb12u1 2026f-0+deb12u1
libxml2 2.9.14+dfsg-1.3~deb12u4 2.9.14+dfsg-1.3~deb12u6
libexpat1 2.5.0-1+deb12u2 2.5.0-1+deb12u5
openssh-client 1:9.2p1-2+deb12u9 1:9.2p1-2+deb12u10
openssh-server 1:9.2p1-2+deb12u9 1:9.2p1-2+deb12u10
libglib2.0-0 2.74.6-2+deb12u2 2.74.6-2+deb12u9
libnss3 2:3.87.1-1+deb12u2 2:3.87.1-1+deb12u4
sudo 1.9.13p3-1+deb12u2 1.9.13p3-1+deb12u4
ca-certificates 20230311+deb12u1 20250419~deb12u2"

mktree() { # dir version-string debs...
  local t=$1 ver=$2; shift 2
  rm -rf "$t"; mkdir -p "$t"
  for d in "$@"; do dpkg-deb -x "$d" "$t"; done
  mkdir -p "$t"/{proc,sys,dev,run,tmp,data}
  printf 'NAME=fwdemo\nVERSION_ID=%s\n' "$ver" > "$t/etc/fw-release"
  echo fwdemo > "$t/etc/hostname"
  rm -rf "$t"/usr/share/{doc,man,info,lintian,locale}
  find "$t" -exec touch -h -d "@$EPOCH" {} +
}

rootfs() {
  [ -s "$R/img/rootfs-arm64-v2.sqfs" ] && return
  command -v mksquashfs >/dev/null || apt-get install -y -q squashfs-tools >/dev/null
  ensure_arm64_apt
  rm -f "$R/img/rootfs-arm64.versions.tmp"
  local SET1=() SET2=() pv p v v1 v2
  for pv in $COMMON; do p=${pv%%=*}; v=${pv#*=}; f=$(fetch "$p" "$v"); SET1+=("$f"); SET2+=("$f"); done
  while read -r p v1 v2; do
    SET1+=("$(fetch "$p" "$v1")"); SET2+=("$(fetch "$p" "$v2")")
  done <<< "$CHANGED"
  mktree "$R/trees/arm64-v1" 1.0.0 "${SET1[@]}"
  mktree "$R/trees/arm64-v2" 1.0.1 "${SET2[@]}"
  for n in 1 2; do
    img="$R/img/rootfs-arm64-v$n.ext4"; rm -f "$img"; truncate -s 224M "$img"
    E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -b 4096 -I 256 -L rootfs -U "$UUID" \
      -E hash_seed=$UUID,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard \
      -d "$R/trees/arm64-v$n" "$img"
    (cd "$R/trees/arm64-v$n" && find . -printf '%P\n') | awk -v E=$EPOCH '{print "sif \"/" $0 "\" ctime @" E}' > "$R/img/.sif"
    E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$R/img/.sif" "$img" >/dev/null 2>&1; rm -f "$R/img/.sif"
    sq="$R/img/rootfs-arm64-v$n.sqfs.tmp"; rm -f "$sq"
    mksquashfs "$R/trees/arm64-v$n" "$sq" -comp xz -b 131072 -noappend -all-root \
      -mkfs-time $EPOCH -all-time $EPOCH -no-progress -quiet -processors 2 >/dev/null
  done
  mv "$R/img/rootfs-arm64-v1.sqfs.tmp" "$R/img/rootfs-arm64-v1.sqfs"
  mv "$R/img/rootfs-arm64-v2.sqfs.tmp" "$R/img/rootfs-arm64-v2.sqfs"
  touch "$R/img/rootfs-arm64.versions.tmp"; mv "$R/img/rootfs-arm64.versions.tmp" "$R/img/rootfs-arm64.versions"
  rm -rf "$R/trees/arm64-v1" "$R/trees/arm64-v2"
}

cpair() {
  [ -s "$R/bin/libcrypto-arm64-new.so.3" ] && return
  ensure_arm64_apt
  local n f d
  for n in old:3.0.20-1~deb12u2 new:3.0.22-1~deb12u2; do
    f=$(fetch libssl3 "${n#*:}"); d=$(mktemp -d)
    dpkg-deb -x "$f" "$d"
    cp "$d/usr/lib/aarch64-linux-gnu/libcrypto.so.3" "$R/bin/libcrypto-arm64-${n%%:*}.so.3"
    basename "$f" > "$R/bin/libcrypto-arm64-${n%%:*}.source"
    rm -rf "$d"
  done
}

has cosign && cosign
has rootfs && rootfs
has cpair && cpair
(cd "$R" && find bin img -type f ! -name '*.tmp' | sort | xargs sha256sum > SHA256SUMS)
ls -l "$R/bin" "$R/img" >&2
