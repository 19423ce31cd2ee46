#!/bin/bash
# Runs a command next to a real, private systemd manager.
#
#   test/harness.sh CMD [ARGS...]
#
# PID 1 on the build machines is not systemd, so the harness gives the
# command its own: a private mount namespace (unshare --mount) with a tmpfs
# on /run, a D-Bus session bus at /run/user/0/bus and `systemd --user` on
# it, and a volatile journald.  Inside, `systemctl --user` and `journalctl`
# work, and the agent reaches the manager
# with `[systemd] bus = user` or, through the production code path, with
# DBUS_SYSTEM_BUS_ADDRESS=$ANB_BUS.  Units go to $ANB_UNIT_DIR.
#
# Teardown runs however CMD ends (exit, failure, Ctrl-C): `systemctl --user
# exit` stops every unit, then the manager and the bus are ended and
# nothing started here is left behind.  The exit status is CMD's.
set -u

if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	exec env ANB_HARNESS_INNER=1 unshare --mount --propagation private --fork -- "$0" "$@"
fi

log_dir=${ANB_HARNESS_LOG:-$(mktemp -d /tmp/anb-harness.XXXXXX)}
mkdir -p "$log_dir"

mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system /run/user/0
chmod 0700 /run/user/0
export XDG_RUNTIME_DIR=/run/user/0
export DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus
export ANB_BUS=$DBUS_SESSION_BUS_ADDRESS
export ANB_UNIT_DIR=$XDG_RUNTIME_DIR/systemd/user
export ANB_HARNESS_LOG=$log_dir
export SYSTEMD_PAGER= SYSTEMD_COLORS=0
mkdir -p "$ANB_UNIT_DIR"

# A journald of its own (volatile, no kernel log), so units log as they
# would on an instance and `journalctl` works inside.
journald=
if [ -x /lib/systemd/systemd-journald ]; then
	mkdir -p /run/systemd/journald.conf.d /run/log/journal
	printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\n' \
		>/run/systemd/journald.conf.d/harness.conf
	/lib/systemd/systemd-journald >"$log_dir/journald.log" 2>&1 &
	journald=$!
	for _ in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.02; done
fi

dbus-daemon --session --fork --address="$DBUS_SESSION_BUS_ADDRESS" --nopidfile \
	--print-pid=1 >/run/dbus.pid
/lib/systemd/systemd --user --log-target=console >"$log_dir/systemd.log" 2>&1 &
manager=$!

teardown() {
	trap - EXIT INT TERM
	systemctl --user exit >/dev/null 2>&1 || true
	for _ in $(seq 100); do
		kill -0 "$manager" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$manager" 2>/dev/null || true
	wait "$manager" 2>/dev/null || true
	kill "$(cat /run/dbus.pid)" 2>/dev/null || true
	if [ -n "$journald" ]; then
		kill "$journald" 2>/dev/null || true
		wait "$journald" 2>/dev/null || true
	fi
}
trap teardown EXIT
trap 'exit 130' INT TERM

state=
for _ in $(seq 100); do
	state=$(systemctl --user is-system-running 2>/dev/null) || true
	case $state in running | degraded) break ;; esac
	sleep 0.05
done
case $state in
running | degraded) ;;
*)
	echo "harness: systemd --user did not come up (state '$state'); see $log_dir/systemd.log" >&2
	exit 1
	;;
esac

"$@"
