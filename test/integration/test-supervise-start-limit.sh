#!/bin/bash
# A unit that hits its start limit (systemd gives up: failed) is reset (ResetFailedUnit) and started
# again with backoff, and the agent logs both.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
flaky_setup
agent_start

recovery() { agent_log | grep -q "flaky.service stayed failed (systemd stopped restarting it: start limit, or no Restart=); ResetFailedUnit and StartUnit, attempt $1"; }
wait_for 10 recovery 1 || fail "no recovery: $(agent_log | tail -5)"
touch "$WORK/flaky-ok"
up() { [ "$(unit_prop flaky.service ActiveState)" = active ]; }
wait_for 10 up || fail "flaky.service was not restarted: $(agent_log | tail -5)"
echo OK
