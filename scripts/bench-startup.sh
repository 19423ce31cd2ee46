#!/bin/bash
# make bench, startup: (1) `systemctl --user start anb-agent` until READY
# (Type=notify: systemctl returns when the agent has rendered the .env and
# its managed units are up) against `systemctl --user start` of the same two
# trivial units directly, median of N interleaved runs on the harness's user
# manager, and where an agent run's time goes (systemd's stamp of the fork,
# the agent's own bootstrap, the rest); (2) `anb-agent --version` against
# /bin/true, median of M process runs, and the shared libraries each loads.
# Numbers only.
#   scripts/bench-startup.sh [/path/to/anb-agent]
#   BENCH_STARTUP_RUNS=25 BENCH_EXEC_RUNS=200
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ANB_AGENT=$(realpath "${1:-${ANB_AGENT:-$here/../build/anb-agent}}")
if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	exec "$here/../test/harness.sh" "$0" "$ANB_AGENT"
fi
. "$here/bench-lib.sh"
runs=${BENCH_STARTUP_RUNS:-25}
exec_runs=${BENCH_EXEC_RUNS:-200}

bench_fakes
bench_trivial_units
bench_agent_unit "$(bench_agent_conf 8091 "bench-a.service bench-b.service")"
printf 'REGION=${identity:region}\nINSTANCE_ID=${identity:instanceId}\n' >"$WORK/root/etc/anb-agent/env.tmpl"

timed() { # CMD...: prints its wall time in us
	local t0 t1
	t0=$(bench_now_us)
	"$@" >/dev/null
	t1=$(bench_now_us)
	echo $((t1 - t0))
}
stop_all() { systemctl --user stop anb-agent.service bench-a.service bench-b.service; }
# When systemd forked UNIT's main process, in us of the realtime clock
# (bench_now_us's), from its own stamp.
forked_us() {
	date -d "$(systemctl --user show --timestamp=us+utc -P ExecMainStartTimestamp "$1")" +%s%6N 2>/dev/null
}

# One untimed round of each first: unit files loaded, page cache warm.
systemctl --user start bench-a.service bench-b.service && stop_all
systemctl --user start anb-agent.service && stop_all
: >"$WORK/direct" && : >"$WORK/agent" && : >"$WORK/agent.log" && : >"$WORK/split" && : >"$WORK/fork.direct"
for _ in $(seq "$runs"); do
	t0=$(bench_now_us)
	timed systemctl --user start bench-a.service bench-b.service >>"$WORK/direct"
	f=$(forked_us bench-a.service) && echo $((f - t0)) >>"$WORK/fork.direct"
	stop_all
	rm -f "$WORK/root/srv/anb/.env"
	t0=$(bench_now_us)
	timed systemctl --user start anb-agent.service >>"$WORK/agent"
	t1=$(bench_now_us)
	f=$(forked_us anb-agent.service) && b=$(bench_bootstrap_us) && [ -n "$b" ] &&
		echo $((f - t0)) $((t1 - f - b)) "$b" >>"$WORK/split"
	[ "$(systemctl --user show -P ActiveState bench-b.service)" = active ] || echo "  (a run ended without bench-b active)"
	stop_all
done
d=$(bench_median <"$WORK/direct")
a=$(bench_median <"$WORK/agent")
# The overhead of each interleaved pair (agent run - the direct run before
# it): the two share the machine's state of the moment.
paste "$WORK/agent" "$WORK/direct" | awk '{ print $1 - $2 }' >"$WORK/pairs"
o=$(bench_median <"$WORK/pairs")
read -r o25 o75 < <(bench_quartiles <"$WORK/pairs")
echo "startup: READY on the harness's systemd --user, median of $runs interleaved runs, load average $(cut -d" " -f1-3 /proc/loadavg)"
echo "(two trivial Type=exec units; the agent's run adds its own start, its config check and a 2-key IMDS render from the fake,"
echo "as shipped):"
printf '  %-58s %8s ms\n' "systemctl --user start bench-a bench-b (direct)" "$(bench_ms "$d")"
printf '  %-58s %8s ms\n' "systemctl --user start anb-agent (managing both) to READY" "$(bench_ms "$a")"
printf '  %-58s %8s ms   ratio agent/direct %s\n' "READY overhead (agent - direct, median of the pairs)" "$(bench_ms "$o")" \
	"$(bench_ratio "$a" "$d")"
printf '  %-58s %8s ms\n' "  the middle half of the pairs" "$(bench_ms "$o25")-$(bench_ms "$o75")"
if [ -s "$WORK/split" ]; then
	echo "  where the time goes (systemd's stamp of each fork, the agent's status; medians of $(wc -l <"$WORK/split") runs):"
	col() { cut -d" " -f"$1" "$WORK/split" | bench_median; }
	printf '  %-58s %8s ms\n' "  direct: systemctl start -> bench-a forked" "$(bench_ms "$(bench_median <"$WORK/fork.direct")")" \
		"  agent:  systemctl start -> the agent forked" "$(bench_ms "$(col 1)")" \
		"          its bootstrap (render + the units' start)" "$(bench_ms "$(col 3)")" \
		"          exec, libraries, config; READY=1 -> systemctl" "$(bench_ms "$(col 2)")"
else
	echo "  where the time goes: not measured (needs jq and the agent's status)"
fi

# Process start: fork+exec+exit from this shell, the same for each.  The
# peers: /bin/true, and an empty main() linked with libcurl alone -- the
# floor for any program that links libcurl4-openssl (its dependency closure
# is most of the agent's libraries).  check-config is what `run` checks
# before it starts (the unit had it as ExecStartPre=, a second process
# start on the READY path, until `run` checked the same itself).
# GNUTLS_NO_IMPLICIT_INIT=1 is how the shipped unit starts the agent (see
# the unit): the row beside --version shows what it saves.
printf 'int main(void) { return 0; }\n' >"$WORK/empty.c"
have_cc=
cc -O2 -o "$WORK/empty-curl" "$WORK/empty.c" -Wl,--no-as-needed $(pkg-config --libs libcurl) 2>/dev/null && have_cc=1
conf=$WORK/root/etc/anb-agent/agent.conf
: >"$WORK/ver" && : >"$WORK/ver.nognutls" && : >"$WORK/check" && : >"$WORK/true" && : >"$WORK/curl"
for _ in $(seq "$exec_runs"); do
	timed "$ANB_AGENT" --version >>"$WORK/ver"
	GNUTLS_NO_IMPLICIT_INIT=1 timed "$ANB_AGENT" --version >>"$WORK/ver.nognutls"
	timed "$ANB_AGENT" --config "$conf" check-config >>"$WORK/check"
	timed /bin/true >>"$WORK/true"
	[ -z "$have_cc" ] || timed "$WORK/empty-curl" >>"$WORK/curl"
done
v=$(bench_median <"$WORK/ver")
c=$(bench_median <"$WORK/check")
t=$(bench_median <"$WORK/true")
echo
echo "process start: median of $exec_runs runs each, interleaved (fork + exec + exit from bash; load average $(cut -d' ' -f1-3 /proc/loadavg)):"
row() { printf '  %-44s %8s ms  %3s shared libraries   ratio to /bin/true %s\n' "$1" "$(bench_ms "$2")" "$3" "$(bench_ratio "$2" "$t")"; }
row "anb-agent --version" "$v" "$(ldd "$ANB_AGENT" | wc -l)"
row "  with GNUTLS_NO_IMPLICIT_INIT=1 (the unit)" "$(bench_median <"$WORK/ver.nognutls")" "$(ldd "$ANB_AGENT" | wc -l)"
row "anb-agent check-config" "$c" "$(ldd "$ANB_AGENT" | wc -l)"
[ -z "$have_cc" ] || row "empty main() linked with libcurl only" "$(bench_median <"$WORK/curl")" "$(ldd "$WORK/empty-curl" | wc -l)"
row "/bin/true" "$t" "$(ldd /bin/true | wc -l)"
bench_done
