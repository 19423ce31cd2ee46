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
#
# The harness also gets its own network namespace with only loopback up
# (unshare --net), so ports such as 8080, 8081 and 6379 never collide with
# another run or with `make demo`; ANB_HARNESS_NET=host keeps the host's
# network (the demo, whose ports the user reaches).
set -u

if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	net=--net
	[ "${ANB_HARNESS_NET:-own}" = host ] && net=
	exec env ANB_HARNESS_INNER=1 unshare --mount $net --propagation private --fork -- "$0" "$@"
fi
if [ "${ANB_HARNESS_NET:-own}" != host ]; then
	ip link set lo up || { echo "harness: cannot bring up loopback in the test's network namespace" >&2; exit 1; }
fi

own_log_dir=
if [ -z "${ANB_HARNESS_LOG:-}" ]; then
	log_dir=$(mktemp -d "${TMPDIR:-/tmp}/anb-harness.XXXXXX")
	own_log_dir=$log_dir # removed at exit when CMD succeeded
else
	log_dir=$ANB_HARNESS_LOG
fi
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
# The cgroup tree is the host's, shared by every harness running at once: a
# manager started in the root cgroup puts its units at /app.slice/UNIT, the
# same path in every run, so one run's stop of anb-api.service would kill
# (KillMode=, final SIGKILL) another run's processes.  Each run's manager
# gets a cgroup of its own to put its units under.  Its name ends in .slice
# so that journald, which skips slices when it derives a process's unit
# from its cgroup path, still logs the units as anb-agent.service etc.
cgroups=()
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
	[ -w "$h/cgroup.procs" ] || continue
	[ "$h" = /sys/fs/cgroup ] && [ ${#cgroups[@]} -gt 0 ] && continue
	mkdir "$h/anb-harness-$$.slice" 2>/dev/null && echo $$ >"$h/anb-harness-$$.slice/cgroup.procs" &&
		cgroups+=("$h")
done
/lib/systemd/systemd --user --log-target=console >"$log_dir/systemd.log" 2>&1 &
manager=$!

teardown() {
	local rc=$?
	trap - EXIT INT TERM
	systemctl --user exit >/dev/null 2>&1 || true
	for _ in $(seq 100); do
		kill -0 "$manager" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$manager" 2>/dev/null || true
	wait "$manager" 2>/dev/null || true
	local h
	for h in "${cgroups[@]}"; do
		echo $$ >"$h/cgroup.procs" 2>/dev/null || true
		find "$h/anb-harness-$$.slice" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	kill "$(cat /run/dbus.pid)" 2>/dev/null || true
	if [ -n "$journald" ]; then
		kill "$journald" 2>/dev/null || true
		wait "$journald" 2>/dev/null || true
	fi
	# A log directory of our own goes with a run that passed; a failed
	# run's stays for reading.
	if [ -n "$own_log_dir" ] && [ "$rc" -eq 0 ]; then rm -rf "$own_log_dir"; fi
	return "$rc"
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
