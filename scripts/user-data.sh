#!/bin/bash
# anb instance user-data: installs anb-agent (and the app's package), writes
# its non-secret configuration, starts it, and waits until it is READY (its
# units up, /health answering 200).  cloud-init runs it once per instance;
# running it again changes nothing that is already right (idempotent).
#
# Secrets never appear here: the agent reads them from Secrets Manager and
# SSM with the instance role, at run time.  Everything this script prints
# goes to /var/log/cloud-init-output.log.

# ---- Settings: edit these ---------------------------------------------------
# The packages, installed together: local paths, http(s):// URLs, or s3://
# URLs fetched with the instance role (SigV4 by curl, no AWS CLI needed).
PACKAGES="s3://anb-artifacts/anb-agent/anb-agent_0.1.0_amd64.deb s3://anb-artifacts/anb-agent/anb-sample-app_0.1.0_all.deb"
# Seconds to wait for the agent's READY before failing the boot.
READY_TIMEOUT=600
# Ready also means healthy: the agent's /health (its [health] listen) must
# answer 200 within the same bound; empty: READY alone.
HEALTH_URL="http://127.0.0.1:8081/health"
# The agent's lifecycle settings (see anb-agent.conf(5)); empty: left out.
LAUNCH_HOOK=""       # the ASG's launch lifecycle hook name
TERMINATE_HOOK=""    # the ASG's terminate lifecycle hook name
DRAIN_GRACE=""       # seconds of 503 before the agent exits on SIGTERM
# Endpoint overrides (VPC endpoints, tests); empty: AWS's public endpoints.
S3_ENDPOINT=""                    # path-style, e.g. https://s3.eu-west-1.amazonaws.com
AWS_ENDPOINT_URL=""               # every AWS API the agent calls
AWS_ENDPOINT_URL_AUTO_SCALING=""  # Auto Scaling only
# The agent's configuration (non-secret).  Lifecycle keys are appended.
AGENT_CONF='# Written by the instance user-data (scripts/user-data.sh).
[units]
role_tag = anb:role
default_role = web
[units.web]
manage = redis-server.service anb-api.socket anb-api.service nginx.service
restart_on_change = anb-api.service
[units.worker]
manage = redis-server.service anb-worker.service
restart_on_change = anb-worker.service
[health]
listen = 0.0.0.0:8081
'
# ---- End of settings ---------------------------------------------------------

set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
IMDS=http://169.254.169.254
work=/var/lib/anb-user-data
log() { echo "anb-user-data: $*"; }
die() {
	echo "anb-user-data: ERROR: $*" >&2
	exit 1
}

imds_token() {
	curl -sf --retry 5 --retry-connrefused --max-time 5 -X PUT \
		-H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/latest/api/token"
}
imds_get() { # imds_get TOKEN PATH
	curl -sf --retry 5 --retry-connrefused --max-time 5 -H "X-aws-ec2-metadata-token: $1" "$IMDS/latest/$2"
}

# fetch URL FILE: a package from a path, http(s) or s3 (instance role).
fetch() {
	local url=$1 out=$2
	case $url in
	s3://*)
		local rest=${url#s3://} tok region role creds
		local bucket=${rest%%/*} key=${rest#*/}
		tok=$(imds_token) || die "IMDSv2 token: no answer from $IMDS"
		region=$(imds_get "$tok" meta-data/placement/region) || die "IMDS: no region"
		role=$(imds_get "$tok" meta-data/iam/security-credentials/ | head -1) ||
			die "IMDS: no instance role (the instance profile is needed to read $url)"
		creds=$(imds_get "$tok" "meta-data/iam/security-credentials/$role") || die "IMDS: no credentials for $role"
		local target
		if [ -n "$S3_ENDPOINT" ]; then
			target=${S3_ENDPOINT%/}/$bucket/$key
		else
			target=https://$bucket.s3.$region.amazonaws.com/$key
		fi
		# The secret key and token go to curl on stdin (its config), never
		# in argv where any local user could read them.
		/usr/bin/python3 -c '
import json, sys
c = json.loads(sys.argv[1])
q = lambda s: "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""
print("user = " + q(c["AccessKeyId"] + ":" + c["SecretAccessKey"]))
print("header = " + q("x-amz-security-token: " + c["Token"]))
' "$creds" | curl -sfS --retry 5 --retry-connrefused --max-time 120 --config - \
			--aws-sigv4 "aws:amz:$region:s3" \
			-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
			-o "$out" "$target" || die "cannot download $url"
		;;
	http://* | https://*)
		curl -sfSL --retry 5 --retry-connrefused --max-time 120 -o "$out" "$url" || die "cannot download $url"
		;;
	*)
		[ -f "$url" ] || die "no such package file: $url"
		cp "$url" "$out"
		;;
	esac
}

# write_if_changed FILE MODE: stdin to FILE, atomically, only if different;
# returns 0 when it wrote.
write_if_changed() {
	local f=$1 mode=$2 tmp
	tmp=$(mktemp "$f.XXXXXX")
	cat >"$tmp"
	chmod "$mode" "$tmp"
	if [ -f "$f" ] && cmp -s "$tmp" "$f"; then
		rm -f "$tmp"
		return 1
	fi
	mv -f "$tmp" "$f"
	return 0
}

t0=$(date +%s)
mkdir -p "$work"
chmod 0700 "$work"

# 1. The packages: install those not already installed at that version.
debs=()
for url in $PACKAGES; do
	f=$work/$(basename "$url")
	fetch "$url" "$f"
	pkg=$(dpkg-deb -f "$f" Package) || die "$url is not a Debian package"
	ver=$(dpkg-deb -f "$f" Version)
	if [ "$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$pkg" 2>/dev/null || true)" = "installed $ver" ]; then
		log "$pkg $ver already installed"
	else
		debs+=("$f")
	fi
done
if [ ${#debs[@]} -gt 0 ]; then
	log "installing: ${debs[*]##*/}"
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${debs[@]}" ||
		die "apt-get install failed"
fi
command -v anb-agent >/dev/null || die "anb-agent is not installed"

# 2. The configuration (non-secret), and the endpoints for the agent.
changed=0
{
	printf '%s' "$AGENT_CONF"
	if [ -n "$LAUNCH_HOOK$TERMINATE_HOOK" ]; then
		echo "[lifecycle]"
		[ -z "$LAUNCH_HOOK" ] || echo "launch_hook = $LAUNCH_HOOK"
		[ -z "$TERMINATE_HOOK" ] || echo "terminate_hook = $TERMINATE_HOOK"
	fi
	if [ -n "$DRAIN_GRACE" ]; then
		printf '[drain]\ngrace = %s\n' "$DRAIN_GRACE"
	fi
} | write_if_changed /etc/anb-agent/agent.conf 0644 && changed=1
anb-agent --config /etc/anb-agent/agent.conf check-config ||
	die "the agent refuses /etc/anb-agent/agent.conf (see above)"
dropin=/etc/systemd/system/anb-agent.service.d/user-data.conf
if [ -n "$AWS_ENDPOINT_URL$AWS_ENDPOINT_URL_AUTO_SCALING" ]; then
	mkdir -p "${dropin%/*}"
	{
		echo "[Service]"
		[ -z "$AWS_ENDPOINT_URL" ] || echo "Environment=AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
		[ -z "$AWS_ENDPOINT_URL_AUTO_SCALING" ] ||
			echo "Environment=AWS_ENDPOINT_URL_AUTO_SCALING=$AWS_ENDPOINT_URL_AUTO_SCALING"
	} | write_if_changed "$dropin" 0644 && changed=1
elif [ -f "$dropin" ]; then
	rm -f "$dropin"
	changed=1
fi
if [ "$changed" = 1 ]; then
	systemctl daemon-reload
	# A running agent picks the new settings up by a restart; a stopped one
	# reads them when it starts below.
	systemctl try-restart --no-block anb-agent.service
fi

# 3. Start, and wait for READY (Type=notify: "active" only after READY=1).
systemctl enable --now --no-block anb-agent.service
log "waiting up to ${READY_TIMEOUT}s for anb-agent to be ready${HEALTH_URL:+ and $HEALTH_URL to answer 200}"
deadline=$(($(date +%s) + READY_TIMEOUT))
while :; do
	state=$(systemctl is-active anb-agent.service || true)
	if [ "$state" = active ]; then
		[ -z "$HEALTH_URL" ] && break
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$HEALTH_URL" || true)
		[ "$code" = 200 ] && break
		state="active, /health $code"
	fi
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "anb-agent: $(systemctl show -P StatusText anb-agent.service)" >&2
		journalctl -u anb-agent.service -n 30 --no-pager >&2 || true
		die "anb-agent not ready after ${READY_TIMEOUT}s (state: $state); this instance must not take traffic"
	fi
	sleep 1
done
log "anb-agent ready ($(systemctl show -P StatusText anb-agent.service)) after $(($(date +%s) - t0))s"
