#!/bin/bash
# An agent whose configuration manages no unit (an instance where it only
# renders the .env) still finishes its bootstrap: READY, and status
# gives the bootstrap's time, as with units.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds
app_setup "$WORK/root" "$IMDS_URL" user
sed -i '/^\[units/,/^\[health\]/{/^\[health\]/!d}' "$ROOT/etc/anb-agent/agent.conf"
grep -q '^\[units' "$ROOT/etc/anb-agent/agent.conf" && fail "the [units] sections are still there"

step "READY without a unit to start; status tells the bootstrap's time"
agent_start
grep -q "^AWS_REGION='eu-west-1'$" "$ENV_FILE" || fail "not rendered"
json=$(agent_cli status --json)
echo "$json" | jq -c .bootstrap
assert_eq "$(echo "$json" | jq -r '.bootstrap.ms > 0 and .bootstrap.at > 0')" true "bootstrap time and moment"
grep -q 'bootstrap finished in [0-9]* ms: role web, 0/0 units active$' "$ROOT/agent.log" || fail "no bootstrap line"
assert_contains "$(agent_cli status)" "bootstrap" "status shows the bootstrap"
agent_cli status | grep -i bootstrap
echo OK
