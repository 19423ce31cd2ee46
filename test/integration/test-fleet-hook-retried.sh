#!/bin/bash
# A lifecycle hook whose completion fails at once, inside the call (here:
# IMDS disabled, so no role credentials), is retried with backoff like any
# failed completion -- not left "in flight" forever with nothing retrying.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds
app_setup "$WORK/root" "$IMDS_URL" user
# No IMDS: the role is the default, the template static.
printf '[lifecycle]\nlaunch_hook = anb-web-launch\n' >>"$ROOT/etc/anb-agent/agent.conf"
echo 'STATIC=1' >"$ROOT/etc/anb-agent/env.tmpl"
echo "Environment=AWS_EC2_METADATA_DISABLED=true" >>"$ANB_UNIT_DIR/anb-agent.service.d/harness.conf"
systemctl --user daemon-reload
agent_start

step "the completion fails inside the call; the agent asks again, with backoff"
decided() { agent_log | grep -q "lifecycle hook anb-web-launch: CONTINUE"; }
wait_for 10 decided || fail "no decision: $(agent_log | tail -5)"
retried() { agent_log | grep -q "lifecycle hook anb-web-launch: asking again in"; }
wait_for 10 retried || fail "the failed completion is not retried: $(agent_log | tail -5)"
assert_contains "$(agent_log)" "lifecycle hooks need IMDS (role credentials) and AWS" "the reason"
echo OK
