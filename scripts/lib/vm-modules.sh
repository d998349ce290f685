# shellcheck shell=bash
# scripts/lib/vm-modules.sh: what vm-image.sh and vm-image-arm64.sh share.
# vm_modules KX KVER IR copies the modules the test machine's init loads
# (virtio disk and network, ext4) and those they depend on from the
# unpacked kernel package KX into the initramfs tree IR, with a
# modules.dep of just those.
vm_modules() {
  local kx=$1 kver=$2 ir=$3 m line f
  local dep=$kx/lib/modules/$kver/modules.dep need=()
  for m in virtio_pci virtio_blk virtio_net crc32c_generic ext4; do
    line=$(grep -E "(^|/)$m\.ko:" "$dep")
    # shellcheck disable=SC2206 # the dependency list is split on spaces
    need+=(${line%%:*} ${line#*:})
  done
  for f in $(printf '%s\n' "${need[@]}" | sort -u); do
    mkdir -p "$ir/lib/modules/$kver/$(dirname "$f")"
    cp "$kx/lib/modules/$kver/$f" "$ir/lib/modules/$kver/$f"
  done
  grep -E "^($(printf '%s\n' "${need[@]}" | sort -u | sed 's/\./\\./g' | paste -sd'|')):" "$dep" >"$ir/lib/modules/$kver/modules.dep"
}
