#!/bin/bash
# Fault: the filesystem holding the .env is full when a changed .env is
# written (a size-capped tmpfs over the .env's directory, in the harness's
# own mount namespace).
# Must hold: the reload fails and the error is logged (ENOSPC); the old
# .env is kept byte for byte; no temporary file is left next to it; the
# units are untouched; once there is space again, a retry succeeds.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
. "$(dirname "$0")/faults.sh"
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
dir=$(dirname "$ENV_FILE")

# Mounted before the agent starts: the agent's unit may run in a mount
# namespace of its own (the harness's mounts do not propagate into it).
step "a 1 MiB tmpfs over $dir"
mode=$(stat -c %a "$dir")
mount -t tmpfs -o size=1m,mode=$mode tmpfs "$dir"
at_exit "umount -l '$dir'"
agent_start
test -s "$ENV_FILE" || fail "no .env on the tmpfs"
cp -p "$ENV_FILE" "$WORK/env.before"
api=$(unit_prop anb-api.service MainPID)
# Fill it to the last block.
dd if=/dev/zero of="$dir/filler" bs=4k 2>/dev/null || true
echo "measured: free on the tmpfs after filling: $(df -k --output=avail "$dir" | tail -1) kB"

step "a changed tag; the reload cannot write the .env"
imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "production-with-a-longer-value"}}' >/dev/null
lines0=$(agent_log | wc -l)
capture agent_cli reload
echo "$out" | head -3
[ "$rc" -ne 0 ] || fail "reload reported success on a full disk"
err=$(agent_log | tail -n +$((lines0 + 1)))
echo "$err" | grep -i error | head -3
grep -qi "No space left on device" <<<"$err" || fail "ENOSPC not logged: $err"
cmp "$WORK/env.before" "$dir/.env" || fail "the old .env was not kept"
left=$(temp_files "$dir")
[ -z "$left" ] || fail "temporary file left: $left"
assert_eq "$(unit_prop anb-api.service MainPID)" "$api" "anb-api untouched"

step "space again: a retry succeeds"
rm "$dir/filler"
capture agent_cli reload
[ "$rc" -eq 0 ] || fail "reload with space again: $out"
grep -q "^APP_ENV='production-with-a-longer-value'$" "$dir/.env" || fail "new .env not written"
[ -z "$(temp_files "$dir")" ] || fail "temporary file left"
echo OK
