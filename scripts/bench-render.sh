#!/bin/bash
# make bench, render: one `anb-agent render` of the issue's template (4 IMDS
# values, 2 tags, one secret read for two fields, two SSM parameters)
# against the seeds' way (scripts/bench-render-seeds.sh: bash, curl and
# Debian's AWS CLI) writing the same .env from the same fakes, whose AWS
# side verifies every SigV4 signature.  Medians of N and M process runs,
# interleaved; prints both times and the ratio.  Numbers only.
#   scripts/bench-render.sh [/path/to/anb-agent]
#   BENCH_RENDER_RUNS=20 BENCH_SEEDS_RUNS=3
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ANB_AGENT=$(realpath "${1:-${ANB_AGENT:-$here/../build/anb-agent}}")
if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	exec "$here/../test/harness.sh" "$0" "$ANB_AGENT"
fi
. "$here/bench-lib.sh"
runs=${BENCH_RENDER_RUNS:-20}
seeds_runs=${BENCH_SEEDS_RUNS:-3}

bench_fakes '{"secrets": {"anb/db": {"username": "anb", "password": "p@ss w0rd $1"}},
  "params": {"/anb/feature-flags": {"Value": "a,b,c"}, "/anb/api-url": {"Value": "https://api.example.com/v1"}}}'
mkdir -p "$WORK/agent" "$WORK/seeds" "$WORK/home"
bench_issue_template "$WORK/env.tmpl"
cat >"$WORK/agent.conf" <<CONF
[imds]
endpoint = $IMDS_URL
[env]
template = $WORK/env.tmpl
output = $WORK/agent/.env
CONF

# Neither side may find credentials or configuration anywhere but IMDS.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION
export HOME=$WORK/home AWS_CONFIG_FILE=$WORK/home/none AWS_SHARED_CREDENTIALS_FILE=$WORK/home/none

agent_render() { AWS_ENDPOINT_URL=$AWS_URL "$ANB_AGENT" "$@" --config "$WORK/agent.conf" render; }
seeds_render() { "$here/bench-render-seeds.sh" "$IMDS_URL" "$AWS_URL" "$WORK/seeds/.env"; }
timed() { # CMD...: prints its wall time in us; a failed run prints nothing
	local t0 t1
	t0=$(bench_now_us)
	if ! "$@" >/dev/null 2>"$WORK/stderr"; then
		cat "$WORK/stderr" >>"$WORK/errors"
		return 0
	fi
	t1=$(bench_now_us)
	echo $((t1 - t0))
}

have_cli=1
[ -x /usr/bin/aws ] && command -v jq >/dev/null || have_cli=
agent_render 2>/dev/null || true # warm-up: page cache, the fakes' first credentials
: >"$WORK/t.agent" && : >"$WORK/t.seeds"
for i in $(seq "$runs"); do
	timed agent_render >>"$WORK/t.agent"
	if [ -n "$have_cli" ] && [ "$i" -le "$seeds_runs" ]; then timed seeds_render >>"$WORK/t.seeds"; fi
done

a=$(bench_median <"$WORK/t.agent")
echo "render: one .env from $(wc -l <"$WORK/env.tmpl") template lines (4 IMDS values, 2 tags, a secret's 2 fields, 2 SSM"
echo "parameters), fakes on loopback that verify SigV4; each run a new process, medians, interleaved:"
printf '  %-52s %10s ms  (%s of %s runs ok)\n' "anb-agent render" "$(bench_ms "$a")" "$(wc -l <"$WORK/t.agent")" "$runs"
if [ -n "$have_cli" ]; then
	s=$(bench_median <"$WORK/t.seeds")
	printf '  %-52s %10s ms  (%s of %s runs ok)\n' "seeds' way: bash + curl + aws CLI $(/usr/bin/aws --version 2>&1 | awk '{print $1}' | cut -d/ -f2)" \
		"$(bench_ms "$s")" "$(wc -l <"$WORK/t.seeds")" "$seeds_runs"
	printf '  %-52s %10s x\n' "ratio seeds/agent" "$(bench_ratio "$s" "$a")"
	if cmp -s "$WORK/agent/.env" "$WORK/seeds/.env"; then
		echo "  the two .env files are identical ($(wc -c <"$WORK/agent/.env") bytes)"
	else
		echo "  the two .env files differ:"
		diff "$WORK/agent/.env" "$WORK/seeds/.env" | sed 's/^/    /' | sed -E "s/(DB_PASSWORD=).*/\1.../" || true
	fi
else
	echo "  seeds' way: not measured; needs Debian's AWS CLI and jq: apt-get install awscli jq"
fi
echo "  one agent render: $(agent_render -v 2>&1 >/dev/null | grep -o '\(IMDS\|AWS\) requests: .*' | paste -sd ';' | sed 's/;/; /');" \
	"the seeds' way: 7 curl requests and 2 aws CLI processes (each fetching its own token and credentials)"
echo "  AWS fake: $(curl -s "$AWS_URL/_fake/stats" | jq -c '{signatures_valid, signatures_invalid}' 2>/dev/null)"

# The same render inside the running daemon, where production renders.
# At boot: status' bootstrap.ms, from the daemon's start (its health port,
# control socket and bus, then the render: a new token, new credentials,
# new connections; no unit to start), after the process started and read
# its configuration, which READY overhead in bench-startup.sh counts.  On
# an explicit reload: its duration_ms (agent.conf re-read, then the render
# on the kept token, credentials and connections).  The daemon's own
# clock, to a tenth of a millisecond.  The ratio sets the seeds' whole
# way (its processes included) against the daemon's render.
daemon_runs=${BENCH_DAEMON_RUNS:-10}
bench_agent_unit "$(bench_agent_conf 8093)"
cp "$WORK/env.tmpl" "$WORK/root/etc/anb-agent/env.tmpl"
# `anb-agent reload` prints whole milliseconds: its answer is read from the
# control socket (one JSON line each way) for the tenths; printed in us.
reload_us() {
	/usr/bin/python3 -c 'import json, math, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"{\"cmd\": \"reload\"}\n")
print(math.floor(json.loads(s.makefile().readline())["duration_ms"] * 1000))' "$WORK/root/run/anb-agent/control.sock"
}
: >"$WORK/t.boot" && : >"$WORK/t.reload"
for i in $(seq "$daemon_runs"); do
	rm -f "$WORK/root/srv/anb/.env"
	systemctl --user reset-failed anb-agent.service 2>/dev/null || true # restarts beyond the start limit
	if systemctl --user restart anb-agent.service; then
		bench_bootstrap_us >>"$WORK/t.boot" || true
		for _ in 1 2 3; do reload_us >>"$WORK/t.reload" || true; done
	else
		tail -5 "$WORK/agent.log" >>"$WORK/errors"
	fi
done
systemctl --user stop anb-agent.service
cmp -s "$WORK/root/srv/anb/.env" "$WORK/agent/.env" && same="the same .env" || same="a DIFFERENT .env"
echo "the same render in the running daemon (its own clock; medians; $same):"
for x in boot reload; do
	label="at boot (health port, control socket, bus, render)"
	[ "$x" = boot ] || label="explicit reload (agent.conf re-read, render)"
	if [ ! -s "$WORK/t.$x" ]; then
		printf '  %-52s %10s\n' "$label" "n/a (no run succeeded)"
		continue
	fi
	v=$(bench_median <"$WORK/t.$x")
	printf '  %-52s %10s ms  (%s of %s runs)' "$label" "$(bench_ms "$v")" "$(wc -l <"$WORK/t.$x")" \
		"$([ "$x" = boot ] && echo "$daemon_runs" || echo $((daemon_runs * 3)))"
	[ -z "$have_cli" ] || printf '   seeds/daemon %s x' "$(bench_ratio "$s" "$v")"
	echo
done
if [ -s "$WORK/errors" ]; then
	echo "  errors from failed runs (first 5 lines):"
	head -5 "$WORK/errors" | sed 's/^/    /'
fi
bench_done
