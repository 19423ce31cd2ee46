#!/bin/bash
# A changed tag + reload: the .env changes and only the units that read it
# restart (new MainPID); nginx and redis keep theirs.  A reload that
# changes nothing restarts nothing; one that changes [units] manage keeps
# the units the agent started with until its next start.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-both-1", "anb:role": "both", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start

pids() { for u in anb-api anb-worker nginx redis-server; do printf '%s=%s ' $u "$(unit_prop $u.service MainPID)"; done; }
before=$(pids)

step "reload with nothing changed restarts nothing"
systemctl --user reload anb-agent.service
unchanged() { agent_log | grep -q "reload: .env unchanged"; }
wait_for 10 unchanged || fail "no unchanged reload line: $(agent_log | tail -5)"
assert_eq "$(pids)" "$before" "MainPIDs after a no-op reload"

step "change the anb:env tag, reload"
imds_ctl state '{"tags": {"Name": "anb-both-1", "anb:role": "both", "anb:env": "production"}}' >/dev/null
t0=$(date +%s%3N)
systemctl --user reload anb-agent.service
restarted() { agent_log | grep -q "restarted: anb-api.service, anb-worker.service"; }
wait_for 60 restarted || fail "no restart line: $(agent_log | tail -5)"
echo "measured: reload → units restarted in $(($(date +%s%3N) - t0)) ms"
agent_log | grep -q "reload: .env changed (r2): APP_ENV" || fail "changed keys not named: $(agent_log | tail -5)"
agent_log | grep "reload: .env changed" | grep -q production && fail "a value reached the log"
grep -q "^APP_ENV='production'$" "$ENV_FILE" || fail ".env not rendered"

after=$(pids)
for u in nginx redis-server; do
	b=$(echo "$before" | tr ' ' '\n' | grep "^$u=")
	a=$(echo "$after" | tr ' ' '\n' | grep "^$u=")
	assert_eq "$a" "$b" "$u kept its MainPID"
done
for u in anb-api anb-worker; do
	b=$(echo "$before" | tr ' ' '\n' | grep "^$u=")
	a=$(echo "$after" | tr ' ' '\n' | grep "^$u=")
	[ "$a" != "$b" ] || fail "$u was not restarted ($a)"
done
assert_contains "$(curl -sf 127.0.0.1:8080/settings)" '"APP_ENV":"production"' "new value reached the app"
assert_contains "$(systemctl --user status anb-agent.service)" "env r2" "STATUS= revision"

step "a reload that changes the role's manage list: warned, applied at the next start, health unchanged"
# Before, the new list was tracked but nothing started it: /health went
# 503 for a unit the agent would never start, until a restart.
sed -i 's/^manage = redis-server.service anb-api.socket anb-api.service anb-worker.service nginx.service$/& anb-extra.service/' \
	"$ROOT/etc/anb-agent/agent.conf"
sed -i 's/^restart_on_change = anb-api.service anb-worker.service$/& anb-extra.service/' "$ROOT/etc/anb-agent/agent.conf"
[ "$(grep -c "anb-extra.service" "$ROOT/etc/anb-agent/agent.conf")" = 2 ] || fail "the test did not change the lists"
systemctl --user reload anb-agent.service
warned() { agent_log | grep -q "the manage list of role both changed; anb-agent supervises redis-server.service"; }
wait_for 10 warned || fail "no warning: $(agent_log | tail -5)"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8081/health)" 200 "health after the reload"
assert_not_contains "$("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf" status)" "anb-extra" "the new unit is not tracked yet"
# A changed .env restarts the supervised units only: not the new one,
# which restart_on_change names too.
imds_ctl state '{"tags": {"Name": "anb-both-1", "anb:role": "both", "anb:env": "staging"}}' >/dev/null
capture "$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf" reload
assert_eq "$rc" 0 "reload after the list changed: $out"
assert_not_contains "$out" "anb-extra" "the new unit is neither restarted nor tried"
echo OK
