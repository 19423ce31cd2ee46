#!/bin/bash
# Logs reach the journal with the right priorities (the agent writes <N>
# prefixes when journald is its stderr), one line per event, none per probe.
. "$(dirname "$0")/lib.sh"
. "$SRC/test/app-env.sh"
export ANB_AGENT_LOG=journal
start_imds '{"tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"}}'
app_setup "$WORK/root" "$IMDS_URL" user
agent_start
systemctl --user kill --signal=KILL nginx.service
for _ in $(seq 20); do curl -s -o /dev/null 127.0.0.1:8081/health; done
logged() { agent_log | grep -q "nginx.service: active/running → "; }
wait_for 5 logged || fail "no unit change in the journal: $(agent_log | tail -3)"
journalctl --no-pager -o json -u anb-agent.service >"$WORK/journal.json"
/usr/bin/python3 - "$WORK/journal.json" <<'PY' || fail "journal fields"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for e in entries:
    by.setdefault(e["MESSAGE"], e["PRIORITY"])
def prio(fragment):
    hits = [p for m, p in by.items() if fragment in m]
    assert hits, "no entry with %r in %r" % (fragment, list(by))
    return hits[0]
assert prio("bootstrap finished") == "5", prio("bootstrap finished")
assert prio("nginx.service: active/running") == "4", prio("nginx.service: active/running")
assert not [m for m in by if m.startswith("<")], "a raw <N> prefix reached the journal"
assert not [m for m in by if "GET /health" in m], "a log line per probe"
print("journal: %d entries, priorities ok" % len(entries))
PY
assert_contains "$(journalctl --no-pager -p warning -o cat -u anb-agent.service)" "nginx.service" "-p warning"
assert_not_contains "$(journalctl --no-pager -p warning -o cat -u anb-agent.service)" "bootstrap finished" "-p warning excludes notices"
echo OK
