#!/bin/bash
# The fakes' fleet-lifecycle side, which the agent and the end-to-end test
# rely on: IMDS serves spot/instance-action and
# autoscaling/target-lifecycle-state under the test's control, cloud-init's
# dated paths and user-data; the AWS fake takes SigV4-signed Auto Scaling
# CompleteLifecycleAction / RecordLifecycleActionHeartbeat calls, rejects
# bad signatures and a second completion, and records every call.
. "$(dirname "$0")/lib.sh"
printf '#!/bin/sh\necho user-data ran\n' >"$WORK/ud.sh"
start_imds
start_aws
tok=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$IMDS_URL/latest/api/token")
get() { curl -s -o "$WORK/body" -w '%{http_code}' -H "X-aws-ec2-metadata-token: $tok" "$IMDS_URL/$1"; }

step "spot/instance-action: 404 until a notice, then its JSON; null clears it"
assert_eq "$(get latest/meta-data/spot/instance-action)" 404 "no notice"
imds_ctl state '{"spot_instance_action": {"action": "terminate", "time": "2026-11-23T13:00:00Z"}}' >/dev/null
assert_eq "$(get latest/meta-data/spot/instance-action)" 200 "notice"
assert_eq "$(cat "$WORK/body")" '{"action": "terminate", "time": "2026-11-23T13:00:00Z"}' "notice body"
imds_ctl state '{"spot_instance_action": null}' >/dev/null
assert_eq "$(get latest/meta-data/spot/instance-action)" 404 "notice cleared"

step "autoscaling/target-lifecycle-state: 404 outside a group, then the state set"
assert_eq "$(get latest/meta-data/autoscaling/target-lifecycle-state)" 404 "not in an ASG"
imds_ctl state '{"target_lifecycle_state": "InService"}' >/dev/null
assert_eq "$(get latest/meta-data/autoscaling/target-lifecycle-state)" 200 "in an ASG"
assert_eq "$(cat "$WORK/body")" InService "state"
imds_ctl state '{"target_lifecycle_state": "Terminated"}' >/dev/null
get latest/meta-data/autoscaling/target-lifecycle-state >/dev/null
assert_eq "$(cat "$WORK/body")" Terminated "state changed"

step "cloud-init's paths: a dated version, instance-identity without slash, user-data"
assert_eq "$(get 2021-03-23/meta-data/instance-id)" 200 "dated meta-data"
assert_eq "$(cat "$WORK/body")" i-0123456789abcdef0 "instance id"
assert_eq "$(get 2021-03-23/dynamic/instance-identity)" 200 "instance-identity without the slash"
assert_eq "$(cat "$WORK/body")" document "its listing"
assert_eq "$(get 2021-03-23/dynamic/instance-identity/document)" 200 "identity document"
assert_eq "$(get 2021-03-23/user-data)" 404 "no user-data"
imds_ctl state "{\"user_data\": $(/usr/bin/python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$WORK/ud.sh")}" >/dev/null
assert_eq "$(get 2021-03-23/user-data)" 200 "user-data"
cmp -s "$WORK/body" "$WORK/ud.sh" || fail "user-data differs from what was set"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$IMDS_URL/2021-03-23/user-data")" 401 "still IMDSv2 only"

step "Auto Scaling: signed calls recorded; bad signature, missing fields and a second completion refused"
creds=$(imds_ctl credentials)
key=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["AccessKeyId"])' "$creds")
secret=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["SecretAccessKey"])' "$creds")
stok=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["Token"])' "$creds")
asg() { # asg SECRET FORM
	curl -s -w '\n%{http_code}' --aws-sigv4 "aws:amz:eu-west-1:autoscaling" --user "$key:$1" \
		-H "X-Amz-Security-Token: $stok" -H "Content-Type: application/x-www-form-urlencoded" \
		--data "$2" "$AWS_URL/"
}
base="Version=2011-01-01&AutoScalingGroupName=anb-web&InstanceId=i-0123456789abcdef0"
out=$(asg "$secret" "Action=RecordLifecycleActionHeartbeat&$base&LifecycleHookName=launch")
assert_contains "$out" "<RecordLifecycleActionHeartbeatResult/>" "heartbeat"
out=$(asg "$secret" "Action=CompleteLifecycleAction&$base&LifecycleHookName=launch&LifecycleActionResult=CONTINUE")
assert_contains "$out" "<CompleteLifecycleActionResult/>" "complete"
assert_eq "$(tail -1 <<<"$out")" 200 "complete status"
out=$(asg "$secret" "Action=CompleteLifecycleAction&$base&LifecycleHookName=launch&LifecycleActionResult=CONTINUE")
assert_contains "$out" "<Code>ValidationError</Code><Message>No active Lifecycle Action found" "second completion"
assert_eq "$(tail -1 <<<"$out")" 400 "second completion status"
out=$(asg wrong "Action=CompleteLifecycleAction&$base&LifecycleHookName=terminate&LifecycleActionResult=CONTINUE")
assert_contains "$out" "<Code>SignatureDoesNotMatch</Code>" "bad signature"
out=$(asg "$secret" "Action=CompleteLifecycleAction&$base&LifecycleHookName=terminate&LifecycleActionResult=MAYBE")
assert_contains "$out" "<Code>ValidationError</Code>" "bad result"
# A signature for another service is refused (the scope names the service).
out=$(curl -s --aws-sigv4 "aws:amz:eu-west-1:ec2" --user "$key:$secret" -H "X-Amz-Security-Token: $stok" \
	--data "Action=CompleteLifecycleAction&$base&LifecycleHookName=terminate&LifecycleActionResult=CONTINUE" "$AWS_URL/")
assert_contains "$out" "<Code>SignatureDoesNotMatch</Code>" "scoped to ec2"
rec=$(aws_stat '";".join("%s %s %s %s %s" % (r["action"], r["hook"], r.get("result"), r["instance"], r["error"]) for r in s["lifecycle"])')
assert_eq "$rec" "RecordLifecycleActionHeartbeat launch None i-0123456789abcdef0 None;CompleteLifecycleAction launch CONTINUE i-0123456789abcdef0 None;CompleteLifecycleAction launch CONTINUE i-0123456789abcdef0 ValidationError;CompleteLifecycleAction terminate MAYBE i-0123456789abcdef0 ValidationError" "records"
assert_eq "$(aws_stat 's["calls"]["autoscaling.CompleteLifecycleAction"]')" 3 "signed completions counted"
echo OK
