#!/bin/bash
# make install PREFIX= DESTDIR= puts the binary, units, drop-ins, config,
# template and man pages where a package would, and the installed binary runs.
. "$(dirname "$0")/lib.sh"
d=$WORK/dest
make -s -C "$SRC" install DESTDIR="$d" PREFIX=/usr UNITDIR=/lib/systemd/system >"$WORK/install.log" 2>&1 ||
	fail "make install: $(tail -5 "$WORK/install.log")"
for f in usr/sbin/anb-agent lib/systemd/system/anb-agent.service lib/systemd/system/anb-api.service \
	lib/systemd/system/anb-worker.service lib/systemd/system/nginx.service.d/anb.conf \
	lib/systemd/system/redis-server.service.d/anb.conf etc/anb-agent/agent.conf etc/anb-agent/env.tmpl \
	usr/share/man/man8/anb-agent.8 usr/share/man/man5/anb-agent.conf.5; do
	[ -f "$d/$f" ] || fail "not installed: $f"
done
[ -x "$d/usr/sbin/anb-agent" ] || fail "binary not executable"
assert_contains "$("$d/usr/sbin/anb-agent" --version)" "anb-agent 0.1.0" "installed binary runs"
# The shipped config and template are valid as installed (paths adjusted).
sed -e "s#^\#template = /etc#template = $d/etc#" "$d/etc/anb-agent/agent.conf" >"$WORK/agent.conf"
"$d/usr/sbin/anb-agent" --config "$WORK/agent.conf" check-config || fail "shipped agent.conf does not validate"
step "make deb packages the same tree"
deb=$(make -s --no-print-directory -C "$SRC" deb 2>"$WORK/deb.err" | tail -1) || fail "make deb: $(cat "$WORK/deb.err")"
[ -f "$deb" ] || fail "no package: $deb"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/sbin/anb-agent ./lib/systemd/system/anb-agent.service ./etc/anb-agent/agent.conf \
	./usr/share/man/man8/anb-agent.8; do
	assert_contains "$contents" "$f" "package contents"
done
assert_contains "$(dpkg-deb -f "$deb" Depends)" "libcurl4" "Depends"
assert_contains "$(dpkg-deb -I "$deb" conffiles)" "/etc/anb-agent/agent.conf" "conffiles"
echo OK
