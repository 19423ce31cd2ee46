#!/bin/bash
# A changed .env restarts celery warm: the worker gets TERM, stops taking
# tasks and finishes the one it is running; its result is not lost.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-worker-1", "anb:role": "worker", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
worker=$(unit_prop anb-worker.service MainPID)

step "a 4 s task is running when the reload restarts the worker"
(cd "$ROOT/srv/anb/app" && CELERY_BROKER_URL=redis://127.0.0.1:6379/1 /usr/bin/python3 -c '
from anb_app.tasks import transcode
print(transcode.delay("v9", 4).get(timeout=60))' >"$WORK/task.out" 2>"$WORK/task.err") &
client=$!
running() { grep -q "Task anb_app.tasks.transcode\[.*\] received" "$ROOT/anb-worker.log"; }
wait_for 10 running || fail "the task never reached the worker: $(tail -3 "$ROOT/anb-worker.log")"
imds_ctl state '{"tags": {"Name": "anb-worker-1", "anb:role": "worker", "anb:env": "production"}}' >/dev/null
t0=$(date +%s%3N)
"$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf" reload >"$WORK/reload.out"
t1=$(date +%s%3N)
assert_contains "$(cat "$WORK/reload.out")" "restarted:      anb-worker.service" "worker restarted"
[ "$(unit_prop anb-worker.service MainPID)" != "$worker" ] || fail "same worker pid"
wait "$client" || fail "the task's result was lost: $(cat "$WORK/task.err")"
assert_contains "$(cat "$WORK/task.out")" "'status': 'transcoded'" "task finished"
assert_contains "$(cat "$WORK/task.out")" "'app_env': 'staging'" "finished by the old worker"
grep -qi "warm shutdown" "$ROOT/anb-worker.log" || fail "no warm shutdown in the worker log: $(tail -20 "$ROOT/anb-worker.log")"
echo "measured: the reload waited $((t1 - t0)) ms for the running task before restarting celery"
echo OK
