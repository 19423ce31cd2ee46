#!/bin/bash
# The daemon with AWS sources on the real manager: a rotated secret reaches
# the app within one refresh interval (only gunicorn restarts); role
# credentials are refreshed before they expire, and when IMDS is down at
# that moment the current ones stay in use until IMDS is back.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
# Credentials last 90 s; IMDS issues new ones in their last 85 s.
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"},
             "credentials_ttl": 90, "credentials_rotate_before": 85}'
start_aws '{"secrets": {"anb/db": {"password": "first-S3cret"}}, "params": {"/anb/feature": {"Value": "on"}}}'
app_setup "$WORK/root" "$IMDS_URL" user
echo 'DB_PASSWORD=${secret:anb/db#password}' >>"$ROOT/etc/anb-agent/env.tmpl"
echo 'FEATURE=${param:/anb/feature}' >>"$ROOT/etc/anb-agent/env.tmpl"
cat >>"$ROOT/etc/anb-agent/agent.conf" <<CONF
[env]
refresh = 10
[aws]
credentials_refresh = 80
CONF
A=("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf")
agent_start
grep -qx "DB_PASSWORD='first-S3cret'" "$ENV_FILE" || fail "secret not rendered"
status=$("${A[@]}" status)
assert_contains "$status" "credentials  role anb-instance-role, expire in 0h01m" "credentials in status"
assert_contains "$status" "2 calls (2 in the last render)" "AWS calls per render"
assert_contains "$(systemctl --user status anb-agent.service)" " · creds 0h01m" "STATUS= shows the credentials' lifetime"
echo "measured: one refresh of this template = 2 signed AWS calls (GetSecretValue, GetParameters)"

step "rotating the secret reaches the .env within one refresh interval; only the API restarts"
api=$(unit_prop anb-api.service MainPID)
nginx=$(unit_prop nginx.service MainPID)
redis=$(unit_prop redis-server.service MainPID)
aws_ctl state '{"secrets": {"anb/db": {"password": "second-S3cret"}}}' >/dev/null
t0=$(date +%s%3N)
rotated() { grep -qx "DB_PASSWORD='second-S3cret'" "$ENV_FILE"; }
wait_for 15 rotated || fail "rotation not picked up: $(agent_log | tail -5)"
echo "measured: rotated secret in the .env after $(($(date +%s%3N) - t0)) ms (refresh = 10 s ± 10 %)"
newapi() { [ "$(unit_prop anb-api.service MainPID)" != "$api" ] && [ "$(unit_prop anb-api.service ActiveState)" = active ]; }
wait_for 20 newapi || fail "anb-api was not restarted"
assert_eq "$(unit_prop nginx.service MainPID)" "$nginx" "nginx kept its MainPID"
assert_eq "$(unit_prop redis-server.service MainPID)" "$redis" "redis kept its MainPID"
agent_log | grep -q "reload: .env changed (r2): DB_PASSWORD" || fail "changed key not named: $(agent_log | tail -5)"
agent_log | grep -q "S3cret" && fail "a secret value reached the log"

step "credentials are refreshed before they expire"
refreshed() { [ "$(agent_log | grep -c 'role credentials (anb-instance-role) refreshed')" -ge "$1" ]; }
wait_for 30 refreshed 2 || fail "no refresh: $(agent_log | grep -i cred)"

step "IMDS down when the next refresh is due: the current credentials stay in use"
imds_ctl fault '{"kind": "status", "status": 500, "count": 100000, "path": "meta-data/iam"}' >/dev/null
kept() { agent_log | grep -q "cannot refresh the role credentials: .*the current ones stay in use"; }
wait_for 40 kept || fail "no warning: $(agent_log | grep -i cred)"
# Meanwhile AWS values still resolve with the credentials in hand.
aws_ctl state '{"secrets": {"anb/db": {"password": "third-S3cret"}}}' >/dev/null
third() { grep -qx "DB_PASSWORD='third-S3cret'" "$ENV_FILE"; }
wait_for 15 third || fail "no render with the kept credentials: $(agent_log | tail -5)"
assert_contains "$("${A[@]}" status)" "last refresh failed" "status says so"
step "IMDS back: refreshed again"
n=$(agent_log | grep -c 'role credentials (anb-instance-role) refreshed')
imds_ctl reset '{}' >/dev/null
wait_for 40 refreshed $((n + 1)) || fail "not recovered: $(agent_log | grep -i cred | tail -3)"
assert_eq "$(aws_stat 's["signatures_invalid"]')" 0 "every signature valid"
grep -q ExpiredTokenException "$WORK/aws.log" && fail "a call went out with expired credentials"

step "no credential or secret value in the log, status, /health or /metrics"
{
	agent_log
	"${A[@]}" status
	"${A[@]}" status --json
	curl -s 127.0.0.1:8081/health
	curl -s 127.0.0.1:8081/metrics
} >"$WORK/surface.txt"
imds_ctl credentials-issued | /usr/bin/python3 -c '
import json, sys
for c in json.load(sys.stdin):
    for k in ("AccessKeyId", "SecretAccessKey", "Token"):
        print(c[k])' >"$WORK/creds.txt"
printf '%s\n' first-S3cret second-S3cret third-S3cret >>"$WORK/creds.txt"
grep -qFf "$WORK/creds.txt" "$WORK/surface.txt" && fail "leaked: $(grep -oFf "$WORK/creds.txt" "$WORK/surface.txt" | head -2)"
grep -qFf <(grep -v S3cret "$WORK/creds.txt") "$ENV_FILE" && fail "credentials in the .env"
echo "checked $(wc -l <"$WORK/creds.txt") credential and secret values against $(wc -c <"$WORK/surface.txt") bytes of output"
echo OK
