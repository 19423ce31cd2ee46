#!/bin/bash
# secret: and param: through SigV4-signed calls to the AWS fake, which
# verifies every signature with botocore; batching; the DescribeTags
# fallback; AWS errors with clear messages and the old .env untouched.
. "$(dirname "$0")/lib.sh"
start_imds
start_aws '{"secrets": {"anb/db": {"username": "anb", "password": "p@ss w0rd $1"}, "anb/api-key": "k-123"},
            "params": {"/anb/feature": {"Value": "on"}, "/anb/secure": {"Type": "SecureString", "Value": "sekret"}}}'
write_conf "$WORK/agent.conf" </dev/null
{
	echo 'DB_USER=${secret:anb/db#username}'
	echo 'DB_PASSWORD=${secret:anb/db#password}'
	echo 'API_KEY=${secret:anb/api-key}'
	for i in $(seq 1 11); do echo "P$i=\${param:/anb/p$i:-d$i}"; done
	echo 'FEATURE=${param:/anb/feature}'
	echo 'SECURE=${param:/anb/secure}'
	echo 'REGION=${identity:region}'
} >"$WORK/env.tmpl"
A=("$ANB_AGENT" --config "$WORK/agent.conf")

step "secrets and parameters render; every signature checked by botocore"
"${A[@]}" -v render 2>"$WORK/render.err" || fail "render: $(cat "$WORK/render.err")"
grep -qxF "DB_PASSWORD='p@ss w0rd \$1'" "$WORK/app/.env" || fail "password: $(grep DB_PASSWORD "$WORK/app/.env")"
grep -q "^DB_USER='anb'$" "$WORK/app/.env" || fail "username"
grep -q "^API_KEY='k-123'$" "$WORK/app/.env" || fail "plain secret"
grep -q "^SECURE='sekret'$" "$WORK/app/.env" || fail "SecureString decrypted"
grep -q "^P11='d11'$" "$WORK/app/.env" || fail "default for a missing parameter"
assert_eq "$(aws_stat 's["signatures_valid"]')" 4 "valid signatures"
assert_eq "$(aws_stat 's["signatures_invalid"]')" 0 "invalid signatures"
assert_eq "$(aws_stat 's["calls"].get("secretsmanager.GetSecretValue")')" 2 "one GetSecretValue per secret id"
assert_eq "$(aws_stat 'sorted(len(b) for b in s["params_batches"])')" "[3, 10]" "13 parameters in batches of <= 10"
echo "measured: one render of this template = $(grep -o 'AWS requests: [0-9]*' "$WORK/render.err") signed AWS calls, $(grep -o 'IMDS requests: .*' "$WORK/render.err")"
grep -qF 'p@ss' "$WORK/render.err" && fail "a secret value reached stderr"
cp "$WORK/app/.env" "$WORK/good.env"

step "the fake rejects a bad signature (it checks, not accepts)"
creds=$(imds_ctl credentials)
key=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["AccessKeyId"])' "$creds")
tok=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["Token"])' "$creds")
out=$(curl -s --aws-sigv4 "aws:amz:eu-west-1:secretsmanager" --user "$key:wrong-secret" -H "X-Amz-Security-Token: $tok" \
	-H "X-Amz-Target: secretsmanager.GetSecretValue" -H "Content-Type: application/x-amz-json-1.1" \
	--data '{"SecretId":"anb/api-key"}' "$AWS_URL/")
assert_contains "$out" '"__type": "InvalidSignatureException"' "bad signature"
out=$(curl -s --aws-sigv4 "aws:amz:eu-west-1:secretsmanager" --user "AKIAUNKNOWN:x" -H "X-Amz-Security-Token: $tok" \
	-H "X-Amz-Target: secretsmanager.GetSecretValue" -H "Content-Type: application/x-amz-json-1.1" \
	--data '{"SecretId":"anb/api-key"}' "$AWS_URL/")
assert_contains "$out" '"__type": "UnrecognizedClientException"' "unknown key"

step "AccessDenied names action, resource and role; exit 77; old .env untouched"
aws_ctl state '{"deny": ["anb/db"]}' >/dev/null
capture "${A[@]}" render
assert_eq "$rc" 77 "exit code"
assert_contains "$out" "$WORK/env.tmpl:1:9: secret 'anb/db#username': secretsmanager:GetSecretValue on anb/db denied for role anb-instance-role (AccessDeniedException)" "message"
cmp -s "$WORK/app/.env" "$WORK/good.env" || fail ".env changed"
aws_ctl state '{"deny": []}' >/dev/null

step "a secret that does not exist names the template line"
printf 'X=${secret:anb/nope}\n' >"$WORK/one.tmpl"
sed "s#$WORK/env.tmpl#$WORK/one.tmpl#" "$WORK/agent.conf" >"$WORK/one.conf"
capture "$ANB_AGENT" --config "$WORK/one.conf" render
assert_eq "$rc" 65 "exit code"
assert_eq "$out" "anb-agent: error: $WORK/one.tmpl:1:3: secret 'anb/nope' has no value and no default" "message"
cmp -s "$WORK/app/.env" "$WORK/good.env" || fail ".env changed"

step "throttling is retried with backoff; persistent throttling fails clearly"
aws_ctl reset '{}' >/dev/null
aws_ctl fault '{"kind": "throttle", "count": 2, "target": "secretsmanager.GetSecretValue"}' >/dev/null
"${A[@]}" render 2>/dev/null || fail "render after 2 throttles"
assert_eq "$(aws_stat 's["errors"].get("ThrottlingException")')" 2 "throttled twice, then served"
aws_ctl fault '{"kind": "throttle", "count": 50, "target": "AmazonSSM.GetParameters"}' >/dev/null
capture "${A[@]}" render
[ "$rc" -ne 0 ] || fail "persistent throttling succeeded"
assert_contains "$out" "ssm:GetParameters on /anb/p1" "action named"
assert_contains "$out" "ThrottlingException: Rate exceeded" "code named"
cmp -s "$WORK/app/.env" "$WORK/good.env" || fail ".env changed"
aws_ctl reset '{}' >/dev/null

step "tags disabled in IMDS: EC2 DescribeTags serves them (signed, paged)"
imds_ctl state '{"tags_enabled": false}' >/dev/null
aws_ctl state '{"tags": {"Name": "from-ec2", "anb:env": "a&b <c>", "x": "1", "y": "2"}, "page_size": 2}' >/dev/null
printf 'N=${tag:Name}\nE=${tag:anb:env}\nM=${tag:missing:-d}\n' >"$WORK/one.tmpl"
"$ANB_AGENT" -v --config "$WORK/one.conf" render 2>"$WORK/tags.err" || fail "render: $(cat "$WORK/tags.err")"
assert_eq "$(cat "$WORK/app/.env")" "N='from-ec2'
E='a&b <c>'
M='d'" "tags from EC2"
assert_contains "$(cat "$WORK/tags.err")" "tags from ec2:DescribeTags" "source reported"
assert_eq "$(aws_stat 's["calls"].get("ec2.DescribeTags")')" 2 "two pages"
aws_ctl state '{"deny": ["ec2:DescribeTags"]}' >/dev/null
capture "$ANB_AGENT" --config "$WORK/one.conf" render
assert_eq "$rc" 77 "exit code"
assert_contains "$out" "ec2:DescribeTags on i-0123456789abcdef0 denied for role anb-instance-role (UnauthorizedOperation)" "EC2 error"

step "DescribeTags repeating its NextToken: paging stops, the render fails clearly, the old .env stays"
aws_ctl state '{"deny": [], "repeat_next_token": true}' >/dev/null
aws_ctl reset '{}' >/dev/null
cp "$WORK/app/.env" "$WORK/tags.env"
capture timeout 20 "$ANB_AGENT" --config "$WORK/one.conf" render
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "render with a repeating NextToken: rc=$rc"
assert_contains "$out" "returned the same NextToken twice" "repeated token named"
assert_eq "$(aws_stat 's["calls"].get("ec2.DescribeTags")')" 2 "stopped at the first repeat"
cmp -s "$WORK/app/.env" "$WORK/tags.env" || fail ".env changed"
aws_ctl state '{"repeat_next_token": false}' >/dev/null

step "an identity document whose region or instance id is not shaped like AWS's: no AWS call goes out"
# The region becomes the host of every signed call and the instance id a
# DescribeTags filter: "attacker.example/x" would send the role's signed
# requests elsewhere, "i-1&Filter..." would ask for another instance's tags.
cp "$WORK/app/.env" "$WORK/before.env"
printf 'K=${secret:anb/api-key}\n' >"$WORK/one.tmpl"
for doc in '{"region": "attacker.example/x"}' '{"region": "eu-west-1", "instanceId": "i-1&Filter.1.Value.2=i-2"}'; do
	imds_ctl state "{\"identity\": $doc}" >/dev/null
	[[ $doc == *instanceId* ]] && printf 'N=${tag:Name}\n' >"$WORK/one.tmpl"
	aws_ctl reset '{}' >/dev/null
	capture "$ANB_AGENT" --config "$WORK/one.conf" render
	[ "$rc" -ne 0 ] || fail "render with identity $doc succeeded"
	assert_contains "$out" "not shaped like AWS's" "identity $doc named"
	assert_eq "$(aws_stat 'sum(s["calls"].values())')" 0 "AWS calls with identity $doc"
	cmp -s "$WORK/app/.env" "$WORK/before.env" || fail ".env changed"
done
imds_ctl state '{"identity": {"region": "eu-west-1", "instanceId": "i-0123456789abcdef0"}}' >/dev/null

step "no IAM role: a secret with a default fails, its default is never rendered in its place"
printf 'K=${secret:anb/api-key:-not-the-secret}\n' >"$WORK/one.tmpl"
imds_ctl state '{"role": ""}' >/dev/null
capture "$ANB_AGENT" --config "$WORK/one.conf" render
[ "$rc" -ne 0 ] || fail "rendered without credentials: $(cat "$WORK/app/.env")"
assert_contains "$out" "the instance has no IAM role" "no role named"
assert_not_contains "$(cat "$WORK/app/.env")" "not-the-secret" "the default rendered"
cmp -s "$WORK/app/.env" "$WORK/before.env" || fail ".env changed"
imds_ctl state '{"role": "anb-instance-role"}' >/dev/null
echo OK
