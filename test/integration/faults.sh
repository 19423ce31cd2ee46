# Sourced by the fault-matrix tests (test-fault-*.sh) after lib.sh and
# test/app-env.sh: measurements of the running agent.
#
#   agent_pid                      the agent's MainPID
#   cpu_ms PID                     user+system CPU time of PID, in ms
#   rss_anon_kb PID                RssAnon of PID, in kB
#   probes_start SECONDS [PATH]    probe /health once per 100 ms in the
#                                  background (a new connection each, like an
#                                  ALB); probes_wait sets PROBES ("N answered,
#                                  M unanswered, slowest X ms") and PROBES_MISSED
#   temp_files DIR                 the agent's temporary .env files in DIR

agent_pid() { unit_prop anb-agent.service MainPID; }

cpu_ms() {
	local s
	s=$(cat "/proc/$1/stat") || return 1
	s=${s##*) } # past "pid (comm) "
	# shellcheck disable=SC2086
	set -- $s
	# fields 14 and 15 of stat are the 12th and 13th after comm
	echo $(((${12} + ${13}) * 1000 / $(getconf CLK_TCK)))
}

rss_anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }

probes_start() {
	/usr/bin/python3 - "$1" "${2:-/health}" >"$WORK/probes.out" <<'PY' &
import socket, sys, time
secs, path = float(sys.argv[1]), sys.argv[2]
ok = missed = 0
worst = 0.0
codes = {}
end = time.monotonic() + secs
while time.monotonic() < end:
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", 8081), timeout=2.0) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
            data = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                data += c
        code = data.split(b" ", 2)[1].decode()
        codes[code] = codes.get(code, 0) + 1
        ok += 1
    except Exception:
        missed += 1
    worst = max(worst, time.monotonic() - t0)
    time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
print("%d %d %.0f %s" % (ok, missed, worst * 1000, ",".join("%s:%d" % kv for kv in sorted(codes.items()))))
PY
	PROBES_PID=$!
}

probes_wait() {
	wait "$PROBES_PID" || true
	local ok missed worst codes
	read -r ok missed worst codes <"$WORK/probes.out"
	PROBES_MISSED=$missed
	PROBES="$ok answered ($codes), $missed unanswered, slowest $worst ms"
}

temp_files() { find "$1" -maxdepth 1 \( -name '.env.*' -o -name '*.anb-agent.*' \) ! -name .env.role | sort; }

