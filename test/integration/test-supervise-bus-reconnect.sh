#!/bin/bash
# The agent's bus connection goes away (cut by a relay in front of the
# bus): it says so, reconnects with backoff, rebuilds its state table, and
# again sees unit changes by signals.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
/usr/bin/python3 "$SRC/test/bus_relay.py" "$WORK/relay.sock" "${ANB_BUS#unix:path=}" &
relay=$!
at_exit "kill $relay 2>/dev/null"
wait_for 5 test -S "$WORK/relay.sock" || fail "relay did not start"
ANB_BUS=unix:path=$WORK/relay.sock app_setup "$WORK/root" "$IMDS_URL" system
agent_start

step "cut the connection"
kill -USR1 $relay
lost() { agent_log | grep -q "lost the connection to systemd"; }
wait_for 5 lost || fail "disconnect not noticed: $(agent_log | tail -3)"
back() { agent_log | grep -q "connected to systemd"; }
wait_for 10 back || fail "no reconnect: $(agent_log | tail -3)"
echo "measured: reconnected after $(agent_log | grep -c 'lost the connection') disconnect(s)"
assert_contains "$("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf" status)" "anb-api.service          active/running" "state table rebuilt"

step "signals arrive on the new connection"
pid=$(unit_prop anb-api.service MainPID)
kill -9 "$pid"
seen() { agent_log | grep -q "anb-api.service: active/running → "; }
wait_for 2 seen || fail "no unit change seen after reconnect: $(agent_log | tail -3)"
echo OK
