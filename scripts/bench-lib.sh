# Sourced by scripts/bench-*.sh, inside test/harness.sh (a private
# systemd --user manager, loopback only).  Owns what the benchmarks share:
# the work directory and its cleanup, the IMDS and AWS fakes, an agent
# installed as the shipped unit, timing and the arithmetic for medians and
# ratios.  It asserts nothing: benchmarks print numbers.
#
#   bench_fakes [AWS_STATE_JSON]        IMDS_URL, AWS_URL (fakes as in test/integration)
#   bench_agent_conf HEALTH_PORT ...    the agent.conf they share (below)
#   bench_agent_unit CONF_BODY          the shipped anb-agent.service for this manager
#   bench_bootstrap_us                  the running agent's bootstrap time (its status)
#   bench_issue_template FILE           the issue's 10-line template (4 IMDS
#                                       values, 2 tags, a secret's 2 fields,
#                                       2 SSM parameters; bench_fakes serves them)
#   bench_now_us                        wall clock in microseconds, no fork
#   bench_median / bench_ratio A B      numbers on stdin / A divided by B
#   bench_quartiles                     numbers on stdin: "P25 P75" (the spread)
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ANB_SRCDIR=$src
WORK=$(mktemp -d /tmp/anb-bench.XXXXXX)
chmod 0755 "$WORK"
_bench_pids=()
_bench_cleanup() {
	systemctl --user stop anb-agent.service >/dev/null 2>&1 || true
	local p
	for p in "${_bench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${_bench_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap _bench_cleanup EXIT
bench_bg() { _bench_pids+=("$1"); }

_bench_wait_file() { # FILE: up to 10 s
	local _
	for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done
	echo "bench: $1 did not appear" >&2
	return 1
}

# The fakes of test/fakes, started as test/integration/lib.sh starts them:
# the AWS fake checks every SigV4 signature against the credentials the
# IMDS fake issued.
bench_fakes() {
	/usr/bin/python3 "$src/test/fakes/imds.py" --port 0 --port-file "$WORK/imds.port" 2>"$WORK/imds.log" &
	bench_bg $!
	_bench_wait_file "$WORK/imds.port"
	IMDS_URL=http://127.0.0.1:$(cat "$WORK/imds.port")
	local args=(--port 0 --port-file "$WORK/aws.port" --imds "$IMDS_URL")
	if [ -n "${1:-}" ]; then
		printf '%s' "$1" >"$WORK/aws-state.json"
		args+=(--state "$WORK/aws-state.json")
	fi
	/usr/bin/python3 "$src/test/fakes/aws.py" "${args[@]}" 2>"$WORK/aws.log" &
	bench_bg $!
	_bench_wait_file "$WORK/aws.port"
	AWS_URL=http://127.0.0.1:$(cat "$WORK/aws.port")
}

# The agent.conf the benchmarks share: the IMDS fake, the template
# $WORK/root/etc/anb-agent/env.tmpl and the .env $WORK/root/srv/anb/.env,
# the user bus, /health on 127.0.0.1:HEALTH_PORT, the control socket under
# $WORK/root/run, no drain grace.  MANAGE: the web role's units (none when
# empty); ENV_LINES: more [env] keys, one per line.  A caller appends
# sections of its own.
#   bench_agent_conf HEALTH_PORT [MANAGE [RESTART_ON_CHANGE [ENV_LINES]]]
bench_agent_conf() {
	printf '[imds]\nendpoint = %s\n' "$IMDS_URL"
	printf '[env]\ntemplate = %s\noutput = %s\n' "$WORK/root/etc/anb-agent/env.tmpl" "$WORK/root/srv/anb/.env"
	[ -z "${4:-}" ] || printf '%s\n' "$4"
	printf '[systemd]\nbus = user\n'
	if [ -n "${2:-}" ]; then
		printf '[units]\ndefault_role = web\n[units.web]\nmanage = %s\n' "$2"
		[ -z "${3:-}" ] || printf 'restart_on_change = %s\n' "$3"
	fi
	printf '[health]\nlisten = 127.0.0.1:%s\n' "$1"
	printf '[control]\nsocket = %s\n' "$WORK/root/run/anb-agent/control.sock"
	printf '[drain]\ngrace = 0\n'
}

# The running agent's bootstrap (health port, control socket, bus, render,
# the units' start) as its status gives it, in us; nothing when it has none.
bench_bootstrap_us() {
	"$ANB_AGENT" --config "$WORK/root/etc/anb-agent/agent.conf" status --json 2>/dev/null |
		jq -r '.bootstrap.ms * 1000 | floor' 2>/dev/null
}

# The shipped units/anb-agent.service, converted for the user manager by
# scripts/user-units.sh (Type=notify, WatchdogSec= as shipped), with its
# configuration under $WORK/root.
# CONF_BODY is the agent.conf; the agent's output goes to $WORK/agent.log.
bench_agent_unit() {
	local root=$WORK/root
	mkdir -p "$root/etc/anb-agent" "$root/srv/anb" "$root/run"
	printf '%s\n' "$1" >"$root/etc/anb-agent/agent.conf"
	"$src/scripts/user-units.sh" "$root" "$ANB_AGENT" "$ANB_UNIT_DIR"
	mkdir -p "$ANB_UNIT_DIR/anb-agent.service.d"
	{
		echo "[Service]"
		echo "StandardOutput=append:$WORK/agent.log"
		echo "StandardError=inherit"
		[ -z "${AWS_URL:-}" ] || echo "Environment=AWS_ENDPOINT_URL=$AWS_URL"
	} >"$ANB_UNIT_DIR/anb-agent.service.d/bench.conf"
	systemctl --user daemon-reload
}

# Two trivial units, started the same way whoever starts them; no start
# limit, since the benchmarks start and restart them often.
bench_trivial_units() {
	local u
	for u in bench-a bench-b; do
		printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=exec\nExecStart=/bin/sleep infinity\n' >"$ANB_UNIT_DIR/$u.service"
	done
	systemctl --user daemon-reload
}

bench_issue_template() {
	cat >"$1" <<'TMPL'
REGION=${identity:region}
INSTANCE_ID=${identity:instanceId}
AVAILABILITY_ZONE=${imds:placement/availability-zone}
INSTANCE_TYPE=${imds:instance-type}
APP_NAME=${tag:Name}
APP_ENV=${tag:anb:env}
DB_USER=${secret:anb/db#username}
DB_PASSWORD=${secret:anb/db#password}
FEATURE_FLAGS=${param:/anb/feature-flags}
API_URL=${param:/anb/api-url}
TMPL
}

bench_now_us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }
bench_median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
bench_quartiles() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a n/a"; else print v[int((NR + 3) / 4)], v[int((3 * NR + 3) / 4)] }'; }
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }
bench_ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
_bench_t0=$(bench_now_us)
bench_done() { echo "  ($(basename "$0"): $(( ($(bench_now_us) - _bench_t0) / 1000000 )) s)"; }
