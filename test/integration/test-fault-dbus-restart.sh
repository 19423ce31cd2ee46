#!/bin/bash
# Fault: the D-Bus daemon the agent reaches systemd through is restarted
# (here the user manager's dbus.service, which owns the bus socket: the
# manager reconnects to it, as systemd does to the system bus).
# Must hold: the agent notices, reconnects (with backoff, no busy loop),
# re-subscribes (unit changes after the restart reach it by signals), and
# its state table is right afterwards (`anb-agent status` matches systemd).
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
[ "$(unit_prop dbus.service ActiveState)" = active ] ||
	fail "the agent's bus is not the manager's dbus.service here; this test restarts that"

step "restart the bus daemon"
pid=$(agent_pid)
c0=$(cpu_ms "$pid")
probes_start 5
t0=$(date +%s%3N)
systemctl --user restart dbus.service
lost() { agent_log | grep -q "lost the connection to systemd"; }
wait_for 10 lost || fail "disconnect not noticed: $(agent_log | tail -3)"
back() { agent_log | sed -n '/lost the connection to systemd/,$p' | grep -q "connected to systemd"; }
wait_for 30 back || fail "no reconnect: $(agent_log | tail -3)"
echo "measured: reconnected $(($(date +%s%3N) - t0)) ms after the bus restart"
probes_wait
echo "measured: probes during the bus restart: $PROBES; agent CPU $(($(cpu_ms "$pid") - c0)) ms"
[ "$PROBES_MISSED" -eq 0 ] || fail "probes unanswered"
assert_eq "$(agent_pid)" "$pid" "the agent did not restart"

step "the state table matches systemd"
st=$(agent_cli status)
for u in anb-api nginx redis-server; do
	want="$(unit_prop $u.service ActiveState)/$(unit_prop $u.service SubState)"
	grep -q "$u.service *$want" <<<"$st" || fail "status for $u is not $want: $(grep "$u" <<<"$st")"
done
healthy() { curl -s 127.0.0.1:8081/health | grep -q '"status":"healthy"'; }
wait_for 10 healthy || fail "not healthy after the reconnect: $(curl -s 127.0.0.1:8081/health)"

step "signals arrive on the new connection: a killed unit is seen and brought back"
upid=$(unit_prop nginx.service MainPID)
kill -9 "$upid"
seen() { agent_log | grep -q "nginx.service: active/running → "; }
wait_for 5 seen || fail "no unit change seen after the bus restart: $(agent_log | tail -3)"
wait_for 20 healthy || fail "not healthy again"
echo OK
