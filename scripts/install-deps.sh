#!/bin/sh
# Installs the Debian packages anb-agent needs to build, test and run its demo.
# Idempotent: installs only what is missing, runs `apt-get update` at most once.
set -eu

BUILD="make gcc pkg-config libsystemd-dev libcurl4-openssl-dev libjansson-dev \
libuv1-dev check libinih-dev node-llhttp libexpat1-dev"
TEST="systemd dbus dbus-user-session util-linux iproute2 procps curl \
python3 python3-dotenv python3-botocore \
nginx-light redis-server gunicorn python3-fastapi python3-uvicorn \
python3-celery python3-redis valgrind clang libclang-rt-14-dev wrk man-db openssl \
debhelper dpkg-dev lintian binutils python3-yaml"

missing=""
for p in $BUILD $TEST; do
	s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$s" = installed ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: must run as root to install packages" >&2
	exit 77
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The packaged services must not run on the host: tests and the demo start
# their own instances under a private systemd manager.
for svc in nginx redis-server; do
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	fi
done
pkill -x nginx 2>/dev/null || true
pkill -x redis-server 2>/dev/null || true
echo "install-deps: done"
