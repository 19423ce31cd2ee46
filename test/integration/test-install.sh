#!/bin/bash
# make install PREFIX= DESTDIR= puts the binary, units, drop-ins, config,
# template and man pages where a package would, and the installed binary runs;
# make deb builds real Debian packages from debian/ that lintian accepts.
. "$(dirname "$0")/lib.sh"
d=$WORK/dest
make -s -C "$SRC" install DESTDIR="$d" PREFIX=/usr UNITDIR=/lib/systemd/system >"$WORK/install.log" 2>&1 ||
	fail "make install: $(tail -5 "$WORK/install.log")"
for f in usr/sbin/anb-agent lib/systemd/system/anb-agent.service lib/systemd/system/anb-api.service lib/systemd/system/anb-api.socket \
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
step "make deb: dpkg-buildpackage builds the agent, its -dbgsym and the sample app"
debs=$(make -s --no-print-directory -C "$SRC" deb 2>"$WORK/deb.err") || fail "make deb: $(cat "$WORK/deb.err")"
deb=$(grep '/anb-agent_[^/]*\.deb$' <<<"$debs") || fail "no anb-agent package in: $debs"
dbgsym=$(grep '/anb-agent-dbgsym_[^/]*\.deb$' <<<"$debs") || fail "no -dbgsym package in: $debs"
app=$(grep '/anb-sample-app_[^/]*_all\.deb$' <<<"$debs") || fail "no anb-sample-app package in: $debs"
version=$(sed -n 's/^VERSION *:= *//p' "$SRC/Makefile")
assert_eq "$(dpkg-deb -f "$deb" Version)" "$version" "debian/changelog's version is the Makefile's"

step "the agent's package: contents, shlibs Depends, conffiles, maintainer scripts"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/sbin/anb-agent ./lib/systemd/system/anb-agent.service ./etc/anb-agent/agent.conf \
	./etc/anb-agent/env.tmpl ./usr/share/man/man8/anb-agent.8.gz ./usr/share/man/man5/anb-agent.conf.5.gz \
	./usr/share/doc/anb-agent/copyright ./usr/share/doc/anb-agent/changelog.gz; do
	assert_contains "$contents" "$f" "package contents"
done
assert_not_contains "$contents" "anb-api.service" "the agent's package does not carry the sample app"
# ${shlibs:Depends}: every library the binary links, with a version.
depends=$(dpkg-deb -f "$deb" Depends)
for lib in "libcurl4 (>=" "libsystemd0 (>=" "libuv1 (>=" "libjansson4 (>=" "libinih1 (>=" "libc6 (>="; do
	assert_contains "$depends" "$lib" "Depends"
done
conffiles=$(dpkg-deb -I "$deb" conffiles)
assert_contains "$conffiles" "/etc/anb-agent/agent.conf" "conffiles"
assert_contains "$conffiles" "/etc/anb-agent/env.tmpl" "conffiles"
x=$WORK/x
mkdir -p "$x"
dpkg-deb -e "$deb" "$x/DEBIAN"
assert_contains "$(cat "$x/DEBIAN/postinst")" "adduser --system" "postinst creates the system user"
assert_contains "$(cat "$x/DEBIAN/postinst")" "deb-systemd-helper enable 'anb-agent.service'" \
	"dh_installsystemd enables the unit"
assert_not_contains "$(cat "$x/DEBIAN/postinst")" "deb-systemd-invoke start" \
	"the install does not start the agent before user-data wrote its configuration"
assert_contains "$(cat "$x/DEBIAN/postinst")" "deb-systemd-invoke try-restart 'anb-agent.service'" \
	"an upgrade restarts a running agent"
[ -e "$x/DEBIAN/preinst" ] && assert_not_contains "$(cat "$x/DEBIAN/preinst")" "deb-systemd-invoke stop" \
	"an upgrade does not leave the agent stopped"

step "the binary is stripped; its debug symbols are in -dbgsym under its build id"
dpkg-deb -x "$deb" "$x"
readelf -S "$x/usr/sbin/anb-agent" | grep -q '\.symtab' && fail "usr/sbin/anb-agent is not stripped"
buildid=$(readelf -n "$x/usr/sbin/anb-agent" | sed -n 's/.*Build ID: *//p')
[ -n "$buildid" ] || fail "no build id"
assert_contains "$(dpkg-deb -c "$dbgsym")" "./usr/lib/debug/.build-id/${buildid:0:2}/${buildid:2}.debug" "dbgsym"
assert_eq "$("$x/usr/sbin/anb-agent" --version | head -1)" "anb-agent $version" "the packaged binary runs"

step "the sample app's package: units, drop-ins, nginx site, code; units not enabled"
contents=$(dpkg-deb -c "$app")
for f in ./lib/systemd/system/anb-api.socket ./lib/systemd/system/anb-api.service ./lib/systemd/system/anb-worker.service \
	./lib/systemd/system/nginx.service.d/anb.conf ./lib/systemd/system/redis-server.service.d/anb.conf \
	./etc/nginx/sites-available/anb ./usr/share/anb-sample-app/anb_app/main.py; do
	assert_contains "$contents" "$f" "sample app contents"
done
assert_contains "$(dpkg-deb -f "$app" Depends)" "anb-agent (>= $version)" "the app depends on the agent"
dpkg-deb -e "$app" "$x/APP"
assert_not_contains "$(cat "$x/APP/postinst" 2>/dev/null)" "new installations run enable" \
	"the app's units are started by the agent, not enabled at boot"

step "lintian: no error and no warning"
# Kept: only I: tags (package-supports-alternative-init-but-no-init.d-script:
# systemd units without sysvinit scripts, on purpose).
lint=$(lintian --fail-on none --suppress-tags running-with-root-privileges \
	"$deb" "$app" "$dbgsym" 2>&1 | grep -v 'running with root privileges') || true
if grep -E '^(E|W):' <<<"$lint"; then
	fail "lintian reports errors or warnings"
fi
echo OK
