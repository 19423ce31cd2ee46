#!/bin/bash
# The operator surface on the real manager: reload (CLI and systemctl),
# status and status --json, drain, the watchdog, the control socket's
# permissions, and secret hygiene across log, status, /health and /metrics.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
SECRET=S3cr3t-Tag-Value-9f8e7d
tags() { printf '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "%s", "db-password": "%s"}}' "$1" "$SECRET"; }
start_imds "$(tags staging)"
app_setup "$WORK/root" "$IMDS_URL" user
echo 'DB_PASSWORD=${tag:db-password}' >>"$ROOT/etc/anb-agent/env.tmpl"
A=("$ANB_AGENT" --config "$ROOT/etc/anb-agent/agent.conf")
agent_start
grep -q "^DB_PASSWORD='$SECRET'$" "$ENV_FILE" || fail "secret not rendered"

step "anb-agent reload applies a changed tag and prints key names and restarted units"
api_pid=$(unit_prop anb-api.service MainPID)
imds_ctl state "$(tags production)" >/dev/null
out=$("${A[@]}" reload)
echo "$out"
assert_contains "$out" "changed keys:   APP_ENV" "changed keys"
assert_contains "$out" "restarted:      anb-api.service" "restarted units"
[ "$(unit_prop anb-api.service MainPID)" != "$api_pid" ] || fail "api not restarted"

step "an unchanged reload restarts nothing"
api_pid=$(unit_prop anb-api.service MainPID)
out=$("${A[@]}" reload)
assert_contains "$out" "changed keys:   none" "no keys"
assert_contains "$out" "restarted:      none" "nothing restarted"
assert_eq "$(unit_prop anb-api.service MainPID)" "$api_pid" "api kept its pid"

step "systemctl reload runs the same (ExecReload=anb-agent reload)"
imds_ctl state "$(tags canary)" >/dev/null
systemctl --user reload anb-agent.service
grep -q "changed keys:   APP_ENV" "$ROOT/agent.log" || fail "ExecReload output: $(tail -5 "$ROOT/agent.log")"
grep -q "^APP_ENV='canary'$" "$ENV_FILE" || fail "not applied"
[ "$(unit_prop anb-api.service MainPID)" != "$api_pid" ] || fail "api not restarted by systemctl reload"

step "concurrent reloads are coalesced, each caller gets an answer"
# The first render waits 2 s on IMDS, so all five requests arrive while it
# runs however slowly their processes start (a sanitizer build): one
# render, then one more for everything that came during it.
before=$(curl -s 127.0.0.1:8081/metrics | awk '/^anb_renders_total/ {print $2}')
imds_ctl fault '{"kind": "slow", "delay_ms": 2000, "path": "dynamic/instance-identity", "count": 1}' >/dev/null
pids=()
for i in 1 2 3 4 5; do "${A[@]}" reload >"$WORK/r$i.out" 2>&1 & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent reload failed: $(cat "$WORK"/r*.out)"; done
after=$(curl -s 127.0.0.1:8081/metrics | awk '/^anb_renders_total/ {print $2}')
echo "measured: 5 concurrent reloads → $((after - before)) renders"
[ $((after - before)) -le 2 ] || fail "$((after - before)) renders for 5 concurrent reloads"

step "a bad config on reload is refused with file:line; the running config stays"
cp "$ROOT/etc/anb-agent/agent.conf" "$WORK/good.conf"
printf '[health]\nlisten = 127.0.0.1:8081\nbogus = 1\n' >>"$ROOT/etc/anb-agent/agent.conf"
line=$(grep -n '^bogus' "$ROOT/etc/anb-agent/agent.conf" | cut -d: -f1)
capture "${A[@]}" reload
[ "$rc" -ne 0 ] || fail "bad config reload succeeded"
assert_contains "$out" "$ROOT/etc/anb-agent/agent.conf:$line: unknown key 'bogus' in [health]" "file:line"
assert_contains "$out" "the running configuration stays" "kept"
cp "$WORK/good.conf" "$ROOT/etc/anb-agent/agent.conf"
assert_contains "$("${A[@]}" status)" "healthy" "still healthy"

step "a reload that cannot render reports every problem and keeps the .env"
cp "$ROOT/etc/anb-agent/env.tmpl" "$WORK/good.tmpl"
printf 'X=${tag:nope1}\nY=${tag:nope2}\n' >>"$ROOT/etc/anb-agent/env.tmpl"
cp "$ENV_FILE" "$WORK/before.env"
capture "${A[@]}" reload
[ "$rc" -ne 0 ] || fail "a reload with missing values succeeded"
assert_contains "$out" "tag 'nope1' has no value and no default" "first problem"
assert_contains "$out" "tag 'nope2' has no value and no default" "second problem"
assert_contains "$("${A[@]}" status)" "nope1" "status keeps the last error"
cmp -s "$ENV_FILE" "$WORK/before.env" || fail ".env changed"
cp "$WORK/good.tmpl" "$ROOT/etc/anb-agent/env.tmpl"
"${A[@]}" reload >/dev/null || fail "reload after fixing the template"

step "status: text and --json agree with systemctl status"
text=$("${A[@]}" status)
echo "$text"
json=$("${A[@]}" status --json)
/usr/bin/python3 - "$json" <<'PY' || fail "status --json"
import json, sys
s = json.loads(sys.argv[1])
assert s["state"] == "healthy" and s["role"] == "web" and s["draining"] is False, s
assert [u["name"] for u in s["units"]] == ["redis-server.service", "anb-api.socket", "anb-api.service", "nginx.service"], s["units"]
assert all(u["active_state"] == "active" and (u["main_pid"] > 0 or u["name"].endswith(".socket")) for u in s["units"]), s["units"]
assert s["health"]["status"] == 200 and s["env"]["revision"] >= 3, s
print("status --json ok, env r%d" % s["env"]["revision"])
PY
rev=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["env"]["revision"])' "$json")
sys_status=$(systemctl --user status anb-agent.service)
assert_contains "$sys_status" "Status: \"healthy · web · 4/4 units active · env r$rev" "STATUS= line"
assert_contains "$text" "env          r$rev," "text status revision"

step "drain flips /health to 503 and back"
out=$("${A[@]}" drain)
assert_eq "$out" "draining: /health now answers 503" "drain output"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8081/health)" 503 "draining"
assert_contains "$(curl -s 127.0.0.1:8081/health)" '"status":"draining"' "body"
assert_contains "$("${A[@]}" status)" "drain        yes" "status shows drain"
"${A[@]}" drain --undo >/dev/null
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8081/health)" 200 "undrained"

step "a non-root client is refused"
capture setpriv --reuid=65534 --regid=65534 --clear-groups "${A[@]}" status
assert_eq "$rc" 77 "exit code (socket mode 0600)"
assert_eq "$(stat -c %a "$ROOT/run/anb-agent/control.sock")" 600 "socket mode"
chmod 0755 "$ROOT/run/anb-agent"
chmod 0666 "$ROOT/run/anb-agent/control.sock"
capture setpriv --reuid=65534 --regid=65534 --clear-groups "${A[@]}" status
assert_eq "$rc" 77 "exit code (SO_PEERCRED)"
assert_contains "$out" "permission denied: only root may control anb-agent" "peer check"
grep -q "control: refused a client with uid 65534" "$ROOT/agent.log" || fail "refusal not logged"

step "secret hygiene: no secret or IMDS token in the log, status, /health or /metrics"
{
	cat "$ROOT/agent.log"
	"${A[@]}" status
	"${A[@]}" status --json
	curl -s 127.0.0.1:8081/health
	curl -s 127.0.0.1:8081/metrics
} >"$WORK/surface.txt"
grep -qF "$SECRET" "$WORK/surface.txt" && fail "the secret leaked: $(grep -F "$SECRET" "$WORK/surface.txt" | head -3)"
for t in $(imds_ctl tokens | /usr/bin/python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))'); do
	grep -qF "$t" "$WORK/surface.txt" && fail "an IMDS token leaked"
done
grep -q '"/' <(curl -s 127.0.0.1:8081/health) && fail "a path in /health"
assert_eq "$(stat -c %a "$ENV_FILE")" 640 ".env mode"

step "a hung loop (SIGSTOP) is restarted by systemd's watchdog"
mkdir -p "$ANB_UNIT_DIR/anb-agent.service.d"
printf '[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\n' >"$ANB_UNIT_DIR/anb-agent.service.d/watchdog.conf"
systemctl --user daemon-reload
systemctl --user restart anb-agent.service
pid=$(unit_prop anb-agent.service MainPID)
sleep 3
assert_eq "$(unit_prop anb-agent.service MainPID)" "$pid" "a turning loop feeds the watchdog"
kill -STOP "$pid"
restarted() { local p; p=$(unit_prop anb-agent.service MainPID); [ "$p" != "$pid" ] && [ "$p" != 0 ]; }
wait_for 20 restarted || fail "watchdog did not restart the agent"
echo "measured: stuck agent replaced by pid $(unit_prop anb-agent.service MainPID) (WatchdogSec=2s)"
wait_for 15 sh -c '[ "$(curl -s -o /dev/null -w "%{http_code}" 127.0.0.1:8081/health)" = 200 ]' || fail "not healthy after restart"
echo OK
