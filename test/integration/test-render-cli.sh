#!/bin/bash
# `anb-agent render` and `check-config` end to end against the IMDS fake:
# a correct .env, one-line errors with the right exit codes, and a failed
# render never touching the old file.
. "$(dirname "$0")/lib.sh"
start_imds
write_conf "$WORK/agent.conf" </dev/null
cat >"$WORK/env.tmpl" <<'T'
# rendered by anb-agent
APP_ENV=${tag:anb:env:-dev}
AWS_DEFAULT_REGION=${identity:region}
AZ=${imds:placement/availability-zone}
INSTANCE=${identity:instanceId}
NAME=${tag:Name}
AGAIN=${tag:Name}/${identity:region}
PRICE=$$5
T

step "render writes the .env with mode 0640, owner root"
imds_ctl reset '{}' >/dev/null
out=$("$ANB_AGENT" -c "$WORK/agent.conf" render 2>&1)
assert_contains "$out" "wrote $WORK/app/.env (7 variables)" "render output"
expected="# rendered by anb-agent
APP_ENV='staging'
AWS_DEFAULT_REGION='eu-west-1'
AZ='eu-west-1b'
INSTANCE='i-0123456789abcdef0'
NAME='anb-web-1'
AGAIN='anb-web-1/eu-west-1'
PRICE='\$5'"
assert_eq "$(cat "$WORK/app/.env")" "$expected" ".env content"
assert_eq "$(stat -c %a:%U:%G "$WORK/app/.env")" "640:root:root" "mode and owner"
step "one render: 1 token PUT, 5 GETs (identity, tag list, 2 tags, 1 meta-data path)"
assert_eq "$(imds_count token_put)" 1 "token PUTs"
assert_eq "$(imds_count get)" 5 "GETs"
assert_eq "$(ls -A "$WORK/app")" ".env" "no temp file left"

step "a second render with the same values leaves the file alone"
ino=$(stat -c %i "$WORK/app/.env")
out=$("$ANB_AGENT" -c "$WORK/agent.conf" render 2>&1)
assert_contains "$out" "unchanged: $WORK/app/.env" "unchanged render"
assert_eq "$(stat -c %i "$WORK/app/.env")" "$ino" "inode kept"

step "render removes a temp file a crash left, and replaces a FIFO at the path without blocking"
printf 'HALF=' >"$WORK/app/.env.anb-agent.Xy12z9"
out=$("$ANB_AGENT" -c "$WORK/agent.conf" render 2>&1)
assert_contains "$out" "removed 1 temp file a crash left beside $WORK/app/.env" "cleanup logged"
assert_eq "$(ls -A "$WORK/app")" ".env" "stale temp removed"
cp "$WORK/app/.env" "$WORK/fifo-good.env"
rm "$WORK/app/.env"
mkfifo "$WORK/app/.env"
chown nobody "$WORK/app" "$WORK/app/.env"
capture timeout 20 "$ANB_AGENT" -c "$WORK/agent.conf" render
assert_eq "$rc" 0 "render over a FIFO (124: it blocked)"
[ -f "$WORK/app/.env" ] && [ ! -p "$WORK/app/.env" ] || fail "the FIFO is still there"
cmp -s "$WORK/app/.env" "$WORK/fifo-good.env" || fail "content after replacing the FIFO"
chown root "$WORK/app"

step "--stdout prints, warns on stderr and writes nothing"
rm "$WORK/app/.env"
out=$("$ANB_AGENT" -c "$WORK/agent.conf" render --stdout 2>"$WORK/err")
assert_eq "$out" "$expected" "stdout"
assert_contains "$(cat "$WORK/err")" "secrets included" "stdout warning"
[ ! -e "$WORK/app/.env" ] || fail "--stdout wrote the file"
"$ANB_AGENT" -c "$WORK/agent.conf" render 2>/dev/null
cp "$WORK/app/.env" "$WORK/good.env"

step "a missing value names template:line:column, exits 65, keeps the old file"
printf 'A=${tag:anb:env}\nB=${tag:nope}\n' >"$WORK/env.tmpl"
capture "$ANB_AGENT" -c "$WORK/agent.conf" render
assert_eq "$rc" 65 "exit code"
assert_eq "$out" "anb-agent: error: $WORK/env.tmpl:2:3: tag 'nope' has no value and no default" "message"
cmp -s "$WORK/app/.env" "$WORK/good.env" || fail "old .env changed"

step "a syntax error is a configuration error (78)"
printf 'A=${tag:x\n' >"$WORK/env.tmpl"
capture "$ANB_AGENT" -c "$WORK/agent.conf" check-config
assert_eq "$rc" 78 "check-config exit"
assert_eq "$out" "anb-agent: error: $WORK/env.tmpl:1:3: unterminated '\${' (missing '}')" "check-config message"

step "a bad config key names file:line and exits 78"
printf '[imds]\ntoken_ttl = 99999\n' >"$WORK/bad.conf"
capture "$ANB_AGENT" -c "$WORK/bad.conf" check-config
assert_eq "$rc" 78 "exit"
assert_eq "$out" "anb-agent: error: $WORK/bad.conf:2: token_ttl must be a whole number from 1 to 21600, not '99999'" "message"
step "check-config refuses what run would refuse: a host name or port 0 to listen on, an owner that does not exist"
for listen in localhost:8081 127.0.0.1:0; do
	printf '[health]\nlisten = %s\n' "$listen" >"$WORK/bad.conf"
	capture "$ANB_AGENT" -c "$WORK/bad.conf" check-config
	assert_eq "$rc" 78 "exit for listen = $listen"
	assert_contains "$out" "anb-agent: error: $WORK/bad.conf:2: [health] listen must be ADDR:PORT" "message for $listen"
	assert_contains "$out" "not '$listen'" "message for $listen"
done
write_conf "$WORK/owner.conf" <<<"owner = no-such-user-anb"
capture "$ANB_AGENT" -c "$WORK/owner.conf" check-config
assert_eq "$rc" 78 "exit for a missing owner"
assert_eq "$out" "anb-agent: error: $WORK/owner.conf:8: [env] owner 'no-such-user-anb' is not a user on this system" "owner message"
capture "$ANB_AGENT" -c "$WORK/owner.conf" render
assert_eq "$rc" 78 "render exit for a missing owner"
write_conf "$WORK/owner.conf" <<<"group = no-such-group-anb"
capture "$ANB_AGENT" -c "$WORK/owner.conf" check-config
assert_eq "$rc" 78 "exit for a missing group"
assert_eq "$out" "anb-agent: error: $WORK/owner.conf:8: [env] group 'no-such-group-anb' is not a group on this system" "group message"
printf 'A=${identity:region}\n' >"$WORK/env.tmpl"
out=$("$ANB_AGENT" -c "$WORK/agent.conf" check-config 2>&1)
assert_eq "$out" "" "check-config prints nothing when all is well"

step "check-config refuses a symlink on the way to the .env, warns about a directory the app user owns"
mkdir -p "$WORK/real"
ln -s "$WORK/real" "$WORK/via"
write_conf "$WORK/link.conf" </dev/null
sed -i "s#^output = .*#output = $WORK/via/.env#" "$WORK/link.conf"
capture "$ANB_AGENT" -c "$WORK/link.conf" check-config
assert_eq "$rc" 78 "exit for a symlinked directory"
assert_eq "$out" "anb-agent: error: $WORK/link.conf: [env] output $WORK/via/.env has a symlink on the way; the agent writes through none" "symlink message"
capture "$ANB_AGENT" -c "$WORK/link.conf" render
assert_eq "$rc" 78 "render exit for a symlinked directory"
[ ! -e "$WORK/real/.env" ] || fail "wrote through the symlink"
chown nobody "$WORK/app"
capture "$ANB_AGENT" -c "$WORK/agent.conf" check-config
chown root "$WORK/app"
assert_eq "$rc" 0 "exit for an app-owned directory (a warning only)"
assert_contains "$out" "anb-agent: warning: $WORK/agent.conf: [env] output $WORK/app/.env is in reach of a user other than root ($WORK/app)" "unsafe directory warning"

step "IMDS down: exit 75, message names the endpoint, old file kept"
capture env AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9 "$ANB_AGENT" -c "$WORK/agent.conf" render
assert_eq "$rc" 75 "exit"
assert_contains "$out" "IMDSv2 token request to http://127.0.0.1:9 failed" "message"
cmp -s "$WORK/app/.env" "$WORK/good.env" || fail "old .env changed"

step "IMDS disabled by AWS_EC2_METADATA_DISABLED: exit 69"
capture env AWS_EC2_METADATA_DISABLED=true "$ANB_AGENT" -c "$WORK/agent.conf" render
assert_eq "$rc" 69 "exit"
assert_contains "$out" "IMDS is disabled (AWS_EC2_METADATA_DISABLED=true)" "message"

step "status without a running daemon: exit 69, says so"
capture "$ANB_AGENT" -c "$WORK/agent.conf" status
assert_eq "$rc" 69 "exit"
assert_contains "$out" "cannot reach the agent at /run/anb-agent/control.sock" "message"
assert_contains "$out" "(is anb-agent running?)" "hint"

step "usage errors exit 64"
capture "$ANB_AGENT" frobnicate
assert_eq "$rc" 64 "unknown verb"
assert_contains "$("$ANB_AGENT" --version)" "anb-agent " "--version"
assert_contains "$("$ANB_AGENT" --help)" "render" "--help"
echo OK
