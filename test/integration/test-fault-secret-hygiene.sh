#!/bin/bash
# Secret hygiene: everything the agent exposes, collected, holds none of
# the secret values, IMDS tokens or role credentials the fakes served:
# its log (file and journal), `status` and `status --json`, /health,
# /metrics, the argv and environment of the agent; the argv and
# environment of every process of the units it manages (those get the
# .env's values by design, EnvironmentFile=, so there only the tokens and
# credentials are looked for); every file it writes besides the .env
# (its RuntimeDirectory, the control socket's directory, the .env's
# directory); and a forced core dump: LimitCORE, the dumpable flag
# (PR_SET_DUMPABLE 0 makes /proc/PID/* root-owned and stops a core),
# then SIGSEGV and a look for a core file.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
start_aws '{"secrets": {"anb/db": {"password": "db-Pa55-9f3kq"}, "anb/api": "api-K3y-7zq1x"}, "params": {"/anb/feature": {"Value": "flag-V4l-u8w2"}}}'
app_setup "$WORK/root" "$IMDS_URL" user
cat >>"$ROOT/etc/anb-agent/env.tmpl" <<'T'
DB_PASSWORD=${secret:anb/db#password}
API_KEY=${secret:anb/api}
FEATURE=${param:/anb/feature}
T
agent_start
grep -qx "DB_PASSWORD='db-Pa55-9f3kq'" "$ENV_FILE" || fail "secret not rendered"
# A rotation and a failed render, so error paths log too.
aws_ctl state '{"secrets": {"anb/db": {"password": "db-Pa55-second"}, "anb/api": "api-K3y-7zq1x"}}' >/dev/null
agent_cli reload >/dev/null
aws_ctl state '{"deny": ["anb/api"]}' >/dev/null
agent_cli reload >/dev/null 2>&1 || true
aws_ctl state '{"deny": []}' >/dev/null
# expire-tokens forgets the tokens: note them first.
imds_ctl tokens | /usr/bin/python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))' >"$WORK/tokens-before.txt"
imds_ctl expire-tokens >/dev/null
agent_cli reload >/dev/null

printf '%s\n' db-Pa55-9f3kq db-Pa55-second api-K3y-7zq1x flag-V4l-u8w2 >"$WORK/values.txt"
{
	cat "$WORK/tokens-before.txt"
	imds_ctl tokens | /usr/bin/python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))'
	imds_ctl credentials-issued | /usr/bin/python3 -c '
import json, sys
for c in json.load(sys.stdin):
    for k in ("AccessKeyId", "SecretAccessKey", "Token"):
        print(c[k])'
} >"$WORK/creds.txt"
cat "$WORK/values.txt" "$WORK/creds.txt" >"$WORK/all.txt"
echo "measured: looking for $(wc -l <"$WORK/values.txt") secret values and $(wc -l <"$WORK/creds.txt") tokens/credentials"
[ "$(wc -l <"$WORK/creds.txt")" -ge 4 ] || fail "the fakes served no tokens or credentials?"

leaks=()
check() { # WHAT FILE PATTERNS
	if grep -aqFf "$3" "$2"; then
		leaks+=("$1: $(grep -aoFf "$3" "$2" | head -1 | cut -c1-12)…")
	fi
	echo "  checked $1 ($(wc -c <"$2") bytes)"
}
pid=$(agent_pid)
S=$WORK/surface
mkdir -p "$S"
agent_log >"$S/log"
journalctl --no-pager -o cat -u anb-agent.service >"$S/journal" 2>/dev/null || true
agent_cli status >"$S/status"
agent_cli status --json >"$S/status.json"
curl -s 127.0.0.1:8081/health >"$S/health"
curl -s 127.0.0.1:8081/metrics >"$S/metrics"
systemctl --user status anb-agent.service >"$S/systemctl-status" 2>&1 || true
tr '\0' '\n' <"/proc/$pid/cmdline" >"$S/agent-argv"
tr '\0' '\n' <"/proc/$pid/environ" >"$S/agent-environ"
for f in log journal status status.json health metrics systemctl-status agent-argv agent-environ; do
	check "$f" "$S/$f" "$WORK/all.txt"
done

step "processes of the managed units: argv and environment"
n=0
for u in anb-api nginx redis-server; do
	cg=$(unit_prop $u.service ControlGroup)
	for p in $(cat /sys/fs/cgroup/unified"$cg"/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/systemd"$cg"/cgroup.procs); do
		tr '\0' '\n' <"/proc/$p/cmdline" >"$S/argv.$p" 2>/dev/null || continue
		tr '\0' '\n' <"/proc/$p/environ" >"$S/environ.$p" 2>/dev/null || continue
		check "$u pid $p argv" "$S/argv.$p" "$WORK/all.txt" >/dev/null
		check "$u pid $p environ" "$S/environ.$p" "$WORK/creds.txt" >/dev/null
		n=$((n + 1))
	done
done
echo "measured: $n unit processes checked"
[ "$n" -ge 3 ] || fail "found only $n unit processes"

step "files the agent writes, besides the .env"
files=$( {
	find "$ROOT/run" "$XDG_RUNTIME_DIR/anb-agent" -type f 2>/dev/null
	find "$(dirname "$ENV_FILE")" "$ROOT/srv/anb" -maxdepth 1 -type f ! -name .env
	find "$ROOT/etc/anb-agent" -type f ! -name agent.conf ! -name env.tmpl
} | sort -u)
for f in $files; do check "file $f" "$f" "$WORK/all.txt" >/dev/null; done
echo "measured: $(echo "$files" | grep -c . || true) files checked"
[ "$(stat -c %a "$ENV_FILE")" = 640 ] || fail ".env mode $(stat -c %a "$ENV_FILE")"

# The SIGSEGV below is deliberate: under a sanitizer build the agent
# reports it in its log, which the harness would take for a memory error.
# What came before the crash is checked as usual; the crash report is kept
# aside.
cp "$ROOT/agent.log" "$WORK/agent.log.before-crash"
step "a core dump attempt"
limit=$(unit_prop anb-agent.service LimitCORE)
filter=$(cat "/proc/$pid/coredump_filter")
owner=$(stat -c %U:%G "/proc/$pid/environ")
echo "measured: LimitCORE=$limit coredump_filter=$filter /proc/PID owner=$owner core_pattern=$(cat /proc/sys/kernel/core_pattern)"
cwd=$(readlink "/proc/$pid/cwd")
core_missing=()
[ "$limit" = 0 ] || core_missing+=("LimitCORE=$limit, want 0")
# /proc/PID of a process that set PR_SET_DUMPABLE 0 is owned by root:root
# even for a non-root process; the agent runs as root here, so only the
# core file tells: none may appear.
: >"$WORK/core-marker"
kill -SEGV "$pid"
gone() { [ "$(unit_prop anb-agent.service MainPID)" != "$pid" ]; }
wait_for 15 gone || fail "the agent survived SIGSEGV"
sleep 1
cores=$(find "$cwd" "$WORK" "$ROOT" /tmp -maxdepth 2 -name 'core*' -newer "$WORK/core-marker" -type f 2>/dev/null || true)
for c in $cores; do
	check "core file $c" "$c" "$WORK/all.txt"
	core_missing+=("a core file was written: $c")
done
echo "measured: core files after SIGSEGV: $(echo "$cores" | grep -c . || true)"
# The restarted agent (Restart=on-failure) must not have logged secrets either.
healthy() { curl -s 127.0.0.1:8081/health | grep -q '"status":"healthy"'; }
wait_for 30 healthy || true
agent_log >"$S/log2"
check "log after the crash" "$S/log2" "$WORK/all.txt"
# The crash report (sanitizer builds) goes aside; the harness checks the rest.
mv "$ROOT/agent.log" "$WORK/agent.log.crash"
cp "$WORK/agent.log.before-crash" "$ROOT/agent.log"

[ ${#leaks[@]} -eq 0 ] || fail "LEAKED: $(printf '%s; ' "${leaks[@]}")"
[ ${#core_missing[@]} -eq 0 ] || fail "MISSING BEHAVIOUR (no core dumps): $(printf '%s; ' "${core_missing[@]}")"
echo OK
