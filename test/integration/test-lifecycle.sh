#!/bin/bash
# The daemon's lifecycle (daemon/lifecycle.h) on the real manager: the two
# defects the old seven-flag lifecycle had, and SIGTERM's drain grace.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
A=("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf")
H=127.0.0.1:8081
code() { curl -s -o /dev/null -w '%{http_code}' "http://$H${1:-/health}"; }

step "SIGTERM while a render waits on a slow IMDS: a clean exit, no reload logic re-entered"
# count 2: the agent has two IMDS clients (rendering, and the spot/ASG poll).
imds_ctl fault '{"kind": "slow", "delay_ms": 4000, "path": "api/token", "count": 2}' >/dev/null
systemctl --user start --no-block anb-agent.service
bound() { [ "$(code /health/live)" = 200 ]; }
wait_for 10 bound || fail "health port not bound: $(agent_log | tail -5)"
sleep 0.5
t0=$(date +%s%3N)
systemctl --user stop anb-agent.service
echo "measured: stopped $(($(date +%s%3N) - t0)) ms after SIGTERM, mid-render"
assert_eq "$(unit_prop anb-agent.service Result)" success "agent's Result after SIGTERM mid-render (exit status $(unit_prop anb-agent.service ExecMainStatus))"
assert_not_contains "$(agent_log)" "reload failed" "no reload failure logged for a cancelled render"
assert_contains "$(agent_log)" "Terminated: exiting" "exit logged"
imds_ctl reset '{}' >/dev/null

step "a retry that falls due while slow units start is kept, not dropped"
agent_start
systemctl --user stop anb-agent.service nginx.service anb-api.service redis-server.service
# anb-api now takes 5 s to start: longer than the first retry (2-4 s).
mkdir -p "$ANB_UNIT_DIR/anb-api.service.d"
printf '[Service]\nExecStartPre=/bin/sleep 5\n' >"$ANB_UNIT_DIR/anb-api.service.d/slow.conf"
systemctl --user daemon-reload
imds_ctl fault '{"kind": "status", "status": 500, "count": 1000000, "path": ""}' >/dev/null
: >"$ROOT/agent.log"
systemctl --user start --no-block anb-agent.service
fallback() { agent_log | grep -q "starting the units with the last good"; }
wait_for 20 fallback || fail "no fallback to the last good .env: $(agent_log | tail -5)"
imds_ctl reset '{}' >/dev/null
t0=$(date +%s%3N)
current() { agent_log | grep -q "render works again; the .env is current"; }
# The retry falls due during the 5 s start and runs right after it: well
# within 15 s.  Dropped, it waited for the next refresh (minutes).
wait_for 15 current || fail "the retry was dropped: $(agent_log | tail -8)"
echo "measured: current again $(($(date +%s%3N) - t0)) ms after IMDS came back (units took 5 s to start)"
rm -r "$ANB_UNIT_DIR/anb-api.service.d/slow.conf"
systemctl --user daemon-reload

step "SIGTERM with [drain] grace: 503 for the grace, then exit; the units keep running"
sed -i 's/^grace = 0$/grace = 3/' "$ROOT/etc/anb-agent/agent.conf"
systemctl --user restart anb-agent.service || fail "restart: $(agent_log | tail -12; systemctl --user status anb-agent.service | head -12)"
assert_eq "$(code)" 200 "healthy before the stop"
systemctl --user stop --no-block anb-agent.service
t0=$(date +%s%3N)
drained() { [ "$(code)" = 503 ]; }
wait_for 2 drained || fail "no 503 within 2 s of SIGTERM"
assert_contains "$(curl -s http://$H/health)" '"status":"draining"' "draining body"
capture "${A[@]}" reload
assert_eq "$rc" 69 "reload refused while draining: $out"
assert_contains "$out" "stopping" "reload refusal says why"
gone() { [ "$(unit_prop anb-agent.service ActiveState)" = inactive ]; }
wait_for 10 gone || fail "agent did not exit after the grace"
ms=$(($(date +%s%3N) - t0))
[ "$ms" -ge 2500 ] || fail "exited after $ms ms: before the 3 s grace"
echo "measured: SIGTERM → exit $ms ms with grace = 3 s"
for u in redis-server anb-api nginx; do assert_eq "$(unit_prop $u.service ActiveState)" active "$u keeps running"; done
assert_contains "$(agent_log)" "draining: /health answers 503 for 3s" "drain logged"
echo OK
