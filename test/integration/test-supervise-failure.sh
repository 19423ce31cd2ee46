#!/bin/bash
# A unit that cannot start: the agent names the unit, the job result and
# the unit's state, says what to check, and leaves the others as they are.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
# Break nginx: its ExecStartPre (nginx -t) fails.
echo "this is not nginx syntax" >>"$ROOT/etc/nginx/nginx.conf"
agent_start

step "the failure is reported with unit, result, state and where to look"
agent_log | grep -F "nginx.service: StartUnit job failed; unit is failed/failed, Result=exit-code — check \`journalctl -u nginx.service\`" \
	|| fail "no failure report: $(agent_log)"
step "the units that could start are running"
assert_eq "$(unit_prop redis-server.service ActiveState)" active "redis"
assert_eq "$(unit_prop anb-api.service ActiveState)" active "api"
assert_eq "$(unit_prop nginx.service ActiveState)" failed "nginx"
assert_contains "$(systemctl --user status anb-agent.service)" "unhealthy · web · 3/4 units active" "STATUS="
echo OK
