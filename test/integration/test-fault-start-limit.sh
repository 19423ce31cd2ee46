#!/bin/bash
# Fault: a managed unit crash-loops until systemd gives up (start-limit-hit).
# Must hold: the agent resets it (ResetFailedUnit) and starts it again,
# with growing backoff between attempts ([units] start_limit_retry, jittered
# down to half of it at first); /health answers 503 naming the unit meanwhile; each
# attempt is logged once; when the unit can run again it is brought back
# and /health turns 200.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
flaky_setup
systemctl --user start --no-block anb-agent.service

resets() { agent_log | grep -c "flaky.service stayed failed" || true; }
at_least() { [ "$(resets)" -ge "$1" ]; }
wait_for 20 at_least 1 || fail "no recovery attempt: $(agent_log | tail -5)"
probes_start 6
pid=$(agent_pid)
c0=$(cpu_ms "$pid")
t=("$(date +%s%3N)")
for n in 2 3 4; do
	wait_for 60 at_least $n || fail "no recovery attempt $n: $(agent_log | tail -5)"
	t+=("$(date +%s%3N)")
done
probes_wait
echo "measured: probes while crash-looping: $PROBES; agent CPU $(($(cpu_ms "$pid") - c0)) ms"
echo "measured: reset+start attempts at +0, +$((t[1] - t[0])), +$((t[2] - t[0])), +$((t[3] - t[0])) ms (start_limit_retry = 1 s)"
nums=$(agent_log | sed -n 's/.*flaky.service stayed failed .*attempt \([0-9]*\)$/\1/p' | tr '\n' ' ')
echo "measured: attempt numbers logged: $nums"
[ "$PROBES_MISSED" -eq 0 ] || fail "probes unanswered"

missing=()
[ $((t[3] - t[2])) -ge 900 ] || missing+=("attempts $((t[3] - t[2])) ms apart: no backoff")
[ $((t[3] - t[2])) -ge $(((t[1] - t[0]) * 3 / 2)) ] ||
	missing+=("backoff does not grow (gaps $((t[1] - t[0])) then $((t[3] - t[2])) ms): the attempt counter restarts at 1 each time the unit is briefly active/running")
for n in 1 2 3; do
	c=$(grep -o "\b$n\b" <<<"$nums" | wc -l)
	[ "$c" = 1 ] || { missing+=("attempt $n logged $c times, want once (attempt numbers: $nums)"); break; }
done
# Counted from the first failure on: the first start looks fine until the
# unit crashes, and nothing can know better then.
flaps=$(agent_log | sed -n '/flaky.service: .* → failed/,$p' | grep -c "health: healthy (200)" || true)
echo "measured: /health turned healthy $flaps time(s) during the crash loop (log)"
[[ $PROBES != *200:* ]] && [ "$flaps" -le 0 ] ||
	missing+=("/health turned healthy $flaps time(s) while flaky.service crash-looped (probes: $PROBES): a Type=simple unit counts as up the moment it is forked")

step "the unit can run again: brought back, healthy"
touch "$WORK/flaky-ok"
up() { [ "$(unit_prop flaky.service ActiveState)" = active ]; }
t0=$(date +%s%3N)
wait_for 90 up || fail "flaky.service was not restarted: $(agent_log | tail -5)"
healthy() { curl -s 127.0.0.1:8081/health | grep -q '"status":"healthy"'; }
wait_for 10 healthy || fail "not healthy: $(curl -s 127.0.0.1:8081/health)"
echo "measured: active and healthy $(($(date +%s%3N) - t0)) ms after it could run again"
[ ${#missing[@]} -eq 0 ] || fail "MISSING BEHAVIOUR: $(printf '%s; ' "${missing[@]}")"
echo OK
