#!/bin/sh
# The end-to-end test's host packages (make check-e2e): qemu, debootstrap,
# the tools that make the image, and those that build the packages.
# Idempotent: installs only what is missing.
set -eu
NEED="qemu-system-x86 socat debootstrap e2fsprogs kmod debhelper dpkg-dev curl python3 python3-botocore"
missing=""
for p in $NEED; do
	s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$s" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "e2e install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
