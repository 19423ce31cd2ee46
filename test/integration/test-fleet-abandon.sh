#!/bin/bash
# The launch hook is ABANDONed when the instance is not healthy within
# [lifecycle] abandon_after, with heartbeats while it waits, and never
# CONTINUEd afterwards.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
asg_setup "launch_hook = anb-launch
abandon_after = 3
heartbeat = 1"
calls() { aws_stat "[(c['action'], c.get('result'), c['error']) for c in s['lifecycle'] if c['hook'] == 'anb-launch']"; }
# nginx cannot start: the instance never becomes healthy.
mkdir -p "$ANB_UNIT_DIR/nginx.service.d"
printf '[Service]\nExecStartPre=/bin/false\n' >"$ANB_UNIT_DIR/nginx.service.d/broken.conf"
systemctl --user daemon-reload
systemctl --user start --no-block anb-agent.service
abandoned() { [[ $(calls) == *"'ABANDON'"* ]]; }
wait_for 15 abandoned || fail "no ABANDON: $(calls) $(agent_log | tail -5)"
assert_contains "$(agent_log)" "abandoning the launch" "logged"
beats=$(aws_stat "len([c for c in s['lifecycle'] if c['action'] == 'RecordLifecycleActionHeartbeat' and c['error'] is None])")
[ "$beats" -ge 2 ] || fail "heartbeats while waiting: $beats"
echo "measured: $beats heartbeats (heartbeat = 1 s) before ABANDON at 3 s"
step "fixed later: still no CONTINUE (the launch was abandoned)"
rm "$ANB_UNIT_DIR/nginx.service.d/broken.conf"
systemctl --user daemon-reload
systemctl --user restart nginx.service
sleep 3
assert_not_contains "$(calls)" "'CONTINUE'" "no CONTINUE after ABANDON"
echo OK
