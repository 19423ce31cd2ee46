#!/bin/bash
# An EC2-like disk image for the end-to-end test: a debootstrap'ed bookworm
# with systemd, cloud-init and every runtime dependency of the packages
# (the VM has no network but the IMDS forward), plus the kernel of
# linux-image-cloud-amd64 (NVMe and ext4 built in, no initrd).
#   test/e2e/build-image.sh CACHE_DIR   → prints the directory holding
#                                         rootfs.img and vmlinuz
# Two caches: the debootstrap'ed root under CACHE_DIR/base-<hash of the
# package list, suite and mirror> (the slow part), and the image under
# CACHE_DIR/image-<hash of this script and the base>. The inputs are all
# written here, so an edit rebuilds what it changes and nothing else does.
set -euo pipefail
cache=$1
mirror=${E2E_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# What the instance needs at boot (from DESIGN.md's verified recipe), the
# agent's shared libraries, and the sample app's runtime.
include=systemd,systemd-sysv,dbus,udev,iproute2,kmod,cloud-init,python3-cffi-backend,curl,ca-certificates,python3
include=$include,libuv1,libinih1,libjansson4,libcurl4,libexpat1,libsystemd0
include=$include,nginx-light,redis-server,gunicorn,python3-fastapi,python3-uvicorn,python3-celery,python3-redis
basekey=$(echo "$include $mirror $suite" | sha256sum | cut -c1-16)
base=$cache/base-$basekey
key=$( { cat "$0"; echo "$basekey"; } | sha256sum | cut -c1-16)
out=$cache/image-$key
if [ -f "$out/rootfs.img" ] && [ -f "$out/vmlinuz" ]; then
	echo "$out"
	exit 0
fi
log() { echo "build-image: $*" >&2; }
t0=$(date +%s)
if [ ! -f "$base/done" ]; then
	rm -rf "$base"
	mkdir -p "$base"
	log "debootstrap $suite (minbase) into $base/root"
	debootstrap --variant=minbase --include="$include" "$suite" "$base/root" "$mirror" \
		>"$base/debootstrap.log" 2>&1 || {
		tail -30 "$base/debootstrap.log" >&2
		log "debootstrap failed"
		exit 1
	}
	rm -rf "$base/root/var/cache/apt/archives/"*.deb
	touch "$base/done"
	log "debootstrap took $(($(date +%s) - t0)) s"
fi
tmp=$cache/tmp-$key
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
cp -a "$base/root" "$root"

log "kernel: linux-image-cloud-amd64"
(cd "$tmp" && apt-get download -q "$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')" >/dev/null)
dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/kernel"
kver=$(ls "$tmp/kernel/lib/modules")
cp "$tmp/kernel/boot/vmlinuz-$kver" "$tmp/vmlinuz"
mkdir -p "$root/lib/modules"
cp -a "$tmp/kernel/lib/modules/$kver" "$root/lib/modules/"
depmod -b "$root" "$kver"

log "configure: network, console, cloud-init datasource"
cat >"$root/etc/systemd/network/10-eth.network" <<NET
[Match]
Name=en* eth*
[Network]
DHCP=ipv4
NET
systemctl --root="$root" enable systemd-networkd >/dev/null 2>&1
# One link up is online: no waiting for links that will never configure.
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30\n' \
	>"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
echo ec2-box >"$root/etc/hostname"
printf '/dev/nvme0n1 / ext4 defaults 0 1\n' >"$root/etc/fstab"
# Only the EC2 datasource: no probing of others, no minutes of timeouts.
# No locale generation and no SSH keys (no sshd in the box): minutes
# under TCG for nothing the test looks at.
printf 'datasource_list: [ Ec2, None ]\nnetwork: {config: disabled}\nlocale: false\nssh_genkeytypes: []\n' \
	>"$root/etc/cloud/cloud.cfg.d/90-e2e.cfg"
# The packaged services start when the agent says so, not at boot: the
# image stays close to an AMI where the app is not yet configured.
systemctl --root="$root" disable nginx.service redis-server.service >/dev/null 2>&1 || true
# The serial console logs root in: the test runs its checks in the guest
# through it (test/e2e/guest.py), as an operator would over SSM or SSH.
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<GETTY
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 %I dumb
GETTY
systemctl --root="$root" enable serial-getty@ttyS0.service >/dev/null 2>&1
rm -f "$root/etc/machine-id" && touch "$root/etc/machine-id"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

log "mkfs.ext4 -d"
size=$(($(du -sm "$root" | cut -f1) + 600))
mkfs.ext4 -q -L root -d "$root" "$tmp/rootfs.img" "${size}M" >&2
# One image at a time in the cache: older ones go.
rm -rf "$cache"/image-*
rm -rf "$root"
mkdir -p "$out"
mv "$tmp/rootfs.img" "$tmp/vmlinuz" "$out/"
log "image ready in $(($(date +%s) - t0)) s: $out"
echo "$out"
