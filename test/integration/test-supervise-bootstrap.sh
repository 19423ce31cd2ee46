#!/bin/bash
# From nothing to every unit active and the app answering through nginx
# with values the agent rendered from IMDS and tags -- on a real systemd
# manager with Debian's nginx, redis-server, gunicorn and celery.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds '{"tags": {"Name": "anb-both-1", "anb:role": "both", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user

step "systemctl start returns once the agent said READY=1"
# The agent's calls to systemd, for the order checked below.
timeout -s INT 120 busctl --user monitor --json=short --match "destination='org.freedesktop.systemd1'" \
	--match "type='signal',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'" \
	>"$WORK/calls.json" 2>"$WORK/monitor.err" &
monitor=$!
at_exit '[ -z "$monitor" ] || kill $monitor 2>/dev/null'
wait_for 5 grep -q "Monitoring bus message stream" "$WORK/monitor.err" || fail "busctl monitor: $(cat "$WORK/monitor.err")"
t0=$(date +%s%3N)
agent_start
t1=$(date +%s%3N)
echo "measured: systemctl start anb-agent (run → READY=1) took $((t1 - t0)) ms"
agent_log | grep "bootstrap finished" || fail "no bootstrap line: $(agent_log)"
for u in redis-server anb-api anb-worker nginx; do
	assert_eq "$(unit_prop $u.service ActiveState)" active "$u"
	ts=$(unit_prop $u.service InactiveExitTimestampMonotonic)
	te=$(unit_prop $u.service ActiveEnterTimestampMonotonic)
	echo "measured: $u start (inactive → active) $(((te - ts) / 1000)) ms"
done

step "the StartUnit calls reach systemd before the units' GetAll, which waits for each unit's job"
# systemd answers bus calls before it runs its jobs, and a GetAll of every
# property costs it about a millisecond per unit: the starts go first, and
# a unit's state is read once its job has ended.
sleep 0.3
kill -INT $monitor 2>/dev/null || true
wait $monitor 2>/dev/null || true
monitor=""
# Only the agent's calls count (systemctl show, above, sends GetAlls of its
# own): the agent is the sender of the StartUnit calls.
agent_bus=$(jq -r 'select(.type == "method_call" and .member == "StartUnit") | .sender' "$WORK/calls.json" | head -1)
[ -n "$agent_bus" ] || fail "no StartUnit call seen"
calls=$(jq -r --arg agent "$agent_bus" '
	if .type == "signal" and .member == "JobRemoved" then "JobRemoved " + (.payload.data[2] | tostring)
	elif .type == "method_call" and .sender == $agent then
		.member + " " + (if .member == "GetAll" then .path else (.payload.data[0] // "" | tostring) end)
	else empty end' "$WORK/calls.json")
echo "$calls" | grep -E '^(StartUnit|GetAll|JobRemoved) ' | head -16
# The bootstrap starts the "both" role's units: no GetAll before the last.
last_start=$(echo "$calls" | grep -n -E '^StartUnit (redis-server|anb-api|anb-worker|nginx)\.(service|socket)$' | sed -n 5p | cut -d: -f1)
first_getall=$(echo "$calls" | grep -n '^GetAll ' | head -1 | cut -d: -f1)
[ -n "$last_start" ] && [ -n "$first_getall" ] ||
	fail "calls not seen: 5th StartUnit at '$last_start', first GetAll at '$first_getall'"
[ "$last_start" -lt "$first_getall" ] || fail "a GetAll (call $first_getall) went before the last StartUnit (call $last_start)"
bus_path() { # UNIT: systemd's object path for it, from systemd
	busctl --user call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
		GetUnit s "$1" | sed -E 's/^o "(.*)"$/\1/'
}
# Each unit: the agent's StartUnit, then that job's end, then the agent's
# GetAll of it (which must come: the state is read, not lost).
line_after() { # AFTER LINE-TEXT: the first line number past AFTER with exactly that text
	echo "$calls" | awk -v after="$1" -v want="$2" 'NR > after && $0 == want { print NR; exit }'
}
for u in redis-server.service anb-api.socket anb-api.service anb-worker.service nginx.service; do
	started=$(line_after 0 "StartUnit $u")
	[ -n "$started" ] || fail "$u: no StartUnit from the agent"
	removed=$(line_after "$started" "JobRemoved $u")
	got=$(line_after 0 "GetAll $(bus_path "$u")")
	[ -n "$removed" ] && [ -n "$got" ] || fail "$u: StartUnit at $started, its JobRemoved at '$removed', the agent's GetAll at '$got'"
	[ "$removed" -lt "$got" ] || fail "$u: its GetAll (line $got) went before its start job ended (line $removed)"
done

step "units started in the order of their After= (jobs queued together, ordered by systemd)"
# redis before api and worker (Before= in its drop-in), the API's socket
# before the API and before nginx (After= in nginx's drop-in: nginx never
# waits for gunicorn); worker does not wait for api.
started() { unit_prop "$1" InactiveExitTimestampMonotonic; }
active() { unit_prop "$1" ActiveEnterTimestampMonotonic; }
for pair in redis-server.service:anb-api.service redis-server.service:anb-worker.service \
	anb-api.socket:anb-api.service anb-api.socket:nginx.service redis-server.service:nginx.service; do
	first=${pair%%:*} then=${pair##*:}
	[ "$(started "$then")" -ge "$(active "$first")" ] || fail "$then started before $first was active"
done
api=anb-api.service worker=anb-worker.service
echo "measured: worker started $((($(started $worker) - $(started $api)) / 1000)) ms after api (api active after $((($(active $api) - $(started $api)) / 1000)) ms)"
ready=$(unit_prop anb-agent.service ActiveEnterTimestampMonotonic)
last=0
for u in redis-server.service anb-api.socket anb-api.service anb-worker.service nginx.service; do
	t=$(active $u)
	[ "$t" -gt "$last" ] && last=$t
done
first=$(started redis-server.service)
echo "measured: units' critical path (redis start → last unit active) $(((last - first) / 1000)) ms; READY $(((ready - last) / 1000)) ms after the last unit"

step "the app, through nginx, shows values from the rendered .env"
settings=$(curl -sf 127.0.0.1:8080/settings)
assert_contains "$settings" '"APP_ENV":"staging"' "tag value"
assert_contains "$settings" '"AWS_DEFAULT_REGION":"eu-west-1"' "identity value"
assert_contains "$settings" '"APP_NAME":"anb-both-1"' "Name tag"
assert_contains "$settings" '"AVAILABILITY_ZONE":"eu-west-1b"' "meta-data value"

step "the API enqueues a celery task through redis and returns its result"
res=$(curl -sf -X POST 127.0.0.1:8080/videos/v42/transcode)
assert_contains "$res" '"video_id":"v42","status":"transcoded"' "task result"
assert_contains "$res" '"app_env":"staging"' "worker saw the .env"

step "systemctl status tells the story in one line"
status=$(systemctl --user status anb-agent.service)
assert_contains "$status" 'Status: "healthy · both · 5/5 units active · env r1' "STATUS="

step "SIGTERM ends the agent, not the app"
systemctl --user stop anb-agent.service
assert_eq "$(unit_prop anb-api.service ActiveState)" active "api after agent stop"
assert_eq "$(unit_prop nginx.service ActiveState)" active "nginx after agent stop"
agent_log | grep -q "exiting; the app's units keep running" || fail "no exit line"
echo OK
