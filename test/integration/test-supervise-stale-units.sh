#!/bin/bash
# The agent restarts (an upgrade, a crash, a watchdog kill) while the app
# keeps running, and its first render changes the .env: the units that read
# it (restart_on_change) were started on the old file, and starting a
# running unit does nothing, so they are restarted -- found by comparing
# each one's ExecMainStartTimestamp with when the .env was last written.
# With nothing changed, nothing restarts.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
pids() { for u in anb-api nginx redis-server; do printf '%s=%s ' $u "$(unit_prop $u.service MainPID)"; done; }
before=$(pids)

step "the agent restarted, nothing changed: nothing restarted"
systemctl --user restart anb-agent.service
sleep 0.5 # a restart the agent would ask for comes within milliseconds
assert_eq "$(pids)" "$before" "MainPIDs after an agent restart with the same .env"
agent_log | grep -q "started before the .env" && fail "a restart for an unchanged .env: $(agent_log | tail -5)"

step "stopped, the tag changed, started: the API restarts on the new .env, nginx and redis keep theirs"
systemctl --user stop anb-agent.service
imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "production"}}' >/dev/null
agent_start
api_before=$(echo "$before" | tr ' ' '\n' | grep '^anb-api=')
restarted() { [ "anb-api=$(unit_prop anb-api.service MainPID)" != "$api_before" ]; }
wait_for 20 restarted || fail "anb-api kept its MainPID: $(agent_log | tail -8)"
agent_log | grep -q "anb-api.service started before the .env it reads was last written" ||
	fail "no line saying why: $(agent_log | tail -8)"
serves() { curl -sf 127.0.0.1:8080/settings | grep -q '"APP_ENV":"production"'; }
wait_for 20 serves || fail "the app does not serve the new value: $(curl -s 127.0.0.1:8080/settings)"
for u in nginx redis-server; do
	assert_eq "$(unit_prop $u.service MainPID)" "$(echo "$before" | tr ' ' '\n' | grep "^$u=" | cut -d= -f2)" "$u kept its MainPID"
done
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8081/health)" 200 "healthy after"
count=$(agent_log | grep -c "started before the .env" || true)
sleep 1
assert_eq "$(agent_log | grep -c "started before the .env" || true)" "$count" "no second restart"
echo OK
