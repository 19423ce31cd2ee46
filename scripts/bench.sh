#!/bin/bash
# make bench: anb-agent's /health against nginx `location = /health
# { return 200; }` (Debian nginx, default worker count), side by side in
# one run with wrk, plus probe latency under hostile load and during a
# reload, and memory.  Prints ratios; asserts nothing.
#   scripts/bench.sh /path/to/anb-agent      BENCH_SECONDS=10 by default
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
agent=${1:-$src/build/anb-agent}
secs=${BENCH_SECONDS:-10}

if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	command -v wrk >/dev/null || { echo "bench: needs wrk (scripts/install-deps.sh)" >&2; exit 69; }
	exec "$src/test/harness.sh" "$0" "$agent"
fi

work=$(mktemp -d /tmp/anb-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The IMDS fake and an agent managing no units: healthy as soon as the .env
# is rendered.
/usr/bin/python3 "$src/test/fakes/imds.py" --port-file "$work/imds.port" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/imds.port" ] && break; sleep 0.05; done
mkdir -p "$work/app"
printf 'REGION=${identity:region}\nENV=${tag:anb:env:-x}\n' >"$work/env.tmpl"
cat >"$work/agent.conf" <<CONF
[imds]
endpoint = http://127.0.0.1:$(cat "$work/imds.port")
[env]
template = $work/env.tmpl
output = $work/app/.env
[systemd]
bus = user
[health]
listen = 127.0.0.1:8091
CONF
"$agent" --config "$work/agent.conf" run 2>"$work/agent.log" &
agent_pid=$!
pids+=($agent_pid)
for _ in $(seq 100); do curl -sf http://127.0.0.1:8091/health >/dev/null && break; sleep 0.05; done

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    server { listen 127.0.0.1:8092; location = /health { return 200; } }
}
NGINX
/usr/sbin/nginx -c "$work/nginx/nginx.conf"
sleep 0.3
nginx_master=$(cat "$work/nginx/nginx.pid")
pids+=($nginx_master)

run_wrk() { # URL [extra args]
	wrk -t1 -c50 -d"${secs}s" --latency "$@" 2>&1
}
field() { # wrk-output key
	case $2 in
	rps) awk '/Requests\/sec/ {print $2}' <<<"$1" ;;
	p50) awk '$1 == "50%" {print $2}' <<<"$1" ;;
	p99) awk '$1 == "99%" {print $2}' <<<"$1" ;;
	esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "anb-agent bench: $(nproc) cores, ${secs}s per run, wrk -t1 -c50"
printf '%-34s %12s %10s %10s\n' "pattern / server" "req/s" "p50" "p99"
for pattern in keepalive newconn; do
	args=()
	[ $pattern = newconn ] && args=(-H "Connection: close")
	a=$(run_wrk "${args[@]}" http://127.0.0.1:8091/health)
	n=$(run_wrk "${args[@]}" http://127.0.0.1:8092/health)
	printf '%-34s %12s %10s %10s\n' "$pattern / anb-agent" "$(field "$a" rps)" "$(field "$a" p50)" "$(field "$a" p99)"
	printf '%-34s %12s %10s %10s\n' "$pattern / nginx" "$(field "$n" rps)" "$(field "$n" p50)" "$(field "$n" p99)"
	printf '%-34s %12s\n' "$pattern ratio anb-agent/nginx" "$(ratio "$(field "$a" rps)" "$(field "$n" rps)")"
done

probe_p99() { # [PORT]: 1000 sequential probes, a new connection each; prints p50 p99 in ms
	/usr/bin/python3 - "${1:-8091}" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
lat = []
for _ in range(1000):
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
    lat.append((time.perf_counter() - t) * 1000)
lat.sort()
print("%.3f %.3f" % (lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]))
PY
}

echo
echo "probe latency (a Python ALB-like prober: new connection per probe, 1000 probes; the prober's own"
echo "overhead is in every number, so compare with nginx measured the same way):"
read -r p50 p99 <<<"$(probe_p99 8092)"
printf '  nginx, idle:                               p50 %s ms  p99 %s ms\n' "$p50" "$p99"
read -r p50 p99 <<<"$(probe_p99)"
printf '  anb-agent, idle:                           p50 %s ms  p99 %s ms\n' "$p50" "$p99"
/usr/bin/python3 "$src/test/alb_probe.py" hold 127.0.0.1:8091 1000 $((secs + 5)) >"$work/hold" &
holder=$!
pids+=($holder)
for _ in $(seq 200); do grep -q holding "$work/hold" 2>/dev/null && break; sleep 0.05; done
read -r p50 p99 <<<"$(probe_p99)"
printf '  anb-agent, 1000 slow clients holding:     p50 %s ms  p99 %s ms\n' "$p50" "$p99"
kill $holder 2>/dev/null || true
( for _ in $(seq 200); do kill -HUP $agent_pid; sleep 0.02; done ) &
hupper=$!
read -r p50 p99 <<<"$(probe_p99)"
kill $hupper 2>/dev/null || true
printf '  anb-agent, reloads in a loop (SIGHUP):    p50 %s ms  p99 %s ms  (%s renders)\n' "$p50" "$p99" \
	"$(curl -s http://127.0.0.1:8091/metrics | awk '/^anb_renders_total/ {print $2}')"

mem() { # PIDS...: RSS and private (Private_Clean + Private_Dirty) in KiB, summed
	local rss=0 priv=0 p
	for p in "$@"; do
		rss=$((rss + $(awk '/^Rss:/ {print $2}' /proc/$p/smaps_rollup)))
		priv=$((priv + $(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' /proc/$p/smaps_rollup)))
	done
	echo "$rss $priv"
}
read -r ar ap <<<"$(mem $agent_pid)"
read -r nr np <<<"$(mem $nginx_master $(pgrep -P "$nginx_master"))"
echo
printf 'memory (smaps_rollup):  anb-agent RSS %s KiB, private %s KiB;  nginx (master + %s workers) RSS %s KiB, private %s KiB\n' \
	"$ar" "$ap" "$(pgrep -c -P "$nginx_master")" "$nr" "$np"

# An .env change under traffic, as an ALB sees it: the sample app (role
# both) under the agent, 8 keep-alive connections through nginx on :8080
# sending GET /settings back to back, and `anb-agent reload` with a
# changed tag restarting anb-api and anb-worker meanwhile
# (test-reload-zero-downtime asserts the same run fails nothing).
export ANB_SRCDIR=$src ANB_AGENT=$agent
. "$src/test/app-env.sh"
printf '%s' '{"tags": {"Name": "anb-bench-1", "anb:role": "both", "anb:env": "before"}}' >"$work/imds-app.json"
/usr/bin/python3 "$src/test/fakes/imds.py" --port-file "$work/imds-app.port" --state "$work/imds-app.json" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/imds-app.port" ] && break; sleep 0.05; done
imds_app=http://127.0.0.1:$(cat "$work/imds-app.port")
app_setup "$work/root" "$imds_app" user
systemctl --user start anb-agent.service
/usr/bin/python3 "$src/test/traffic.py" run 127.0.0.1:8080 /settings 8 "$work/stop" "$work/requests" &
load=$!
pids+=($load)
sleep 2
curl -sf -X POST --data '{"tags": {"Name": "anb-bench-1", "anb:role": "both", "anb:env": "after"}}' \
	"$imds_app/_fake/state" >/dev/null
t0=$(date +%s%3N)
"$agent" --config "$work/root/etc/anb-agent/agent.conf" reload >"$work/reload.out" 2>&1 || true
t1=$(date +%s%3N)
sleep 2
touch "$work/stop"
wait $load || true
summary=$(/usr/bin/python3 "$src/test/traffic.py" summary "$work/requests" "$t0" "$t1")
get() { sed -n "s/^$1=//p" <<<"$summary"; }
echo
echo "reload under traffic (nginx :8080 → gunicorn, 8 keep-alive connections, GET /settings; a changed tag"
echo "restarts $(sed -n 's/^restarted: *//p' "$work/reload.out")):"
printf '  reload took %s ms; %s requests during it: %s non-2xx, %s connection errors (%s);\n' \
	$((t1 - t0)) "$(get window)" "$(get window_non2xx)" "$(get window_errors)" "$(get failures)"
printf '  longest request %s ms (all %s requests: p50 %s ms, p99 %s ms); new value served %s ms after the reload began\n' \
	"$(get window_max_ms)" "$(get total)" "$(get p50_ms)" "$(get p99_ms)" "$(get first_new_ms)"
