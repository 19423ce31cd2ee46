#!/bin/bash
# Hostile clients on the health port of the real daemon (issue 10, items
# 1 and 2): a connection pipelining /metrics without reading its answers
# must not grow the agent's memory, and /health/live must keep answering
# meanwhile; a request dripping one byte a second is closed at the header
# deadline from its first byte, and blank lines dripped on an idle
# keep-alive connection do not keep it open past the idle timeout.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
H=127.0.0.1:8081
probe() { /usr/bin/python3 "$SRC/test/alb_probe.py" "$@"; }
probe until $H 200 15 >/dev/null || fail "never healthy: $(agent_log | tail -5)"
pid=$(systemctl --user show -P MainPID anb-agent.service)
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }

cat >"$WORK/hostile.py" <<'PY'
import socket, sys, time
host, port = sys.argv[2].rsplit(":", 1)
addr = (host, int(port))

def connect():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(addr)
    return s

def flood(secs):
    """Pipelines GET /metrics without ever reading; reconnects when closed."""
    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 64
    end, sent, conns = time.time() + secs, 0, 1
    s = connect()
    s.setblocking(False)
    while time.time() < end:
        try:
            n = s.send(req)
            sent += n // 34
        except BlockingIOError:
            time.sleep(0.005)
        except OSError:
            s.close()
            s = connect()
            s.setblocking(False)
            conns += 1
    s.close()
    print("flood: %d requests sent over %d connection(s) in %.0f s" % (sent, conns, secs))

def drip(data, limit, first=b""):
    """Sends first, then one byte of data a second; seconds until closed."""
    s = connect()
    if first:
        s.sendall(first)
        s.settimeout(5)
        if not s.recv(65536).startswith(b"HTTP/1.1 200"):
            sys.exit("no answer to the first request")
    s.settimeout(0.05)
    t0, i = time.time(), 0
    while time.time() - t0 < limit:
        try:
            s.send(data[i % len(data):i % len(data) + 1])
        except OSError:
            break
        i += 1
        try:
            if s.recv(65536) == b"":
                break
        except socket.timeout:
            pass
        except OSError:
            break
        time.sleep(max(0, t0 + i - time.time()))
    print("%.1f" % (time.time() - t0))

if sys.argv[1] == "flood":
    flood(float(sys.argv[3]))
elif sys.argv[1] == "drip-request":
    drip(b"GET /health HTTP/1.1\r\nX-Drip: " + b"a" * 200, float(sys.argv[3]))
elif sys.argv[1] == "drip-idle":
    drip(b"\r\n", float(sys.argv[3]), first=b"GET /health/live HTTP/1.1\r\n\r\n")
PY
hostile() { /usr/bin/python3 "$WORK/hostile.py" "$@"; }

step "pipelined /metrics never read: RSS stays flat, /health/live answers"
before=$(rss_kb)
hostile flood $H 8 >"$WORK/flood.out" &
flooder=$!
max=$before
lives=0
while kill -0 $flooder 2>/dev/null; do
	now=$(rss_kb)
	[ "$now" -le "$max" ] || max=$now
	assert_eq "$(probe once $H /health/live)" "200 ok" "/health/live during the flood"
	lives=$((lives + 1))
	sleep 0.25
done
wait $flooder
cat "$WORK/flood.out"
echo "measured: agent RSS $((before / 1024)) MiB before, at most $((max / 1024)) MiB during the flood" \
	"(+$(((max - before) / 1024)) MiB); /health/live answered $lives probes"
[ "$lives" -ge 10 ] || fail "too few probes during the flood"
[ $((max - before)) -le $((16 * 1024)) ] || fail "RSS grew by $(((max - before) / 1024)) MiB under the flood"
metrics=$(curl -sf http://$H/metrics) || fail "/metrics after the flood"

step "a request dripping one byte a second is closed at the header deadline (2 s)"
secs=$(hostile drip-request $H 30)
echo "measured: a request dripping a byte a second was closed after $secs s"
awk -v s="$secs" 'BEGIN { exit !(s < 15) }' || fail "a dripping request was kept $secs s"

step "blank lines dripped on an idle keep-alive connection: closed at the idle timeout (4 s)"
secs=$(hostile drip-idle $H 30)
echo "measured: an idle connection dripping CRLF was closed after $secs s"
awk -v s="$secs" 'BEGIN { exit !(s < 15) }' || fail "an idle connection was kept $secs s"
echo OK
