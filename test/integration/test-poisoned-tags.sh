#!/bin/bash
# Values from outside (tags, IMDS, AWS error text) never steer the agent:
# a role tag carrying newlines and notify assignments is refused by name,
# reaches neither STATUS= nor the journal as lines of their own, and the
# agent's MainPID and readiness are its own.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
export ANB_AGENT_LOG=journal
evil='web\nMAINPID=1\nREADY=1\nSTATUS=pwned\u001b[31m'
start_imds "{\"tags\": {\"Name\": \"anb-web-1\", \"anb:role\": \"$evil\", \"anb:env\": \"staging\nX=1\"}}"
app_setup "$WORK/root" "$IMDS_URL" user
systemctl --user start --no-block anb-agent.service
refused() { agent_log | grep -q "tag 'anb:role': the role is not a plain name"; }
wait_for 15 refused || fail "role tag not refused: $(agent_log | tail -5)"
status=$(unit_prop anb-agent.service StatusText)
echo "StatusText: $status"
assert_contains "$status" "waiting to render the .env: tag 'anb:role': the role is not a plain name" "STATUS= names the problem"
assert_not_contains "$status" "pwned" "STATUS= not forged"
assert_eq "$(unit_prop anb-agent.service ActiveState)" activating "not READY on a forged READY=1"
[ "$(unit_prop anb-agent.service MainPID)" != 1 ] || fail "MainPID forged"
journalctl --no-pager -o cat -u anb-agent.service >"$WORK/journal.txt"
if grep -E '^(MAINPID|READY|STATUS)=' "$WORK/journal.txt"; then fail "a forged line in the journal"; fi
if grep -q $'\e' "$WORK/journal.txt"; then fail "a raw escape sequence reached the journal"; fi
assert_eq "$(unit_prop anb-api.service ActiveState)" inactive "no units started for a refused role"

step "the tag fixed: the agent renders and starts"
imds_ctl state '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging\nX=1"}}' >/dev/null
ready() { [ "$(unit_prop anb-agent.service ActiveState)" = active ]; }
wait_for 40 ready || fail "not ready after the fix: $(agent_log | tail -5)"
# A newline in a value stays inside its quotes in the .env.
grep -q '^X=1' "$ROOT/srv/anb/.env" 2>/dev/null && fail "a tag value defined another variable"
echo OK
