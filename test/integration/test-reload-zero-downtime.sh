#!/bin/bash
# An .env change fails no request: steady traffic through nginx on :8080
# (8 keep-alive connections, like an ALB's) while `anb-agent reload` with a
# changed tag restarts the API and the worker.  Every request's status is
# counted; any non-2xx or connection error fails the test, and the app must
# serve the new value afterwards.  The figures (requests during the reload,
# the longest request, the reload's duration) are printed for the report.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
tags() { printf '{"tags": {"Name": "anb-both-1", "anb:role": "both", "anb:env": "%s"}}' "$1"; }
start_imds "$(tags staging)"
app_setup "$WORK/root" "$IMDS_URL" user
sed -i 's#^REDIS_URL=.*#REDIS_URL=${tag:redis-url:-redis://127.0.0.1:6379/0}#' "$ROOT/etc/anb-agent/env.tmpl"
A=("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf")
agent_start
assert_contains "$(curl -sf 127.0.0.1:8080/settings)" '"APP_ENV":"staging"' "the app before the reload"
api_pid=$(unit_prop anb-api.service MainPID)

step "steady traffic through nginx, then a reload with a changed tag"
/usr/bin/python3 "$SRC/test/traffic.py" run 127.0.0.1:8080 /settings 8 "$WORK/stop" "$WORK/requests" \
	2>"$WORK/traffic.err" &
load=$!
at_exit "touch $WORK/stop; wait $load 2>/dev/null"
# What an ALB health check on the agent's port sees meanwhile: a unit the
# agent restarts on purpose does not fail /health.
/usr/bin/python3 "$SRC/test/traffic.py" run 127.0.0.1:8081 /health 1 "$WORK/stop" "$WORK/health" 2>/dev/null &
probe=$!
at_exit "touch $WORK/stop; wait $probe 2>/dev/null"
sleep 2
imds_ctl state "$(tags production)" >/dev/null
t0=$(date +%s%3N)
capture "${A[@]}" reload
t1=$(date +%s%3N)
echo "$out"
[ "$rc" -eq 0 ] || fail "reload exited $rc; the agent's log: $(agent_log | tail -20)"
assert_contains "$out" "restarted:      anb-api.service" "restarted units"
sleep 2
touch "$WORK/stop"
wait $load || fail "the traffic generator failed: $(cat "$WORK/traffic.err")"
wait $probe || true
[ "$(unit_prop anb-api.service MainPID)" != "$api_pid" ] || fail "the API was not restarted"

/usr/bin/python3 "$SRC/test/traffic.py" summary "$WORK/requests" "$t0" "$t1" >"$WORK/summary"
. "$WORK/summary"
echo "measured: reload $((t1 - t0)) ms; $window requests during it ($total in all); non-2xx $window_non2xx," \
	"connection errors $window_errors ($failures); longest request ${window_max_ms} ms" \
	"(p50 ${p50_ms} ms, p99 ${p99_ms} ms); new value served ${first_new_ms} ms after the reload began; $values"
h=$(/usr/bin/python3 "$SRC/test/traffic.py" summary "$WORK/health" "$t0" "$t1")
echo "measured: the agent's /health during the reload: $(sed -n 's/^window=//p' <<<"$h") probes," \
	"$(sed -n 's/^window_non2xx=//p' <<<"$h") not 2xx ($(sed -n 's/^failures=//p' <<<"$h"))"
[ "$total" -gt 100 ] || fail "too little traffic to prove anything ($total requests)"
[ "$window" -gt 0 ] || fail "no request overlapped the reload"
assert_eq "$non2xx" 0 "non-2xx answers ($failures)"
assert_eq "$errors" 0 "connection errors ($failures)"
assert_eq "$(sed -n 's/^window_non2xx=//p' <<<"$h")" 0 "the agent's /health during the restart"

step "the app serves the new value"
assert_contains "$(curl -sf 127.0.0.1:8080/settings)" '"APP_ENV":"production"' "the app after the reload"

# A reload succeeds only once the new API answers: gunicorn's READY=1
# comes before its workers import the app, so without the readiness probe
# a reload whose settings the app refuses would report success.
step "a reload with settings the app refuses reports the API failed"
imds_ctl state '{"tags": {"Name": "anb-both-1", "anb:role": "both", "anb:env": "production", "redis-url": "bogus"}}' >/dev/null
capture "${A[@]}" reload
echo "$out"
assert_eq "$rc" 70 "reload exit status"
assert_contains "$out" "failed:         anb-api.service" "the failed unit named"
echo "measured: a reload the new API refuses fails in $(sed -n "s/^result:.*, \([0-9]*\) ms$/\1/p" <<<"$out") ms"
echo OK
