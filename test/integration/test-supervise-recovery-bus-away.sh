#!/bin/bash
# A start-limit recovery that falls due while the bus is away is made once
# the bus is back.  (Before: it was dropped for good -- after the reconnect
# the unit reads "failed" again, no change, so nothing scheduled it -- and
# the unit stayed failed.)
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
/usr/bin/python3 "$SRC/test/bus_relay.py" "$WORK/relay.sock" "${ANB_BUS#unix:path=}" &
relay=$!
at_exit "kill $relay 2>/dev/null"
wait_for 5 test -S "$WORK/relay.sock" || fail "relay did not start"
ANB_BUS=unix:path=$WORK/relay.sock flaky_setup system
systemctl --user start --no-block anb-agent.service

attempt() { agent_log | grep -q "flaky.service stayed failed .*attempt $1$"; }
wait_for 15 attempt 1 || fail "no first recovery: $(agent_log | tail -5)"
failed() { [ "$(unit_prop flaky.service ActiveState)" = failed ]; }
wait_for 10 failed || fail "flaky.service did not fail again"

step "the bus goes away for 4 s while the next attempt (1-2 s) falls due"
kill -USR2 $relay
lost() { agent_log | grep -q "lost the connection to systemd"; }
wait_for 5 lost || fail "disconnect not noticed: $(agent_log | tail -3)"
touch "$WORK/flaky-ok"
sleep 4
attempt 2 && fail "an attempt was made without a bus"
kill -USR2 $relay

step "the bus is back: the attempt is made, the unit runs"
back() { agent_log | sed -n '/lost the connection to systemd/,$p' | grep -q "connected to systemd"; }
wait_for 15 back || fail "no reconnect: $(agent_log | tail -3)"
up() { [ "$(unit_prop flaky.service ActiveState)" = active ]; }
wait_for 15 up || fail "flaky.service stayed $(unit_prop flaky.service ActiveState): $(agent_log | tail -5)"
attempt 2 || fail "attempt 2 not logged: $(agent_log | tail -5)"
echo OK
