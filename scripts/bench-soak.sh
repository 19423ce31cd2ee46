#!/bin/bash
# make bench, memory and wakeups: the agent (the shipped unit, managing two
# trivial units, rendering the 10-line template from the IMDS and AWS fakes)
# beside nginx `return 200` (worker_processes auto).
#  - anonymous memory (RssAnon, /proc/PID/status; nginx: master + workers)
#    idle, then after each of ROUNDS soak rounds: reload cycles through
#    `anb-agent reload` (each changes a parameter, so the .env is rewritten
#    and a unit restarted) while wrk probes /health; nginx gets the same wrk
#    probes for the same time;
#  - idle wakeups per second: voluntary + involuntary context switches of
#    every thread over IDLE seconds (each voluntary switch is one sleep, so
#    one wakeup), beside the timers the agent documents.
# Bounded: ROUNDS x SOAK seconds, IDLE seconds.  Numbers only.
#   scripts/bench-soak.sh [/path/to/anb-agent]
#   BENCH_SOAK_ROUNDS=3 BENCH_SOAK_SECONDS=6 BENCH_IDLE_SECONDS=16
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ANB_AGENT=$(realpath "${1:-${ANB_AGENT:-$here/../build/anb-agent}}")
if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	command -v wrk >/dev/null || { echo "bench-soak: needs wrk (scripts/install-deps.sh)" >&2; exit 69; }
	exec "$here/../test/harness.sh" "$0" "$ANB_AGENT"
fi
. "$here/bench-lib.sh"
rounds=${BENCH_SOAK_ROUNDS:-3}
soak=${BENCH_SOAK_SECONDS:-6}
idle=${BENCH_IDLE_SECONDS:-16}
refresh=300
poll_ms=1000

bench_fakes '{"secrets": {"anb/db": {"username": "anb", "password": "p@ss w0rd"}},
  "params": {"/anb/feature-flags": {"Value": "v0"}, "/anb/api-url": {"Value": "https://api.example.com/v1"}}}'
bench_trivial_units
conf=$WORK/root/etc/anb-agent/agent.conf
bench_agent_unit "$(bench_agent_conf 8091 "bench-a.service bench-b.service" bench-b.service "refresh = $refresh")
[lifecycle]
poll_interval_ms = $poll_ms"
bench_issue_template "$WORK/root/etc/anb-agent/env.tmpl"
systemctl --user start anb-agent.service
agent=$(systemctl --user show -P MainPID anb-agent.service)

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    server { listen 127.0.0.1:8092; location = /health { return 200; } }
}
NGINX
/usr/sbin/nginx -c "$WORK/nginx/nginx.conf"
for _ in $(seq 100); do [ -s "$WORK/nginx/nginx.pid" ] && break; sleep 0.05; done
nginx_master=$(cat "$WORK/nginx/nginx.pid")
bench_bg "$nginx_master"
sleep 2 # settle: first health checks done, nginx workers up
nginx_pids() { echo "$nginx_master" $(pgrep -P "$nginx_master"); }

anon() { # PIDS...: RssAnon in KiB, summed
	local p s=0
	for p in "$@"; do
		[ -r "/proc/$p/status" ] || { echo "(pid $p gone)"; return; }
		s=$((s + $(awk '/^RssAnon:/ {print $2}' "/proc/$p/status")))
	done
	echo $s
}
switches() { # PIDS...: voluntary and involuntary context switches of every thread, summed
	local p
	for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
		awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {s += $2} END {print s}'
}
threads() { ls "/proc/$1/task" 2>/dev/null | wc -l; }

echo "memory and wakeups: anb-agent (shipped unit, 2 managed units, 10-line template) vs nginx return 200"
printf '  %-46s %10s %12s\n' "" "anb-agent" "nginx ($(($(nginx_pids | wc -w) - 1))w+m)"
printf '  %-46s %7s KiB %8s KiB\n' "RssAnon, idle" "$(anon "$agent")" "$(anon $(nginx_pids))"

# Idle wakeups, both measured over the same window.
imds_gets() { curl -s "$IMDS_URL/_fake/stats" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["get"])'; }
a0=$(switches "$agent") n0=$(switches $(nginx_pids)) i0=$(imds_gets)
sleep "$idle"
a1=$(switches "$agent") n1=$(switches $(nginx_pids)) i1=$(imds_gets)
wa=$(awk -v d=$((a1 - a0)) -v t="$idle" 'BEGIN { printf "%.2f", d / t }')
wn=$(awk -v d=$((n1 - n0)) -v t="$idle" 'BEGIN { printf "%.2f", d / t }')
printf '  %-46s %10s %12s\n' "idle wakeups/s (context switches, ${idle} s)" "$wa" "$wn"
printf '  %-46s %10s %12s\n' "  (switches counted in ${idle} s)" "$((a1 - a0))" "$((n1 - n0))"
# WatchdogUSec as systemctl prints it ("30s", "1min"); the agent pings at half of it.
wd=$(systemctl --user show -P WatchdogUSec anb-agent.service |
	awk '/^[0-9.]+s$/ { printf "%g", $1 / 2; next } /^[0-9]+min$/ { printf "%g", $1 * 30; next } { print "?" }')
doc=$(awk -v wd="$wd" -v r="$refresh" -v p="$poll_ms" 'BEGIN { printf "%.2f", 1 / wd + 1 / 30 + 1000 / p + 1 / r }')
echo "  documented agent timers: watchdog every $wd s (WatchdogSec/2), status every 30 s, IMDS lifecycle poll"
echo "  every $((poll_ms / 1000)) s, [env] refresh every $refresh s = $doc timer firings/s; each poll is an HTTP round trip"
echo "  (IMDS GETs in the window: $((i1 - i0))), so several wakeups each.  Agent threads: $(threads "$agent")"

# Soak rounds.
run_wrk() { # PORT SECONDS: prints the requests done
	wrk -t1 -c20 -d"$2s" "http://127.0.0.1:$1/health" 2>/dev/null | awk '/requests in/ {print $1}'
}
cycle=0
api='"/anb/api-url": {"Value": "https://api.example.com/v1"}' # the fake's state merge replaces "params" whole
for r in $(seq "$rounds"); do
	run_wrk 8091 "$soak" >"$WORK/probes" &
	wrk_pid=$!
	end=$(($(bench_now_us) + soak * 1000000))
	ok=0 n=0
	while [ "$(bench_now_us)" -lt "$end" ]; do
		cycle=$((cycle + 1)) n=$((n + 1))
		curl -sf -X POST --data "{\"params\": {\"/anb/feature-flags\": {\"Value\": \"v$cycle\"}, $api}}" \
			"$AWS_URL/_fake/state" >/dev/null || true
		if timeout 10 "$ANB_AGENT" --config "$conf" reload >"$WORK/reload.out" 2>&1; then ok=$((ok + 1)); fi
	done
	wait "$wrk_pid" || true
	probes=$(cat "$WORK/probes")
	nprobes=$(run_wrk 8092 "$soak")
	printf '  %-46s %7s KiB %8s KiB\n' "RssAnon after soak round $r" "$(anon "$agent")" "$(anon $(nginx_pids))"
	printf '    (%s s: agent %s/%s reloads ok, each a changed .env and a unit restart, %s probes; nginx %s probes)\n' \
		"$soak" "$ok" "$n" "${probes:-?}" "${nprobes:-?}"
done
[ "$(systemctl --user show -P MainPID anb-agent.service)" = "$agent" ] ||
	echo "  the agent's MainPID changed during the soak (it was restarted): see above"
echo "  agent bootstrap and last reload, from its log: $(grep -o 'bootstrap finished in [0-9]* ms' "$WORK/agent.log" | head -1);" \
	"$(grep -o 'reload: .*' "$WORK/agent.log" | tail -1)"
bench_done
