#!/bin/bash
# The seeds' way, for scripts/bench-render.sh to time: what a user-data
# script does at boot to write the app's .env -- curl against IMDSv2 (one
# token, then a GET per value) and Debian's AWS CLI (/usr/bin/aws) for the
# secret and the parameters, with the instance role's credentials that the
# CLI itself takes from IMDS.  It writes the same .env, quoted the way
# anb-agent quotes, as the bench's 10-line template.
#   bench-render-seeds.sh IMDS_URL AWS_ENDPOINT_URL OUTPUT
set -euo pipefail
imds=$1 aws_url=$2 out=$3

token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' "$imds/latest/api/token")
md() { curl -sf -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1"; }
region=$(md placement/region)
instance_id=$(md instance-id)
az=$(md placement/availability-zone)
instance_type=$(md instance-type)
name=$(md tags/instance/Name)
app_env=$(md tags/instance/anb:env)

export AWS_DEFAULT_REGION=$region AWS_EC2_METADATA_SERVICE_ENDPOINT=$imds/ AWS_PAGER=
secret=$(/usr/bin/aws --endpoint-url "$aws_url" secretsmanager get-secret-value --secret-id anb/db \
	--query SecretString --output text)
params=$(/usr/bin/aws --endpoint-url "$aws_url" ssm get-parameters --with-decryption \
	--names /anb/feature-flags /anb/api-url --output json)
param() { jq -r --arg n "$1" '.Parameters[] | select(.Name == $n) | .Value' <<<"$params"; }

q() { local v=$2; printf "%s='%s'\n" "$1" "${v//\'/\'\\\'\'}"; }
{
	q REGION "$region"
	q INSTANCE_ID "$instance_id"
	q AVAILABILITY_ZONE "$az"
	q INSTANCE_TYPE "$instance_type"
	q APP_NAME "$name"
	q APP_ENV "$app_env"
	q DB_USER "$(jq -r .username <<<"$secret")"
	q DB_PASSWORD "$(jq -r .password <<<"$secret")"
	q FEATURE_FLAGS "$(param /anb/feature-flags)"
	q API_URL "$(param /anb/api-url)"
} >"$out.tmp"
chmod 0640 "$out.tmp"
mv "$out.tmp" "$out"
