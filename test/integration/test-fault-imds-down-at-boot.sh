#!/bin/bash
# Fault: IMDS is down (nothing listens) when the agent starts.
# Must hold: the agent retries with backoff (growing delays, not a busy
# loop); /health answers 503 "starting" meanwhile; systemd's status line
# and `anb-agent status` say why; when IMDS comes back it bootstraps and
# turns healthy without a restart.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"

# IMDS on a fixed port that we can take down and bring back.
imds_up() {
	/usr/bin/python3 "$SRC/test/fakes/imds.py" --port "$1" --port-file "$WORK/imds.port" \
		--state <(echo '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}') \
		2>>"$WORK/imds.log" &
	IMDS_PID=$!
	at_exit "kill $IMDS_PID 2>/dev/null"
}
imds_up 0
wait_for 10 test -s "$WORK/imds.port" || fail "IMDS fake did not start"
port=$(cat "$WORK/imds.port")
IMDS_URL=http://127.0.0.1:$port
kill "$IMDS_PID"
wait "$IMDS_PID" 2>/dev/null || true
rm -f "$WORK/imds.port"
curl -s -m 1 "$IMDS_URL/" && fail "IMDS still answers"

app_setup "$WORK/root" "$IMDS_URL" user
t0=$(date +%s%3N)
systemctl --user start --no-block anb-agent.service

step "IMDS down: 503 starting, status says why"
listening() { curl -s -m 1 -o /dev/null 127.0.0.1:8081/health/live; }
wait_for 10 listening || fail "health port not bound: $(agent_log | tail -5)"
retrying() { agent_log | grep -q "retrying the render in"; }
wait_for 10 retrying || fail "no retry: $(agent_log | tail -5)"
health=$(curl -s -w ' %{http_code}' 127.0.0.1:8081/health)
assert_contains "$health" '"status":"starting"' "/health body"
assert_contains "$health" ' 503' "/health code"
assert_eq "$(unit_prop anb-agent.service ActiveState)" activating "not READY while IMDS is down"
st=$(unit_prop anb-agent.service StatusText)
echo "status line: $st"
assert_contains "$st" "waiting to render the .env" "systemd status says why"
assert_contains "$st" "IMDS" "systemd status names IMDS"
capture agent_cli status
echo "$out" | head -12
assert_contains "$out" "starting" "anb-agent status while starting"

pid=$(agent_pid)
c0=$(cpu_ms "$pid")
sleep 20
c1=$(cpu_ms "$pid")
echo "measured: agent CPU while IMDS was down: $((c1 - c0)) ms over 20 s"
[ $((c1 - c0)) -lt 2000 ] || fail "busy loop: $((c1 - c0)) ms CPU in 20 s"
delays=$(agent_log | sed -n 's/.*retrying the render in \([0-9.]*\)s.*/\1/p' | tr '\n' ' ')
echo "measured: render retry delays so far: $delays(s)"
tokens=$(grep -c . <<<"$delays")
for d in $delays; do
	# backoff: at least 1 s apart (no busy loop), at most 32 s (+jitter rounding)
	awk -v d="$d" 'BEGIN { exit !(d >= 1 && d <= 33) }' || fail "retry delay $d s out of [1, 33]"
done
set -- $delays
[ $# -ge 2 ] || fail "fewer than 2 retries in 20 s: $delays"
assert_contains "$(curl -s 127.0.0.1:8081/health)" '"status":"starting"' "still starting"

step "IMDS back: bootstraps and turns healthy"
imds_up "$port"
t1=$(date +%s%3N)
ready() { [ "$(unit_prop anb-agent.service ActiveState)" = active ]; }
wait_for 45 ready || fail "did not recover: $(agent_log | tail -5)"
echo "measured: healthy $(($(date +%s%3N) - t1)) ms after IMDS came back ($(($(date +%s%3N) - t0)) ms after start)"
assert_contains "$(curl -s -w ' %{http_code}' 127.0.0.1:8081/health)" '"status":"healthy"' "healthy after recovery"
test -s "$ENV_FILE" || fail "no .env"
n=$(agent_log | grep -c "retrying the render in" || true)
echo "measured: $n render retries before recovery"
echo OK
