#!/bin/bash
# make check: the shipped units' exposure, as systemd-analyze security
# scores it offline (0 = locked down, 10 = exposed), must stay at or below
# what issue 12 set: the app's units run the code that handles uploaded
# videos.  Prints each score; fails above a limit.
set -u
cd "$(dirname "$0")/.." || exit 2
command -v systemd-analyze >/dev/null || { echo "check-hardening: systemd-analyze missing" >&2; exit 69; }
if ! systemd-analyze --help 2>/dev/null | grep -q -- --offline; then
	# systemd < 250 (Ubuntu 22.04) cannot score a unit file that is not loaded.
	echo "hardening: skipped, this systemd-analyze has no --offline (systemd >= 250 needed)"
	exit 0
fi
bad=0
while read -r unit limit; do
	score=$(systemd-analyze security --offline=yes "units/$unit" 2>/dev/null |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -z "$score" ]; then
		echo "check-hardening: cannot score units/$unit" >&2
		bad=1
	elif awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s > l) }'; then
		echo "check-hardening: units/$unit scores $score, above $limit" >&2
		bad=1
	else
		printf 'hardening: %-20s %s (limit %s)\n' "$unit" "$score" "$limit"
	fi
done <<'LIMITS'
anb-agent.service 2.0
anb-api.service 3.5
anb-worker.service 3.5
LIMITS
exit $bad
