#!/bin/bash
# Static stability at start: when the agent starts (a reboot, an upgrade)
# and cannot render -- IMDS down -- but a .env from a previous run is
# there, it starts the units with that last good .env, says so, keeps
# retrying, and goes back to normal once rendering works.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
A=("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf")
agent_start
cp "$ENV_FILE" "$WORK/good.env"

step "as after a reboot: everything stopped, IMDS failing"
systemctl --user stop anb-agent.service nginx.service anb-api.service redis-server.service
imds_ctl fault '{"kind": "status", "status": 500, "count": 1000000, "path": ""}' >/dev/null
: >"$ROOT/agent.log"
agent_start
agent_log | grep -q "starting the units with the last good $ENV_FILE" || fail "no fallback: $(agent_log | tail -5)"
for u in redis-server anb-api nginx; do assert_eq "$(unit_prop $u.service ActiveState)" active "$u: $(agent_log | tail -20)"; done
assert_contains "$(curl -sf 127.0.0.1:8080/settings)" '"APP_ENV":"staging"' "app serves the last good values"
cmp -s "$ENV_FILE" "$WORK/good.env" || fail ".env changed"
assert_contains "$("${A[@]}" status)" "the last good $ENV_FILE from a previous run; rendering fails" "status"
assert_contains "$(systemctl --user status anb-agent.service)" "env: last good from a previous run, render failing" "STATUS="
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8081/health)" 200 "healthy on the last good .env"

step "IMDS back: the retry renders, nothing changed, nothing restarted"
api=$(unit_prop anb-api.service MainPID)
imds_ctl reset '{}' >/dev/null
current() { agent_log | grep -q "render works again; the .env is current"; }
wait_for 40 current || fail "no recovery: $(agent_log | tail -5)"
assert_eq "$(unit_prop anb-api.service MainPID)" "$api" "api not restarted for identical content"
assert_contains "$("${A[@]}" status)" "env          r1," "status current again"

step "no .env at all and IMDS failing: the agent waits (no units with nothing)"
systemctl --user stop anb-agent.service nginx.service anb-api.service redis-server.service
rm "$ENV_FILE"
imds_ctl fault '{"kind": "status", "status": 500, "count": 1000000, "path": ""}' >/dev/null
systemctl --user start --no-block anb-agent.service
waiting() { (systemctl --user status anb-agent.service || true) | grep -q "waiting to render the .env"; }
wait_for 20 waiting || fail "no waiting STATUS=: $(systemctl --user status anb-agent.service | head -12) $(agent_log | tail -5)"
assert_eq "$(unit_prop anb-api.service ActiveState)" inactive "api not started without a .env"
echo OK
