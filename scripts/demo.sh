#!/bin/bash
# make demo: the agent bootstrapping the sample app under a real systemd
# manager (test/harness.sh) against a local IMDS fake.  Ctrl-C tears it
# all down.  DEMO_SECONDS=N ends it after N seconds (for scripted runs).
#   scripts/demo.sh /path/to/anb-agent
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
agent=${1:-$src/build/anb-agent}
root=/tmp/anb-demo

if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "demo: needs root (a private mount namespace for its own systemd manager)" >&2
		exit 77
	fi
	for port in 1338 1339 8080 8081 8000 6379; do
		if ss -Hltn "sport = :$port" | grep -q .; then
			echo "demo: port $port is in use; stop what listens there first" >&2
			exit 69
		fi
	done
	rm -rf "$root"
	mkdir -p "$root"
	exec env ANB_HARNESS_NET=host ANB_HARNESS_LOG="$root/harness" "$src/test/harness.sh" "$0" "$agent"
fi

export ANB_SRCDIR=$src ANB_AGENT=$agent ANB_AGENT_LOG=journal
. "$src/test/app-env.sh"
echo $$ >"$root/demo.pid"

/usr/bin/python3 "$src/test/fakes/imds.py" --port 1338 --port-file "$root/imds.port" \
	--state <(printf '%s' '{"tags": {"Name": "anb-demo-1", "anb:role": "both", "anb:env": "demo"}}') \
	2>"$root/imds.log" &
imds=$!
for _ in $(seq 100); do [ -s "$root/imds.port" ] && break; sleep 0.05; done
# Secrets Manager and SSM: a fake that checks every SigV4 signature.
/usr/bin/python3 "$src/test/fakes/aws.py" --port 1339 --port-file "$root/aws.port" --imds http://127.0.0.1:1338 \
	--state <(printf '%s' '{"secrets": {"anb/db": {"username": "anb", "password": "demo-pa55word"}},
	                       "params": {"/anb/feature-flags": {"Value": "transcode-v2"}}}') 2>"$root/aws.log" &
aws=$!
trap 'kill $imds $aws 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$root/aws.port" ] && break; sleep 0.05; done
export AWS_ENDPOINT_URL=http://127.0.0.1:1339

app_setup "$root" http://127.0.0.1:1338 user
{
	echo 'DATABASE_USER=${secret:anb/db#username}'
	echo 'DATABASE_PASSWORD=${secret:anb/db#password}'
	echo 'FEATURE_FLAGS=${param:/anb/feature-flags}'
} >>"$root/etc/anb-agent/env.tmpl"
echo "demo: starting anb-agent under systemd (role 'both': redis, gunicorn, celery, nginx)..."
t0=$(date +%s%3N)
if ! agent_start; then
	echo "demo: the agent failed to start; its log:" >&2
	agent_log >&2
	exit 1
fi
echo "demo: READY after $(($(date +%s%3N) - t0)) ms"
echo
systemctl --user status anb-agent.service --no-pager --lines=0 | sed 's/^/    /'
echo
cat <<MSG
The sample app, through nginx:      curl http://127.0.0.1:8080/settings
Enqueue a celery task via redis:    curl -X POST http://127.0.0.1:8080/videos/v1/transcode
The agent's health (ALB check):     curl -i http://127.0.0.1:8081/health
The agent's status:                 $agent --config $root/etc/anb-agent/agent.conf status
The agent's log (journald):         $src/scripts/demo-exec.sh journalctl -u anb-agent -f
The rendered .env:                  cat $root/var/lib/anb-agent/.env
Rotate the DB password:             curl -X POST --data '{"secrets": {"anb/db": {"username": "anb", "password": "rotated"}}}' http://127.0.0.1:1339/_fake/state
                                    $agent --config $root/etc/anb-agent/agent.conf reload
Change a tag and reload:            curl -X POST --data '{"tags": {"Name": "anb-demo-1", "anb:role": "both", "anb:env": "changed"}}' http://127.0.0.1:1338/_fake/state
                                    $src/scripts/demo-exec.sh systemctl --user reload anb-agent
systemctl inside the demo:          $src/scripts/demo-exec.sh systemctl --user status anb-agent

Ctrl-C stops the demo and everything it started.
MSG
curl -s http://127.0.0.1:8080/settings | sed 's/^/demo: \/settings → /'
echo
if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS"
else
	while :; do sleep 3600; done
fi
