#!/bin/bash
# The fleet lifecycle on the real manager, against the IMDS and AWS fakes
# (Auto Scaling calls SigV4-verified and recorded): the launch hook's
# CONTINUE exactly once, at the first 200; a spot interruption notice
# turns /health to 503 within 2 s and status says why; the ASG's target
# lifecycle state Terminated drains, stops the units in reverse order, and
# then completes the terminate hook.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
asg_setup "launch_hook = anb-launch
terminate_hook = anb-terminate
heartbeat = 10"
A=("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf")
H=127.0.0.1:8081
code() { curl -s -o /dev/null -w '%{http_code}' "http://$H/health"; }
calls() { # calls PYTHON-FILTER-ON-c: the recorded Auto Scaling calls that match
	aws_stat "len([c for c in s['lifecycle'] if $1])"
}
agent_start
assert_eq "$(code)" 200 "healthy"

step "launch hook: CONTINUE once the instance is healthy, exactly once"
sent() { [ "$(calls "c['hook'] == 'anb-launch' and c['action'] == 'CompleteLifecycleAction'")" -ge 1 ]; }
wait_for 10 sent || fail "no CompleteLifecycleAction for the launch hook: $(agent_log | tail -5)"
aws_stat "s['lifecycle'][0]" | tee "$WORK/launch.rec"
assert_contains "$(cat "$WORK/launch.rec")" "'group': 'anb-web-asg'" "group from the tag"
assert_contains "$(cat "$WORK/launch.rec")" "'instance': 'i-0123456789abcdef0'" "instance from the identity document"
assert_contains "$(cat "$WORK/launch.rec")" "'result': 'CONTINUE'" "CONTINUE"
assert_contains "$(cat "$WORK/launch.rec")" "'error': None" "AWS accepted it"
# Health flaps (nginx killed, brought back) and a reload: no second call.
systemctl --user kill --signal=KILL nginx.service
unhealthy() { [ "$(code)" = 503 ]; }
wait_for 5 unhealthy || true
healthy() { [ "$(code)" = 200 ]; }
wait_for 30 healthy || fail "not healthy again: $(agent_log | tail -5)"
"${A[@]}" reload >/dev/null
assert_eq "$(calls "c['hook'] == 'anb-launch' and c['action'] == 'CompleteLifecycleAction'")" 1 "launch hook completed once"
assert_eq "$(aws_stat 's["signatures_invalid"]')" 0 "every Auto Scaling call signed correctly"

step "the agent asks IMDS cheaply: no token PUT, about two GETs a second"
before=$(imds_ctl stats)
sleep 3
after=$(imds_ctl stats)
/usr/bin/python3 - "$before" "$after" <<'PY' || fail "IMDS poll cost"
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
key = "meta-data/spot/instance-action"
spot = a["by_path"].get(key, 0) - b["by_path"].get(key, 0)
tok = a["token_put"] - b["token_put"]
assert 2 <= spot <= 5, "spot polls in 3 s: %d" % spot
assert tok == 0, "token PUTs while polling: %d (the token is cached)" % tok
print("measured: %d spot polls and %d token PUTs in 3 s" % (spot, tok))
PY

step "spot interruption notice: 503 within 2 s, and status says why"
t0=$(date +%s%3N)
imds_ctl state '{"spot_instance_action": {"action": "terminate", "time": "2026-11-23T13:00:00Z"}}' >/dev/null
wait_for 2 unhealthy || fail "no 503 within 2 s of the spot notice"
echo "measured: spot notice → 503 in $(($(date +%s%3N) - t0)) ms"
assert_contains "$(curl -s http://$H/health)" '"status":"draining"' "health body"
assert_contains "$("${A[@]}" status --json)" '"drain_reason": "spot interruption notice"' "status --json"
assert_contains "$("${A[@]}" status)" "yes (/health answers 503): spot interruption notice, terminate at 2026-11-23T13:00:00Z" "status names the reason"
assert_contains "$(systemctl --user status anb-agent.service)" "draining · spot interruption notice: terminate at 2026-11-23T13:00:00Z" "STATUS="
assert_contains "$(agent_log)" "spot interruption notice: terminate at 2026-11-23T13:00:00Z" "logged"
for u in redis-server anb-api nginx; do assert_eq "$(unit_prop $u.service ActiveState)" active "$u keeps running on a spot notice"; done

step "a notice whose text would forge lines is neither logged nor notified raw"
mainpid=$(unit_prop anb-agent.service MainPID)
imds_ctl state '{"spot_instance_action": {"action": "stop\nREADY=1", "time": "x\nMAINPID=1"}}' >/dev/null
sleep 2
assert_eq "$(unit_prop anb-agent.service MainPID)" "$mainpid" "MainPID not forged"
assert_not_contains "$(agent_log)" "MAINPID=1" "forged text in the log"
# Text with control characters is not passed on at all: the notice is
# reported, its fields as unknown.
assert_contains "$(unit_prop anb-agent.service StatusText)" "spot interruption notice: unknown at unknown" "STATUS= text"

step "the notice gone from IMDS (3 polls in a row, not one): /health serves again"
imds_ctl state '{"spot_instance_action": null}' >/dev/null
serving() { [ "$(code)" = 200 ]; }
wait_for 10 serving || fail "still $(code) with the notice gone: $(agent_log | tail -3)"
assert_contains "$(agent_log)" "the spot interruption notice (unknown at unknown) is gone from IMDS" "logged"
assert_contains "$("${A[@]}" status)" "drain        no" "status"

step "the ASG terminates the instance mid-reload: drain, units stopped in reverse, then the terminate hook once"
# A reload whose restart of the API takes 4 s is in flight when the group
# terminates the instance: its jobs give way to the stop.
mkdir -p "$ANB_UNIT_DIR/anb-api.service.d"
printf '[Service]\nExecStartPre=/bin/sleep 4\n' >"$ANB_UNIT_DIR/anb-api.service.d/slow.conf"
systemctl --user daemon-reload
imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "production",
                          "aws:autoscaling:groupName": "anb-web-asg"}}' >/dev/null
"${A[@]}" reload >"$WORK/reload.out" 2>&1 &
reloader=$!
restarting() { agent_log | grep -q "reload: .env changed"; }
wait_for 20 restarting || fail "the reload did not start restarting: $(agent_log | tail -5)"
t0=$(date +%s%3N)
imds_ctl state '{"target_lifecycle_state": "Terminated"}' >/dev/null
completed() { [ "$(calls "c['hook'] == 'anb-terminate' and c['action'] == 'CompleteLifecycleAction'")" -ge 1 ]; }
wait_for 60 completed || fail "terminate hook not completed: $(agent_log | tail -8)"
echo "measured: Terminated → terminate hook completed in $(($(date +%s%3N) - t0)) ms"
# anb-api's interrupted restart may leave it failed rather than inactive:
# either way it is down, and the agent does not bring it back.
for u in nginx anb-api redis-server; do
	[[ $(unit_prop $u.service ActiveState) == @(inactive|failed) ]] || fail "$u not stopped before the hook: $(unit_prop $u.service ActiveState)"
done
n=$(unit_prop nginx.service InactiveEnterTimestampMonotonic)
a=$(unit_prop anb-api.service InactiveEnterTimestampMonotonic)
r=$(unit_prop redis-server.service InactiveEnterTimestampMonotonic)
# Reverse order: redis last.  (The API's restart, cut short, may end
# before nginx stops.)
[ "$n" -le "$r" ] && [ "$a" -le "$r" ] || fail "not stopped in reverse order: nginx $n, api $a, redis $r"
sleep 2 # a second completion, if any, would be recorded by now
assert_eq "$(calls "c['hook'] == 'anb-terminate' and c['action'] == 'CompleteLifecycleAction'")" 1 "terminate hook completed once"
hook_at=$(aws_stat "[c for c in s['lifecycle'] if c['hook'] == 'anb-terminate'][-1]['time']")
redis_at=$(systemctl --user show --timestamp=unix -P InactiveEnterTimestamp redis-server.service | tr -d @)
/usr/bin/python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) + 1 >= float(sys.argv[2]) else 1)" "$hook_at" "$redis_at" ||
	fail "hook completed at $hook_at, before the last unit stopped at $redis_at"
aws_stat "[c for c in s['lifecycle'] if c['hook'] == 'anb-terminate'][-1]" | tee "$WORK/term.rec"
assert_contains "$(cat "$WORK/term.rec")" "'result': 'CONTINUE'" "terminate CONTINUE"
assert_contains "$(cat "$WORK/term.rec")" "'error': None" "AWS accepted it"
assert_eq "$(code)" 503 "503 while terminating"
assert_contains "$("${A[@]}" status --json)" '"lifecycle": "terminating"' "status lifecycle"
capture "${A[@]}" reload
assert_eq "$rc" 69 "reload refused while terminating: $out"
wait "$reloader" || true # the caller of the reload cut short got its answer
echo "the reload in flight was answered: $(tail -1 "$WORK/reload.out")"
echo OK
