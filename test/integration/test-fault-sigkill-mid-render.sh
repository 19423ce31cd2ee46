#!/bin/bash
# Fault: the agent is SIGKILLed in the middle of a render (while IMDS is
# slow to answer), then systemd restarts it (Restart=on-failure); and a
# previous agent was killed in the middle of writing (a partial temporary
# .env next to the .env).
# Must hold: no partial .env (the .env is the old one, byte for byte,
# until the restarted agent replaces it whole); no temporary file left
# once the agent runs again; the units keep running untouched while the
# agent is down; after the restart the agent is healthy and renders the
# new value.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
dir=$(dirname "$ENV_FILE")
cp -p "$dir/.env" "$WORK/env.before"
pids() { for u in anb-api nginx redis-server; do printf '%s=%s ' $u "$(unit_prop $u.service MainPID)"; done; }
before=$(pids)

step "SIGKILL while a reload waits for IMDS"
imds_ctl fault '{"kind": "slow", "delay_ms": 3000, "count": 100}' >/dev/null
imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "after-kill"}}' >/dev/null
agent_cli reload >"$WORK/reload.out" 2>&1 &
rl=$!
sleep 1
pid=$(agent_pid)
grep -q "reload: requested" "$ROOT/agent.log" || fail "the reload had not begun"
kill -KILL "$pid"
wait $rl 2>/dev/null || true
echo "reload client said: $(cat "$WORK/reload.out")"
cmp "$WORK/env.before" "$dir/.env" || fail "the .env changed under a killed render"
# A previous agent killed mid-write leaves a partial temporary file.
printf 'APP_ENV=half-writ' >"$dir/.env.anb-agent.Xk1lld"
chmod 0600 "$dir/.env.anb-agent.Xk1lld"
sleep 1
assert_eq "$(pids)" "$before" "units untouched while the agent is down"

step "systemd restarts the agent"
imds_ctl reset >/dev/null
t0=$(date +%s%3N)
restarted() { [ "$(unit_prop anb-agent.service MainPID)" != "$pid" ] && [ "$(unit_prop anb-agent.service ActiveState)" = active ]; }
wait_for 30 restarted || fail "not restarted: $(agent_log | tail -5)"
echo "measured: agent active again $(($(date +%s%3N) - t0)) ms after SIGKILL (RestartSec=5s)"
grep -q "^APP_ENV='after-kill'$" "$dir/.env" || fail "new value not rendered after the restart"
healthy() { curl -s 127.0.0.1:8081/health | grep -q '"status":"healthy"'; }
wait_for 20 healthy || fail "not healthy after the restart: $(curl -s 127.0.0.1:8081/health)"
for u in nginx redis-server; do
	b=$(tr ' ' '\n' <<<"$before" | grep "^$u=")
	a=$(tr ' ' '\n' <<<"$(pids)" | grep "^$u=")
	assert_eq "$a" "$b" "$u kept its MainPID across the agent's restart"
done
left=$(temp_files "$dir")
[ -z "$left" ] || fail "MISSING BEHAVIOUR (stale temp cleanup at start): temporary file left after the restart: $left"
echo OK
