#!/bin/bash
# Runs every integration test (test/integration/test-*.sh), each inside its
# own harness (a private systemd manager, see test/harness.sh), and prints
# "N passed, N failed".  ANB_AGENT names the binary under test.
#   test/integration/run-all.sh [NAME-PATTERN]
# A test whose second line is "# slow: ..." runs only with ANB_SLOW=1 (all
# tests) or ANB_SLOW=only (just the slow ones): `make check-faults`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export ANB_SRCDIR=$root
export ANB_AGENT=${ANB_AGENT:-$root/build/anb-agent}
pattern=${1:-}
passed=0 failed=0 failures=()
logs=$(mktemp -d /tmp/anb-integration.XXXXXX)
chmod 0755 "$logs"
# Everything a test makes in a temporary directory goes under $logs, which
# is removed when every test passed: a green run leaves nothing in /tmp.
mkdir -m 0755 "$logs/tmp"
export TMPDIR=$logs/tmp

for t in "$here"/test-*.sh; do
	name=$(basename "$t" .sh)
	[ -n "$pattern" ] && [[ $name != *$pattern* ]] && continue
	slow=no
	sed -n 2p "$t" | grep -q '^# slow:' && slow=yes
	case ${ANB_SLOW:-}/$slow in
	/yes | only/no) continue ;;
	esac
	start=$(date +%s%3N)
	if ANB_HARNESS_LOG=$logs/$name timeout 600 "$root/test/harness.sh" bash "$t" >"$logs/$name.log" 2>&1; then
		passed=$((passed + 1))
		ms=$(($(date +%s%3N) - start))
		printf 'PASS %-40s %3d.%03ds\n' "$name" $((ms / 1000)) $((ms % 1000))
	else
		failed=$((failed + 1))
		failures+=("$name")
		printf 'FAIL %-40s (log: %s)\n' "$name" "$logs/$name.log"
		sed 's/^/    | /' "$logs/$name.log" | tail -40
	fi
done
echo "integration: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && rm -rf "$logs"
[ "$failed" -eq 0 ]
