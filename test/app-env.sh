# Sourced (by integration tests and the demo) inside test/harness.sh: lays
# out an instance under $ROOT -- the sample app, nginx and redis configs,
# agent.conf and env.tmpl -- and installs the user-manager units generated
# from units/ by scripts/user-units.sh.
#
#   app_setup ROOT IMDS_URL [BUS]     BUS: user (default) or system (the
#                                      production path, via DBUS_SYSTEM_BUS_ADDRESS)
#   agent_start                        systemctl --user start anb-agent
#   agent_cli VERB...                  the agent's CLI with this instance's config
#   agent_log                          what the agent has logged
#   ENV_FILE                           the rendered .env (set by app_setup)
#   unit_prop UNIT PROP                e.g. unit_prop anb-api.service MainPID
#   asg_setup LIFECYCLE_KEYS           a web instance in Auto Scaling group
#                                      anb-web-asg (tag, target state
#                                      InService) with the AWS fake, and
#                                      LIFECYCLE_KEYS as its [lifecycle]
#   flaky_setup [BUS]                  an instance of role "flaky" managing
#                                      flaky.service, which exits 1 until
#                                      $WORK/flaky-ok exists, restarts every
#                                      100 ms and hits its start limit
#                                      (2 starts a minute); start_limit_retry 1 s
#   (in a test, a failure prints the agent's log)

app_setup() {
	ROOT=$1
	local imds=$2 bus=${3:-user}
	local src=${ANB_SRCDIR:?}
	mkdir -p "$ROOT"/{etc/anb-agent,etc/nginx,etc/redis,srv/anb,run,var/lib/anb-agent,var/lib/redis,var/log/nginx,tmp/nginx}
	cp -r "$src/app" "$ROOT/srv/anb/app"
	# As shipped: the .env in the agent's own state directory (root's,
	# 0755), never in the app user's /srv/anb.
	ENV_FILE=$ROOT/var/lib/anb-agent/.env

	cat >"$ROOT/etc/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $ROOT/run/nginx.pid;
error_log $ROOT/var/log/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $ROOT/tmp/nginx/body;
    proxy_temp_path $ROOT/tmp/nginx/proxy;
    fastcgi_temp_path $ROOT/tmp/nginx/fastcgi;
    uwsgi_temp_path $ROOT/tmp/nginx/uwsgi;
    scgi_temp_path $ROOT/tmp/nginx/scgi;
    include $src/conf/nginx-anb.conf;
}
NGINX
	cat >"$ROOT/etc/redis/redis.conf" <<REDIS
bind 127.0.0.1
port 6379
dir $ROOT/var/lib/redis
save ""
appendonly no
logfile ""
REDIS
	cat >"$ROOT/etc/anb-agent/agent.conf" <<CONF
[imds]
endpoint = $imds
attempts = 3
[env]
template = $ROOT/etc/anb-agent/env.tmpl
output = $ENV_FILE
mode = 0640
[systemd]
bus = $bus
[units]
role_tag = anb:role
default_role = web
[units.web]
manage = redis-server.service anb-api.socket anb-api.service nginx.service
restart_on_change = anb-api.service
[units.worker]
manage = redis-server.service anb-worker.service
restart_on_change = anb-worker.service
[units.both]
manage = redis-server.service anb-api.socket anb-api.service anb-worker.service nginx.service
restart_on_change = anb-api.service anb-worker.service
[health]
listen = 127.0.0.1:8081
[control]
socket = $ROOT/run/anb-agent/control.sock
[drain]
# Tests stop the agent often: no drain grace unless a test asks for one.
grace = 0
CONF
	{
		cat "$src/conf/env.tmpl"
		echo 'APP_NAME=${tag:Name:-anb}'
	} >"$ROOT/etc/anb-agent/env.tmpl"

	"$src/scripts/user-units.sh" "$ROOT" "$ANB_AGENT" "$ANB_UNIT_DIR"
	# make check-valgrind runs the daemon under valgrind (same PID, so
	# sd_notify still comes from the main process).
	if [ -n "${ANB_AGENT_WRAPPER:-}" ]; then
		sed -i "s#^ExecStart=#ExecStart=$ANB_AGENT_WRAPPER #" "$ANB_UNIT_DIR/anb-agent.service"
	fi
	mkdir -p "$ANB_UNIT_DIR/anb-agent.service.d"
	{
		echo "[Service]"
		echo "Environment=PYTHONDONTWRITEBYTECODE=1"
		# Tests read the agent's log from a file (no journald latency);
		# ANB_AGENT_LOG=journal leaves it to the journal, as shipped.
		if [ "${ANB_AGENT_LOG:-file}" = file ]; then
			echo "StandardOutput=append:$ROOT/agent.log"
			echo "StandardError=inherit"
		fi
		if [ "$bus" = system ]; then echo "Environment=DBUS_SYSTEM_BUS_ADDRESS=$ANB_BUS"; fi
		if [ -n "${AWS_ENDPOINT_URL:-}" ]; then echo "Environment=AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"; fi
	} >"$ANB_UNIT_DIR/anb-agent.service.d/harness.conf"
	for u in anb-api anb-worker; do
		mkdir -p "$ANB_UNIT_DIR/$u.service.d"
		printf '[Service]\nEnvironment=PYTHONDONTWRITEBYTECODE=1\nStandardOutput=append:%s\nStandardError=inherit\n' \
			"$ROOT/$u.log" >"$ANB_UNIT_DIR/$u.service.d/harness.conf"
	done
	systemctl --user daemon-reload
}

unit_prop() { systemctl --user show -P "$2" "$1"; }

agent_start() { systemctl --user start anb-agent.service; }

asg_setup() {
	start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging",
	                      "aws:autoscaling:groupName": "anb-web-asg"},
	             "target_lifecycle_state": "InService"}'
	start_aws '{}'
	app_setup "$WORK/root" "$IMDS_URL" user
	printf '[lifecycle]\n%s\n' "$1" >>"$ROOT/etc/anb-agent/agent.conf"
}

flaky_setup() {
	start_imds '{"tags": {"Name": "anb-flaky-1", "anb:role": "flaky"}}'
	app_setup "$WORK/root" "$IMDS_URL" "${1:-user}"
	cat >>"$ROOT/etc/anb-agent/agent.conf" <<-CONF
		[units]
		start_limit_retry = 1
		[units.flaky]
		manage = flaky.service
	CONF
	cat >"$ANB_UNIT_DIR/flaky.service" <<-UNIT
		[Unit]
		StartLimitIntervalSec=60
		StartLimitBurst=2
		[Service]
		ExecStart=/bin/sh -c 'test -e $WORK/flaky-ok || exit 1; exec sleep 600'
		Restart=always
		RestartSec=100ms
	UNIT
	systemctl --user daemon-reload
}

# The CLI against the running agent (reload, status, drain, ...).
agent_cli() { "$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf" "$@"; }

agent_log() {
	if [ "${ANB_AGENT_LOG:-file}" = file ]; then
		cat "${ROOT:-/nonexistent}/agent.log" 2>/dev/null || true
	else
		journalctl --no-pager -o cat -u anb-agent.service 2>/dev/null || true
	fi
}

# In a test (lib.sh), a failure brings the agent's log with the test's
# output: CI keeps nothing else of a failed run.  lib.sh's cleanup runs
# this with its $rc in scope.
if declare -F at_exit >/dev/null; then
	at_exit '[ "$rc" = 0 ] || { echo "--- agent log (last 80 lines)"; agent_log | cut -c1-300 | tail -80; } >&2'
fi
