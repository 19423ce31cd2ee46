#!/bin/bash
# One argument parser for every verb: global options before or after the
# verb, each verb's flags only with that verb, clear usage errors (64).
. "$(dirname "$0")/lib.sh"
printf '[env]\ntemplate = %s/none.tmpl\n' "$WORK" >"$WORK/agent.conf"

step "--config after the verb is the same as before it"
capture "$ANB_AGENT" check-config --config "$WORK/agent.conf"
assert_eq "$rc" 78 "check-config --config FILE: $out"
assert_contains "$out" "$WORK/none.tmpl" "the option reached the verb"
capture "$ANB_AGENT" --config "$WORK/agent.conf" check-config
assert_eq "$rc" 78 "--config FILE check-config: $out"
capture "$ANB_AGENT" render -c "$WORK/agent.conf" --verbose
assert_eq "$rc" 78 "render -c FILE --verbose: $out"

step "a verb's flag on another verb, an extra operand, an unknown option: 64 naming it"
capture "$ANB_AGENT" status --undo
assert_eq "$rc" 64 "status --undo"
assert_contains "$out" "status does not take --undo" "names the flag"
capture "$ANB_AGENT" drain now
assert_eq "$rc" 64 "drain now"
assert_contains "$out" "unexpected argument 'now'" "names the operand"
capture "$ANB_AGENT" render --bogus
assert_eq "$rc" 64 "render --bogus"
assert_contains "$out" "unknown option '--bogus'" "names the option"
capture "$ANB_AGENT" --config
assert_eq "$rc" 64 "--config without a value"

step "status and reload print the answer's outside text escaped: no terminal control reaches the screen"
# A control socket answering with what an AWS error, an IMDS code or a
# config's unit name could carry: ESC sequences, a C1 CSI, a BEL.
printf '[env]\ntemplate = %s/none.tmpl\n[control]\nsocket = %s/ctl.sock\n' "$WORK" "$WORK" >"$WORK/ctl.conf"
/usr/bin/python3 - "$WORK/ctl.sock" <<'PY' &
import json, os, socket, sys
bad = "\x1b]0;pwned\x07\x1b[2J\x1b[31mFAKE OK \u009b31m"
st = {"ok": True, "exit": 0, "version": bad, "state": bad, "role": bad, "phase": "running",
      "bootstrap": {"finished": True, "ms": 1.0, "at": 1}, "env": {"revision": 1, "rendered_at": 1,
      "variables": 1, "output": bad, "format": "systemd", "stale": False},
      "health": {"status": 200, "state": bad, "failing": [bad]}, "units": [{"name": bad,
      "active_state": bad, "sub_state": bad, "result": "", "main_pid": 1, "restarts": 0}],
      "imds": {"endpoint": bad, "token_requests": 0, "get_requests": 0, "retries": 0, "errors": 0},
      "credentials": {"role": bad, "valid": True, "seconds_left": 60, "last_error": bad},
      "aws": {"calls": 0, "calls_last_render": 0, "retries": 0, "errors": 0, "tags_source": bad},
      "last_error": bad + "\nsecond line " + bad, "drain_reason": bad, "draining": True, "spot_notice": bad,
      "lifecycle": bad}
rl = {"ok": True, "exit": 0, "changed_keys": [bad], "restarted_units": [bad], "failed_units": [bad],
      "env_revision": 2, "duration_ms": 1.0}
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o600)
s.listen(4)
for _ in range(2):
    c, _ = s.accept()
    req = json.loads(c.makefile().readline())
    c.sendall((json.dumps(st if req["cmd"] == "status" else rl) + "\n").encode())
    c.close()
PY
fake=$!
wait_for 5 test -S "$WORK/ctl.sock" || fail "no fake control socket"
"$ANB_AGENT" --config "$WORK/ctl.conf" status >"$WORK/status.out" 2>&1 || fail "status: $(cat "$WORK/status.out")"
"$ANB_AGENT" --config "$WORK/ctl.conf" reload >"$WORK/reload.out" 2>&1 || fail "reload: $(cat "$WORK/reload.out")"
wait "$fake"
for f in status reload; do
	if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$WORK/$f.out"; then
		fail "$f printed a control character: $(cat -v "$WORK/$f.out")"
	fi
	assert_contains "$(cat "$WORK/$f.out")" '\x1b]0;pwned' "$f shows the text, escaped"
done
assert_contains "$(cat "$WORK/status.out")" "second line" "the last error keeps its lines"

step "help: global and per verb, wherever --help stands"
capture "$ANB_AGENT" --help
assert_eq "$rc" 0 "--help"
assert_contains "$out" "Options (before or after the verb)" "global help"
capture "$ANB_AGENT" drain --help
assert_contains "$out" "drain [--undo]" "drain's usage"
capture "$ANB_AGENT" --help status
assert_contains "$out" "status [--json]" "status's usage"
capture "$ANB_AGENT" status --version
assert_eq "$rc" 0 "--version anywhere"
assert_contains "$out" "anb-agent " "version printed"
echo OK
