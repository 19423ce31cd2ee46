#!/bin/bash
# Faults: the template, then agent.conf, are broken when a reload is asked.
# Must hold: the reload fails and says so; the old configuration keeps
# running (a later fix reloads fine) and the .env is kept byte for byte;
# the error gives file:line.  A restart while broken refuses to start.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
cp -p "$ENV_FILE" "$WORK/env.before"
api=$(unit_prop anb-api.service MainPID)
tmpl=$ROOT/etc/anb-agent/env.tmpl conf=$ROOT/etc/anb-agent/agent.conf
cp "$tmpl" "$WORK/tmpl.good"
cp "$conf" "$WORK/conf.good"

kept() { # what
	cmp "$WORK/env.before" "$ENV_FILE" || fail "$1: .env changed"
	assert_eq "$(unit_prop anb-api.service MainPID)" "$api" "$1: anb-api untouched"
	assert_eq "$(unit_prop anb-agent.service ActiveState)" active "$1: agent still active"
	assert_contains "$(curl -s 127.0.0.1:8081/health)" '"status":"healthy"' "$1: still healthy"
	temp_files "$(dirname "$ENV_FILE")" | grep . && fail "$1: temp file left"
	true
}

step "template broken: an unterminated reference on line 3"
n=$(wc -l <"$tmpl")
sed -i '3a BROKEN=${tag:Name' "$tmpl"
lines0=$(agent_log | wc -l)
capture agent_cli reload
[ "$rc" -ne 0 ] || fail "reload reported success: $out"
err=$(agent_log | tail -n +$((lines0 + 1)) | grep -i error || true)
echo "$err" | head -3
assert_contains "$err" "env.tmpl:4" "template error with file:line"
kept "broken template"

step "agent.conf broken: a key without a value on its last line"
cp "$WORK/tmpl.good" "$tmpl"
echo 'timeout_ms' >>"$conf"
cline=$(wc -l <"$conf")
lines0=$(agent_log | wc -l)
capture agent_cli reload
[ "$rc" -ne 0 ] || fail "reload reported success: $out"
err=$(agent_log | tail -n +$((lines0 + 1)) | grep -i error || true)
echo "$err" | head -3
assert_contains "$err" "agent.conf:$cline" "config error with file:line"
kept "broken agent.conf"

step "agent.conf with an out-of-range value"
cp "$WORK/conf.good" "$conf"
printf '[imds]\nattempts = 99\n' >>"$conf"
cline=$(wc -l <"$conf")
lines0=$(agent_log | wc -l)
capture agent_cli reload
[ "$rc" -ne 0 ] || fail "reload reported success: $out"
err=$(agent_log | tail -n +$((lines0 + 1)) | grep -i error || true)
assert_contains "$err" "agent.conf:$cline" "config error with file:line"
kept "out-of-range value"

step "systemctl reload (ExecReload) with a broken template fails the job, not the agent"
cp "$WORK/conf.good" "$conf"
sed -i '3a BROKEN=${tag:Name' "$tmpl"
capture systemctl --user reload anb-agent.service
[ "$rc" -ne 0 ] || fail "systemctl reload succeeded on a broken template"
kept "systemctl reload"

step "a restart with the template still broken: the agent refuses to start (78, file:line), the .env stays"
# `run` checks what check-config checks before it starts (the unit has no
# ExecStartPre= for it).
systemctl --user stop anb-agent.service
lines0=$(agent_log | wc -l)
capture systemctl --user start anb-agent.service
[ "$rc" -ne 0 ] || fail "the agent started on a broken template"
assert_eq "$(unit_prop anb-agent.service ExecMainStatus)" 78 "exit status (EX_CONFIG)"
assert_contains "$(agent_log | tail -n +$((lines0 + 1)))" "env.tmpl:4" "template error with file:line"
cmp "$WORK/env.before" "$ENV_FILE" || fail "restart on a broken template: .env changed"
assert_eq "$(unit_prop anb-api.service MainPID)" "$api" "anb-api kept running"

step "fixed: the old configuration was kept, a reload now succeeds"
cp "$WORK/tmpl.good" "$tmpl"
systemctl --user reset-failed anb-agent.service
agent_start
imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "fixed"}}' >/dev/null
capture agent_cli reload
[ "$rc" -eq 0 ] || fail "reload after the fix: $out"
grep -q "^APP_ENV='fixed'$" "$ENV_FILE" || fail "not rendered after the fix"
echo OK
