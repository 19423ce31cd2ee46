#!/bin/bash
# The bootstrap's edges: the render's IMDS requests go before the spot and
# lifecycle polls (they are the critical path to READY); an agent whose
# configuration manages no unit (it only renders the .env) still finishes
# its bootstrap: READY, and status gives the bootstrap's time.
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

step "the first spot and lifecycle polls come after the render's requests"
# READY=1 goes before the poll is made: wait for it.
wait_for 5 sh -c "curl -sf '$IMDS_URL/_fake/stats' | grep -q spot/instance-action" || fail "no spot poll within 5 s"
order=$(imds_ctl stats | jq -r '.order | join(" ")')
echo "IMDS GETs in order: $order"
# The render fetches the tag list, then each tag (a second round trip):
# a poll made at start would come before the tags.
spot=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "meta-data/spot/instance-action") { print i; exit } }' <<<"$order")
last=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^meta-data\/tags\/instance\//) n = i; print n + 0 }' <<<"$order")
[ -n "$spot" ] && [ "$last" -gt 0 ] || fail "missing requests: spot poll at '$spot', last tag at '$last'"
[ "$spot" -gt "$last" ] ||
	fail "the spot poll (#$spot) went before the render's last tag (#$last) (or the render took over 1 s)"
echo OK
