#!/bin/sh
# Create a throwaway SoftHSM2 token for trying fwctl's PKCS#11 keys, under
# its own SOFTHSM2_CONF (it never touches the system's tokens).
#
#   eval "$(scripts/softhsm.sh DIR [LABEL])"
#
# creates DIR/softhsm2.conf and DIR/tokens/, initialises a token LABEL
# (default "fwctl") with user PIN 1234 and SO PIN 5678, and prints the
# environment to use it:
#
#   export SOFTHSM2_CONF=DIR/softhsm2.conf
#   export FWCTL_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
#   export FWCTL_PKCS11_PIN=1234
#
# Then: fwctl key generate 'pkcs11:token=LABEL;object=root-1'
# Remove DIR to throw the token away. Tests create their own tokens
# (signer/softhsmtest); this script is for people.
# Needs: apt-get install -y softhsm2
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 DIR [LABEL]" >&2
	exit 2
fi
dir=$1 label=${2:-fwctl}
module=${FWCTL_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
command -v softhsm2-util >/dev/null || { echo "softhsm.sh: softhsm2-util not found; apt-get install -y softhsm2" >&2; exit 1; }
[ -f "$module" ] || { echo "softhsm.sh: no PKCS#11 module at $module; set FWCTL_PKCS11_MODULE" >&2; exit 1; }

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
conf=$dir/softhsm2.conf
cat >"$conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
CONF
if SOFTHSM2_CONF=$conf softhsm2-util --show-slots 2>/dev/null | grep -Eq "Label: +$label *\$"; then
	echo "softhsm.sh: token '$label' already exists in $dir" >&2
else
	SOFTHSM2_CONF=$conf softhsm2-util --init-token --free --label "$label" --so-pin 5678 --pin 1234 >&2
fi
echo "export SOFTHSM2_CONF=$conf"
echo "export FWCTL_PKCS11_MODULE=$module"
echo "export FWCTL_PKCS11_PIN=1234"
