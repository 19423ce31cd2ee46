#!/bin/bash
# Role worker (tag anb:role) starts only the worker's units, also when the
# first render could not read the tag, and after a restart that cannot
# read it (the role recorded beside the .env) -- and this
# test reaches systemd through the production code path: bus = system
# with DBUS_SYSTEM_BUS_ADDRESS pointing at the harness's bus.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
# The worker's unit runs and the default role's (web) do not; WHEN names the step.
assert_worker_units_only() {
	assert_eq "$(unit_prop anb-worker.service ActiveState)" active "worker $1: $(agent_log | tail -5)"
	assert_eq "$(unit_prop anb-api.service ActiveState)" inactive "api (the default role's) not started $1"
	assert_eq "$(unit_prop nginx.service ActiveState)" inactive "nginx (the default role's) not started $1"
}
start_imds '{"tags": {"Name": "anb-worker-1", "anb:role": "worker", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" system
# The first render fails before the role tag is read (every attempt at it
# answers 500); no .env yet, so the retry decides: the worker's units, not
# default_role's (web) fixed by the failed attempt.
imds_ctl fault '{"kind": "status", "status": 500, "count": 3, "path": "meta-data/tags/instance/anb:role"}' >/dev/null
agent_start
agent_log | grep -q "retrying the render" || fail "the first render did not fail: $(agent_log | tail -5)"
assert_eq "$(unit_prop redis-server.service ActiveState)" active "redis"
assert_worker_units_only "at the first start"
assert_contains "$(systemctl --user status anb-agent.service)" "healthy · worker · 2/2 units active" "STATUS="
agent_log | grep -q "role worker, 2/2 units active" || fail "bootstrap line: $(agent_log)"
assert_eq "$(cat "$ENV_FILE.role")" worker "the role recorded beside the .env"
assert_eq "$(stat -c %a "$ENV_FILE.role")" 644 "the role file's mode"

step "restarted with a render that fails after the role tag resolved: the worker's units, not the default role's"
systemctl --user stop anb-agent.service anb-worker.service redis-server.service
imds_ctl fault '{"kind": "status", "status": 500, "count": 1000000, "path": "meta-data/placement/availability-zone"}' >/dev/null
: >"$ROOT/agent.log"
agent_start
agent_log | grep -q "starting the units with the last good" || fail "no fallback: $(agent_log | tail -5)"
assert_worker_units_only "on the last good .env"
agent_log | grep -q "role worker, 2/2 units active" || fail "bootstrap line: $(agent_log | tail -5)"

step "restarted with IMDS refusing every token (the role tag unreadable): the role the last good .env was written for"
systemctl --user stop anb-agent.service anb-worker.service redis-server.service
imds_ctl reset >/dev/null
imds_ctl fault '{"kind": "status", "status": 500, "count": 1000000, "path": "api/token"}' >/dev/null
: >"$ROOT/agent.log"
agent_start
agent_log | grep -q "starting the units with the last good" || fail "no fallback: $(agent_log | tail -5)"
agent_log | grep -q "the role tag cannot be read: role worker, the one the last good" ||
	fail "the role file was not used: $(agent_log | tail -5)"
assert_worker_units_only "on the last good .env"
assert_eq "$(cat "$ENV_FILE.role")" worker "the role file kept while the tag is unreadable"

step "a role file another user could have written is not believed: the default role's units"
systemctl --user stop anb-agent.service anb-worker.service redis-server.service
chmod 666 "$ENV_FILE.role"
: >"$ROOT/agent.log"
agent_start
agent_log | grep -q "starting the units with the last good" || fail "no fallback: $(agent_log | tail -5)"
agent_log | grep -q "the role tag cannot be read: role" && fail "a group/world-writable role file was believed"
agent_log | grep -q "the role is not known (the role tag was not read, and no role the agent can trust is recorded beside the .env): starting the units of role web" ||
	fail "the default role's units not explained: $(agent_log | tail -5)"
assert_eq "$(unit_prop anb-api.service ActiveState)" active "the default role's api: $(agent_log | tail -5)"
assert_eq "$(unit_prop anb-worker.service ActiveState)" inactive "worker not started"

step "first boot, a template that does not name the role tag, the tag failing for a moment: retried, not defaulted"
systemctl --user stop anb-agent.service anb-api.service anb-api.socket nginx.service redis-server.service
rm -f "$ENV_FILE" "$ENV_FILE.role"
sed -i '/tag:anb:role/d' "$ROOT/etc/anb-agent/env.tmpl"
grep -q 'tag:' "$ROOT/etc/anb-agent/env.tmpl" || fail "the template has no tag left to fetch"
imds_ctl reset >/dev/null
imds_ctl fault '{"kind": "status", "status": 500, "count": 3, "path": "meta-data/tags/instance/anb:role"}' >/dev/null
: >"$ROOT/agent.log"
agent_start
agent_log | grep -q "cannot read the role tag 'anb:role' (IMDS request for meta-data/tags/instance/anb:role failed" ||
	fail "the first render did not fail on the role tag: $(agent_log | tail -5)"
assert_worker_units_only "after the retry"
assert_eq "$(cat "$ENV_FILE.role")" worker "the role recorded"

step "the units chosen, no role recorded, a reload while the role tag fails for a moment: the .env still renders"
rm "$ENV_FILE.role"
imds_ctl fault '{"kind": "status", "status": 500, "count": 3, "path": "meta-data/tags/instance/anb:role"}' >/dev/null
capture agent_cli reload
assert_eq "$rc" 0 "reload with the role tag failing: $out"
[ ! -e "$ENV_FILE.role" ] || fail "a role recorded from a guess: $(cat "$ENV_FILE.role")"
agent_log | grep "role changed" && fail "a guessed role reported as a role change"
capture agent_cli reload
assert_eq "$rc" 0 "reload: $out"
assert_eq "$(cat "$ENV_FILE.role")" worker "the role recorded once the tag reads"
echo OK
