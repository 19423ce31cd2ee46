#!/bin/bash
# The agent restarts while its instance is in Terminating:Wait (a crash, the
# watchdog, an upgrade) and the first poll sees "Terminated" before the
# first render knows the role: the units the previous run started are
# still stopped -- every unit a role manages, last started first -- before
# the terminate hook is completed, not left running with the hook answered.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
asg_setup "terminate_hook = anb-terminate"
agent_start
for u in nginx anb-api redis-server; do assert_eq "$(unit_prop $u.service ActiveState)" active "$u up"; done

step "restarted in Terminating:Wait, the render slow: the units stop, then the hook"
systemctl --user stop anb-agent.service
# The role tag answers after 5 s: the first poll (at most 1 s) comes first.
imds_ctl fault '{"kind": "slow", "delay_ms": 5000, "path": "meta-data/tags/instance/anb:role", "count": 1}' >/dev/null
imds_ctl state '{"target_lifecycle_state": "Terminated"}' >/dev/null
: >"$ROOT/agent.log"
systemctl --user start --no-block anb-agent.service
completed() { aws_stat "len([c for c in s['lifecycle'] if c['hook'] == 'anb-terminate'])" | grep -qx 1; }
wait_for 30 completed || fail "terminate hook not completed: $(agent_log | tail -8)"
for u in nginx anb-api redis-server; do
	[[ $(unit_prop $u.service ActiveState) == @(inactive|failed) ]] || fail "$u still $(unit_prop $u.service ActiveState) with the hook completed"
done
n=$(unit_prop nginx.service InactiveEnterTimestampMonotonic)
r=$(unit_prop redis-server.service InactiveEnterTimestampMonotonic)
[ "$n" -le "$r" ] || fail "not stopped in reverse order: nginx $n, redis $r"
agent_log | grep -q "the role is not known yet" || fail "no line saying why: $(agent_log | tail -8)"
echo OK
