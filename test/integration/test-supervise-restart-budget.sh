#!/bin/bash
# Restarts the agent makes because the .env changed do not spend a unit's
# start limit: a unit allowed two starts a minute (StartLimitBurst=2) is
# restarted on three quick tag changes and stays active, never
# start-limit-hit.  (Before: the third start was refused and the unit,
# for anb-api its socket too, ended failed; test-fault-soak found it.)
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-quick-1", "anb:role": "quick", "anb:env": "e0"}}'
app_setup "$WORK/root" "$IMDS_URL" user
cat >>"$ROOT/etc/anb-agent/agent.conf" <<CONF
[units.quick]
manage = quick.service
restart_on_change = quick.service
CONF
cat >"$ANB_UNIT_DIR/quick.service" <<UNIT
[Unit]
StartLimitIntervalSec=60
StartLimitBurst=2
[Service]
ExecStart=/bin/sleep 600
UNIT
systemctl --user daemon-reload
agent_start
first=$(unit_prop quick.service MainPID)

for i in 1 2 3; do
	step "tag change $i, reload"
	imds_ctl state "{\"tags\": {\"Name\": \"anb-quick-1\", \"anb:role\": \"quick\", \"anb:env\": \"e$i\"}}" >/dev/null
	agent_cli reload >/dev/null || fail "reload $i failed: $(agent_log | tail -5)"
	assert_eq "$(unit_prop quick.service ActiveState)" active "quick.service after restart $i ($(unit_prop quick.service Result))"
done
[ "$(unit_prop quick.service MainPID)" != "$first" ] || fail "quick.service was never restarted"
agent_log | grep -q "start-limit-hit" && fail "a start limit was hit: $(agent_log | grep start-limit-hit)"
grep -q "^APP_ENV='e3'$" "$ENV_FILE" || fail "last change not rendered"
echo OK
