#!/bin/bash
# No core dump or same-uid inspection can read the agent's secrets: the
# unit sets LimitCORE=0 and every anb-agent process makes itself
# non-dumpable (PR_SET_DUMPABLE 0), which the kernel shows by handing
# /proc/PID/environ, mem and maps to root.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
start_imds
app_setup "$WORK/root" "$IMDS_URL" user

step "the shipped unit sets LimitCORE=0"
assert_eq "$(unit_prop anb-agent.service LimitCORE)" 0 "LimitCORE"

step "an anb-agent run by an ordinary user is not dumpable"
# A control socket that accepts and never answers keeps `status` waiting.
mkdir -m 0755 "$WORK/sock"
/usr/bin/python3 - "$WORK/sock/ctl.sock" <<'PY' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.listen(4)
conns = []
end = time.time() + 30
s.settimeout(1)
while time.time() < end:
    try:
        conns.append(s.accept()[0])
    except socket.timeout:
        pass
PY
fake=$!
at_exit "kill $fake 2>/dev/null"
wait_for 10 test -S "$WORK/sock/ctl.sock" || fail "no socket"
printf '[control]\nsocket = %s\n' "$WORK/sock/ctl.sock" >"$WORK/sock/agent.conf"
chmod 0644 "$WORK/sock/agent.conf"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$ANB_AGENT" -c "$WORK/sock/agent.conf" status \
	>/dev/null 2>&1 &
pid=$!
at_exit "kill $pid 2>/dev/null"
wait_for 5 test "$(stat -c %U "/proc/$pid/exe" 2>/dev/null)" != "" || fail "agent did not start"
sleep 0.3
[ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$ANB_AGENT")" ] || fail "not the agent: $(readlink "/proc/$pid/exe")"
assert_eq "$(stat -c %U "/proc/$pid/environ")" root "owner of /proc/PID/environ (nobody: dumpable)"
assert_eq "$(stat -c %U "/proc/$pid/mem")" root "owner of /proc/PID/mem"
echo OK
