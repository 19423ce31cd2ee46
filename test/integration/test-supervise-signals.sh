#!/bin/bash
# The agent learns of unit state changes from systemd's signals: a
# gunicorn master killed with SIGKILL shows in its log within a second.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start

pid=$(unit_prop anb-api.service MainPID)
[ "$pid" -gt 0 ] || fail "no MainPID"
step "kill -9 gunicorn's master ($pid)"
t0=$(date +%s%3N)
kill -9 "$pid"
seen() { agent_log | grep -q "anb-api.service: active/running → "; }
wait_for 1 seen || fail "agent did not log the change within 1 s: $(agent_log | tail -5)"
echo "measured: agent logged the change $(($(date +%s%3N) - t0)) ms after kill -9"
agent_log | grep "anb-api.service: active/running" | head -1

step "systemd restarts it (Restart=on-failure); the agent sees it come back"
back() { agent_log | grep -q "anb-api.service: .* → active/running"; }
wait_for 20 back || fail "agent did not see the unit come back"
echo OK
