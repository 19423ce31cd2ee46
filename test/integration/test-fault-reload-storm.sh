#!/bin/bash
# Fault: 10 reloads are asked at once (control clients).
# Must hold: they are coalesced -- while one render runs, every request
# that arrives joins the next one, so 10 callers cost at most 2 renders
# (anb_renders_total) and one restart of the units; every caller gets an
# answer (exit 0).
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
renders() { curl -s 127.0.0.1:8081/metrics | awk '$1 == "anb_renders_total" {print $2}'; }
r0=$(renders)
[ -n "$r0" ] || fail "no anb_renders_total in /metrics"
api=$(unit_prop anb-api.service MainPID)

imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "stormy"}}' >/dev/null
t0=$(date +%s%3N)
for i in $(seq 10); do
	agent_cli reload >"$WORK/reload.$i" 2>&1 &
	eval "p$i=$!"
done
bad=0
for i in $(seq 10); do
	eval "wait \$p$i" || { bad=$((bad + 1)); echo "caller $i: $(cat "$WORK/reload.$i")"; }
done
ms=$(($(date +%s%3N) - t0))
r1=$(renders)
n=$((r1 - r0))
restarts=$(agent_log | grep -c "restarted: anb-api.service" || true)
echo "measured: 10 concurrent reloads answered in $ms ms; $n renders; anb-api restarted $restarts time(s)"
[ "$bad" -eq 0 ] || fail "$bad callers got no successful answer"
[ "$n" -le 2 ] || fail "$n renders for 10 concurrent reloads: not coalesced"
[ "$restarts" -le 1 ] || fail "anb-api restarted $restarts times"
[ "$(unit_prop anb-api.service MainPID)" != "$api" ] || fail "anb-api was not restarted for the change"
grep -q "^APP_ENV='stormy'$" "$ENV_FILE" || fail "not rendered"
echo OK
