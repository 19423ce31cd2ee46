#!/bin/bash
# Faults: a secret is missing (ResourceNotFoundException), access to it
# is denied (AccessDeniedException), Secrets Manager throttles
# (ThrottlingException, every attempt).
# Must hold, for each: the reload fails and says so to its caller; the
# .env is kept byte for byte (and no unit restarts); the error names the
# key (the template line and the secret); no secret value in the log.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
start_aws '{"secrets": {"anb/db": {"password": "first-S3cret"}, "anb/api": "api-K3y-value"}}'
app_setup "$WORK/root" "$IMDS_URL" user
echo 'DB_PASSWORD=${secret:anb/db#password}' >>"$ROOT/etc/anb-agent/env.tmpl"
echo 'API_KEY=${secret:anb/api}' >>"$ROOT/etc/anb-agent/env.tmpl"
agent_start
grep -qx "DB_PASSWORD='first-S3cret'" "$ENV_FILE" || fail "secret not rendered"
cp -p "$ENV_FILE" "$WORK/env.before"
api=$(unit_prop anb-api.service MainPID)

# broken NAME WANT_IN_ERROR: a reload under the fault fails, keeps the
# .env, names the key.
broken() {
	local name=$1 want=$2 t0
	: >"$WORK/mark"
	local lines0
	lines0=$(agent_log | wc -l)
	t0=$(date +%s%3N)
	capture timeout 120 "$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf" reload
	echo "measured: $name: reload answered in $(($(date +%s%3N) - t0)) ms (exit $rc)"
	[ "$rc" -ne 124 ] || fail "$name: reload not answered"
	[ "$rc" -ne 0 ] || fail "$name: reload reported success: $out"
	cmp "$WORK/env.before" "$ENV_FILE" || fail "$name: .env changed"
	[ "$(stat -c %a%Y "$ENV_FILE")" = "$(stat -c %a%Y "$WORK/env.before")" ] || fail "$name: .env rewritten"
	local errs
	errs=$(agent_log | tail -n +$((lines0 + 1)) | grep -i "error" || true)
	echo "$errs" | head -3 | cut -c1-240
	assert_contains "$errs" "$want" "$name: the error names the key"
	assert_contains "$errs" "env.tmpl:" "$name: the error names the template line"
	assert_eq "$(unit_prop anb-api.service MainPID)" "$api" "$name: anb-api untouched"
	temp_files "$(dirname "$ENV_FILE")" | grep . && fail "$name: temp file left"
	true
}

step "secret missing"
aws_ctl state '{"secrets": {"anb/api": "api-K3y-value"}}' >/dev/null
broken "secret missing" "anb/db"
step "access denied"
aws_ctl state '{"secrets": {"anb/db": {"password": "second-S3cret"}, "anb/api": "api-K3y-value"}, "deny": ["anb/db"]}' >/dev/null
broken "access denied" "anb/db"
step "throttled on every attempt"
aws_ctl state '{"deny": []}' >/dev/null
aws_ctl fault '{"kind": "throttle", "count": 1000}' >/dev/null
broken "throttled" "anb/"
echo "measured: throttled calls answered: $(aws_stat 's["errors"].get("ThrottlingException", 0)')"
aws_ctl reset '{}' >/dev/null

step "recovered: the next reload renders the new value"
capture agent_cli reload
[ "$rc" -eq 0 ] || fail "reload after recovery: $out"
grep -qx "DB_PASSWORD='second-S3cret'" "$ENV_FILE" || fail "new value not rendered"
agent_log | grep -q "S3cret\|K3y-value" && fail "a secret value reached the log"
echo OK
