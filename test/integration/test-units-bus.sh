#!/bin/bash
# systemd/units against a real manager: the async contract (no callback
# before units_run returns, units_cancel and units_free are silent, no
# reply reaches an untracked unit), start/stop jobs queued together, and
# busloop: deinit is silent and does not wait for a peer that stopped
# reading.
# Runs the unit-test binary's "units_bus" suite next to the harness's
# systemd --user (the sanitizer build's when ANB_UNIT_TESTS names it).
. "$(dirname "$0")/lib.sh"
tests=${ANB_UNIT_TESTS:-$(dirname "$ANB_AGENT")/test/unit-tests}
[ -x "$tests" ] || fail "no unit-test binary at $tests (make build/test/unit-tests)"

mk() { # name extra-unit-lines exec-start
	printf '[Unit]\n%s\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=%s\n' "$2" "$3" \
		>"$ANB_UNIT_DIR/$1.service"
}
mk anbt-slow "" "/bin/sleep 0.5"
mk anbt-fast "" "/bin/true"
mk anbt-after "After=anbt-slow.service" "/bin/true"
systemctl --user daemon-reload

step "units_bus suite"
# One test stops the bus daemon (SIGSTOP) and continues it; whatever
# happens to the test, the bus is continued afterwards.
dbus_pid=$(cat /run/dbus.pid)
at_exit "kill -CONT $dbus_pid"
ANB_TEST_DBUS_PID=$dbus_pid ANB_TEST_SYSTEMD_BUS=1 CK_RUN_SUITE=units_bus CK_VERBOSITY=verbose "$tests" 2>&1 | tee "$WORK/units.err"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "units_bus suite failed"
grep -q "100%: Checks: 7, Failures: 0, Errors: 0" "$WORK/units.err" || fail "not every check ran"
echo OK
