# Sourced by every integration test.  Runs inside test/harness.sh, so a
# private systemd user manager is up and $ANB_UNIT_DIR is its unit dir.
set -euo pipefail

ANB_AGENT=${ANB_AGENT:?ANB_AGENT must name the binary under test}
SRC=${ANB_SRCDIR:?}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/anb-it.XXXXXX")
chmod 0755 "$WORK"
_cleanups=()

cleanup() {
	local rc=$? i
	# Stop the agent first so a sanitizer build reports leaks at exit.
	systemctl --user stop anb-agent.service 2>/dev/null || true
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
	# Any sanitizer or valgrind report in the agent's output fails the test.
	local f pat='ERROR: (Address|Leak)Sanitizer|runtime error:|Invalid (read|write)|definitely lost: [1-9]|are definitely lost'
	for f in "$WORK"/root/agent.log "$WORK"/*.err; do
		[ -f "$f" ] || continue
		if grep -q -E "$pat" "$f"; then
			echo "FAIL: memory error reported in $f:" >&2
			grep -A20 -E "$pat" "$f" | head -60 >&2
			rc=1
		fi
	done
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
at_exit() { _cleanups+=("$1"); }

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
step() { echo "--- $*"; }

assert_eq() { # actual expected what
	[ "$1" == "$2" ] || fail "$3: got [$1], want [$2]"
}
assert_contains() { # haystack needle what
	[[ $1 == *"$2"* ]] || fail "$3: [$1] does not contain [$2]"
}
assert_not_contains() {
	[[ $1 != *"$2"* ]] || fail "$3: [$1] contains [$2]"
}

# capture CMD...: runs CMD with stdout and stderr in $out and its exit
# status in $rc, without tripping set -e.
capture() {
	set +e
	out=$("$@" 2>&1)
	rc=$?
	set -e
}

# wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds.
wait_for() {
	local limit=$1
	shift
	local end=$(($(date +%s%3N) + limit * 1000))
	until "$@"; do
		[ "$(date +%s%3N)" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# start_imds [STATE_JSON]: starts the IMDS fake; sets IMDS_URL.
start_imds() {
	local state=${1:-}
	local args=(--port 0 --port-file "$WORK/imds.port")
	if [ -n "$state" ]; then
		printf '%s' "$state" >"$WORK/imds-state.json"
		args+=(--state "$WORK/imds-state.json")
	fi
	/usr/bin/python3 "$SRC/test/fakes/imds.py" "${args[@]}" 2>"$WORK/imds.log" &
	local pid=$!
	at_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
	wait_for 10 test -s "$WORK/imds.port" || fail "IMDS fake did not start"
	IMDS_URL=http://127.0.0.1:$(cat "$WORK/imds.port")
}

# start_aws [STATE_JSON]: starts the AWS fake (after start_imds); sets
# AWS_URL and exports AWS_ENDPOINT_URL for the agent.
start_aws() {
	local state=${1:-}
	local args=(--port 0 --port-file "$WORK/aws.port" --imds "$IMDS_URL")
	if [ -n "$state" ]; then
		printf '%s' "$state" >"$WORK/aws-state.json"
		args+=(--state "$WORK/aws-state.json")
	fi
	/usr/bin/python3 "$SRC/test/fakes/aws.py" "${args[@]}" 2>"$WORK/aws.log" &
	local pid=$!
	at_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
	wait_for 10 test -s "$WORK/aws.port" || fail "AWS fake did not start"
	AWS_URL=http://127.0.0.1:$(cat "$WORK/aws.port")
	export AWS_ENDPOINT_URL=$AWS_URL
}

aws_ctl() { # aws_ctl PATH [JSON]
	if [ $# -gt 1 ]; then
		curl -sf -X POST --data "$2" "$AWS_URL/_fake/$1"
	else
		curl -sf "$AWS_URL/_fake/$1"
	fi
}

aws_stat() { # aws_stat PYTHON-EXPRESSION-ON-s
	aws_ctl stats | /usr/bin/python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"
}

imds_ctl() { # imds_ctl PATH [JSON]
	if [ $# -gt 1 ]; then
		curl -sf -X POST --data "$2" "$IMDS_URL/_fake/$1"
	else
		curl -sf "$IMDS_URL/_fake/$1"
	fi
}

imds_count() { # imds_count token_put|get|unauthorized
	imds_ctl stats | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}

# write_conf FILE: an agent.conf for $WORK with the fake IMDS; extra
# sections come from stdin.
write_conf() {
	{
		cat <<CONF
[imds]
endpoint = $IMDS_URL
attempts = 2
timeout_ms = 2000
[env]
template = $WORK/env.tmpl
output = $WORK/app/.env
CONF
		cat
	} >"$1"
	mkdir -p "$WORK/app"
}
