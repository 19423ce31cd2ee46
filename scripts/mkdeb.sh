#!/bin/bash
# make deb: the Debian packages (debian/, debhelper), built by
# `dpkg-buildpackage -b -us -uc` from a copy of the source under
# BUILD_DIR/deb/src so that the packages land in BUILD_DIR/deb and the
# work tree stays clean.  Prints the paths of the .deb files built.
#   scripts/mkdeb.sh BUILD_DIR
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
out=$build/deb
rm -rf "$out"
mkdir -p "$out/src"
tar -C "$src" --exclude=./build --exclude=./.git --exclude='./debian/.debhelper' -cf - . | tar -C "$out/src" -xf -
(cd "$out/src" && dpkg-buildpackage -b -us -uc -j2) >"$out/build.log" 2>&1 || {
	tail -40 "$out/build.log" >&2
	echo "mkdeb: dpkg-buildpackage failed; full log: $out/build.log" >&2
	exit 1
}
rm -rf "$out/src"
ls "$out"/*.deb
