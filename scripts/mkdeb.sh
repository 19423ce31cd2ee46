#!/bin/bash
# make deb: a Debian package of what `make install` puts in place, built
# with dpkg-deb from a staging tree.
#   scripts/mkdeb.sh VERSION BUILD_DIR
set -euo pipefail
version=$1 build=$2
src=$(cd "$(dirname "$0")/.." && pwd)
arch=$(dpkg --print-architecture)
stage=$build/deb/anb-agent_${version}_$arch
rm -rf "$stage"
make -s -C "$src" install DESTDIR="$stage" PREFIX=/usr UNITDIR=/lib/systemd/system >/dev/null
mkdir -p "$stage/DEBIAN"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: anb-agent
Version: $version
Architecture: $arch
Maintainer: ANB platform team <platform@anb.invalid>
Depends: libc6, libsystemd0, libcurl4, libjansson4, libuv1, libinih1, libexpat1
Recommends: nginx | nginx-light, redis-server, gunicorn, python3-fastapi, python3-uvicorn, python3-celery, python3-redis
Section: admin
Priority: optional
Description: boots and supervises an ANB instance on EC2
 Renders the app's .env from IMDS, tags, Secrets Manager and SSM, starts the
 instance's units through systemd in order, and serves /health for the ALB.
CONTROL
printf '/etc/anb-agent/agent.conf\n/etc/anb-agent/env.tmpl\n' >"$stage/DEBIAN/conffiles"
dpkg-deb --root-owner-group --build "$stage" "$build/anb-agent_${version}_$arch.deb" >/dev/null
echo "$build/anb-agent_${version}_$arch.deb"
