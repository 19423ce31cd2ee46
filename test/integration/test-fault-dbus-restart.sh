#!/bin/bash
# Fault: the D-Bus daemon the agent reaches systemd through is restarted
# (here the user manager's dbus.service, which owns the bus socket: the
# manager reconnects to it, as systemd does to the system bus).
# Must hold: the agent notices, reconnects (with backoff, no busy loop),
# re-subscribes (unit changes after the restart reach it by signals), and
# its state table is right afterwards (`anb-agent status` matches systemd);
# a restart a reload could not do while the bus was gone is done when it
# is back.
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

step "a reload while the bus is gone: the .env changes, the reload says the restart is not done, it is done when the bus is back"
api=$(unit_prop anb-api.service MainPID)
losses=$(agent_log | grep -c "lost the connection to systemd")
systemctl --user stop dbus.socket dbus.service
lost_again() { [ "$(agent_log | grep -c "lost the connection to systemd")" -gt "$losses" ]; }
wait_for 10 lost_again || fail "bus loss not noticed: $(agent_log | tail -3)"
imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "production"}}' >/dev/null
capture agent_cli reload
[ "$rc" -ne 0 ] || fail "the reload reported success with its restart not done: $out"
assert_contains "$out" "RestartUnit: systemd's bus is not connected" "the reload names what is not done"
assert_eq "$(unit_prop anb-api.service MainPID)" "$api" "nothing restarted without the bus"
systemctl --user start dbus.socket
restarted() { [ "$(unit_prop anb-api.service MainPID)" != "$api" ]; }
wait_for 30 restarted || fail "anb-api never restarted on the new .env: $(agent_log | tail -8)"
serves() { curl -sf 127.0.0.1:8080/settings | grep -q '"APP_ENV":"production"'; }
wait_for 20 serves || fail "the app does not serve the new value: $(curl -s 127.0.0.1:8080/settings)"

step "started with the bus gone: a reload is answered at once (it runs when the bus is back), not held open"
systemctl --user stop anb-agent.service dbus.socket dbus.service
: >"$ROOT/agent.log"
systemctl --user start --no-block anb-agent.service
waiting() { agent_log | grep -q "cannot connect to systemd's"; }
wait_for 10 waiting || fail "the agent is not waiting for the bus: $(agent_log | tail -3)"
rendered() { agent_log | grep -q "rendered "; }
wait_for 10 rendered || fail "no render: $(agent_log | tail -3)"
capture timeout 10 "$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf" reload
assert_eq "$rc" 75 "reload while waiting for the bus: $out"
assert_contains "$out" "the reload runs as soon as it is back" "says when it runs"
systemctl --user start dbus.socket
ready() { [ "$(unit_prop anb-agent.service ActiveState)" = active ]; }
wait_for 30 ready || fail "the agent did not start once the bus was back: $(agent_log | tail -5)"
ran() { agent_log | grep -q "reload: .env unchanged\|reload: .env changed"; }
wait_for 10 ran || fail "the kept reload did not run: $(agent_log | tail -5)"
echo OK
