#!/bin/bash
# The IMDS fake must behave like AWS documents IMDSv2, or the client tests
# prove nothing: TTL header rules, X-Forwarded-For, 401 without a token.
. "$(dirname "$0")/lib.sh"
start_imds
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

step "token PUT needs a TTL of 1..21600"
assert_eq "$(code -X PUT "$IMDS_URL/latest/api/token")" 400 "no TTL header"
assert_eq "$(code -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 0' "$IMDS_URL/latest/api/token")" 400 "TTL 0"
assert_eq "$(code -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21601' "$IMDS_URL/latest/api/token")" 400 "TTL 21601"
assert_eq "$(code -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' -H 'X-Forwarded-For: 1.2.3.4' \
	"$IMDS_URL/latest/api/token")" 403 "X-Forwarded-For"
hdrs=$(curl -s -D - -o "$WORK/token" -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 2' "$IMDS_URL/latest/api/token")
assert_contains "$hdrs" "X-aws-ec2-metadata-token-ttl-seconds: 2" "TTL echoed"
token=$(cat "$WORK/token")

step "GET needs a valid token (IMDSv1 is refused with 401)"
assert_eq "$(code "$IMDS_URL/latest/meta-data/instance-id")" 401 "no token"
assert_eq "$(code -H 'X-aws-ec2-metadata-token: bogus' "$IMDS_URL/latest/meta-data/instance-id")" 401 "bad token"
assert_eq "$(curl -s -H "X-aws-ec2-metadata-token: $token" "$IMDS_URL/latest/meta-data/instance-id")" \
	"i-0123456789abcdef0" "good token"
assert_eq "$(code -H "X-aws-ec2-metadata-token: $token" "$IMDS_URL/latest/meta-data/nope")" 404 "unknown path"
doc=$(curl -s -H "X-aws-ec2-metadata-token: $token" "$IMDS_URL/latest/dynamic/instance-identity/document")
assert_contains "$doc" '"region" : "eu-west-1"' "identity document shape"
sleep 2.1
assert_eq "$(code -H "X-aws-ec2-metadata-token: $token" "$IMDS_URL/latest/meta-data/instance-id")" 401 "expired token"

step "tags: listed when enabled, 404 when not"
token=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$IMDS_URL/latest/api/token")
assert_contains "$(curl -s -H "X-aws-ec2-metadata-token: $token" "$IMDS_URL/latest/meta-data/tags/instance")" \
	"anb:role" "tag list"
imds_ctl state '{"tags_enabled": false}' >/dev/null
assert_eq "$(code -H "X-aws-ec2-metadata-token: $token" "$IMDS_URL/latest/meta-data/tags/instance")" 404 "disabled"
echo OK
