#!/bin/bash
# /health as an ALB sees it (a new connection per probe, 5 s timeout):
# starting (503) → healthy (200) → 503 within 100 ms of a required unit
# failing → 200 once it is back; the app check; /health/live; /metrics;
# hostile requests over real TCP.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
cat >>"$ROOT/etc/anb-agent/agent.conf" <<CONF
[units]
start_limit_retry = 2
[health]
upstream = http://127.0.0.1:8000/health
upstream_interval_ms = 200
CONF
H=127.0.0.1:8081
probe() { /usr/bin/python3 "$SRC/test/alb_probe.py" "$@"; }

step "while bootstrap waits for IMDS, /health says starting (503)"
# count 2: the agent has two IMDS clients (rendering, and the spot/ASG poll).
imds_ctl fault '{"kind": "slow", "delay_ms": 1500, "path": "api/token", "count": 2}' >/dev/null
systemctl --user start --no-block anb-agent.service
listening() { probe once $H /health/live >/dev/null 2>&1; }
wait_for 5 listening || fail "health port not bound"
assert_contains "$(probe once $H)" '503 {"status":"starting","failing":["env"' "starting"
assert_eq "$(unit_prop anb-agent.service ActiveState)" activating "not READY before bootstrap"

step "after bootstrap: healthy (200)"
ms=$(probe until $H 200 15) || fail "never healthy: $(agent_log | tail -5)"
assert_eq "$(probe once $H)" '200 {"status":"healthy","failing":[],"env_revision":1}' "healthy body"
assert_eq "$(unit_prop anb-agent.service ActiveState)" active "READY"

step "a required unit fails: 503 within 100 ms"
systemctl --user kill --signal=KILL nginx.service
ms=$(probe until $H 503 5) || fail "no 503 after nginx died"
echo "measured: /health turned 503 $ms ms after nginx was killed"
[ "$ms" -lt 100 ] || fail "took $ms ms"
assert_contains "$(probe once $H)" '"failing":["unit:nginx.service"]' "failing check named"
step "the agent brings it back; 200 again"
ms=$(probe until $H 200 15) || fail "not healthy again: $(agent_log | tail -5)"
echo "measured: healthy again $ms ms later (start_limit_retry = 2 s)"

step "the app check: a stopped gunicorn fails it while its unit is still active"
# This run's gunicorn only (its master and workers): another run may share
# the PID namespace.
main_pid=$(systemctl --user show -P MainPID anb-api.service)
api_pids="$main_pid $(pgrep -P "$main_pid" | tr '\n' ' ')"
kill -STOP $api_pids
ms=$(probe until $H 503 10) || fail "app check did not fail"
assert_contains "$(probe once $H)" '"failing":["app"]' "app check named"
kill -CONT $api_pids
probe until $H 200 10 >/dev/null || fail "app check did not recover"
echo "measured: app check failed $ms ms after SIGSTOP (2 s timeout)"

step "/health/live, /metrics"
assert_eq "$(probe once $H /health/live)" "200 ok" "live"
metrics=$(curl -sf http://$H/metrics)
assert_contains "$metrics" 'anb_health_status 1' "health metric"
assert_contains "$metrics" 'anb_unit_active{unit="nginx.service",state="active"} 1' "unit metric"
assert_contains "$metrics" 'anb_imds_requests_total{kind="token"}' "imds metric"
assert_contains "$metrics" 'anb_health_probes_total{code="200"}' "probe counter"

step "hostile requests over TCP"
raw() { printf "$1" | probe raw $H | head -1 | tr -d '\r'; }
assert_eq "$(raw 'POST /health HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')" "HTTP/1.1 405 Method Not Allowed" "405"
assert_eq "$(raw 'GET /admin HTTP/1.1\r\nConnection: close\r\n\r\n')" "HTTP/1.1 404 Not Found" "404"
assert_eq "$(raw 'GARBAGE\r\n\r\n')" "HTTP/1.1 400 Bad Request" "400"
assert_eq "$(raw 'GET /health HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n')" "HTTP/1.1 400 Bad Request" "CL+TE"
big=$(head -c 9000 /dev/zero | tr '\0' a)
assert_eq "$(raw "GET /health HTTP/1.1\r\nX: $big\r\n\r\n")" "HTTP/1.1 431 Request Header Fields Too Large" "431"
step "a slow client is cut off by the header timeout"
t0=$(date +%s%3N)
out=$(printf 'GET /health HTTP/1.1\r\n' | probe raw $H)
echo "measured: header timeout closed a slow request after $(($(date +%s%3N) - t0)) ms"
assert_eq "$out" "" "no answer to an unfinished request"
step "600 slow clients (over the 512 cap) do not keep a probe out"
probe hold $H 600 6 >"$WORK/hold.out" &
holder=$!
wait_for 5 grep -q holding "$WORK/hold.out" || fail "holder did not start"
t0=$(date +%s%3N)
assert_eq "$(probe once $H | cut -c1-3)" 200 "probe under slowloris"
echo "measured: probe answered in $(($(date +%s%3N) - t0)) ms with 600 slow clients"
kill $holder 2>/dev/null || true
wait $holder 2>/dev/null || true
agent_log | grep -q "GET /health" && fail "per-probe logging"
echo OK
