#!/bin/bash
# Outside text with newlines, CR and ESC must not forge journal entries (or
# priorities) when the agent logs it.  The agent runs as a unit whose
# stderr is journald (JOURNAL_STREAM set, so it writes <N> prefixes), and
# logs an unknown verb -- the stand-in here for any tag, IMDS or AWS text,
# all of which go through the same log_msg().
. "$(dirname "$0")/lib.sh"
# <3> (error), not <0>: an emergency-level forgery on the old code would
# reach every terminal through journald's ForwardToWall=.
poison=$(printf 'web\n<3>FORGED by outside text\nMAINPID=1\r\033[2J')
# Entries are found by the stream's identifier (from systemd's stream
# header), not by unit: journald attributes a unit from the sender's
# cgroup, which it can miss for a process that exits this fast.
systemd-run --user --quiet --wait --unit=anb-inject.service -p StandardError=journal \
	-p SyslogIdentifier=anb-inject "$ANB_AGENT" "$poison" || true
logged() { journalctl --no-pager -o cat -t anb-inject 2>/dev/null | grep -q "FORGED"; }
wait_for 10 logged || fail "the text was never logged: $(journalctl --no-pager | tail -5)"
journalctl --no-pager -o json -t anb-inject >"$WORK/journal.json"
/usr/bin/python3 - "$WORK/journal.json" <<'PY' || fail "outside text forged a journal entry"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def text(e):
    m = e.get("MESSAGE", "")
    return bytes(m).decode("utf-8", "replace") if isinstance(m, list) else m
hits = [e for e in entries if "FORGED" in text(e)]
assert hits, "no entry mentions the text"
for e in hits:
    m = text(e)
    assert not m.startswith("FORGED") and not m.startswith("<"), "forged entry: %r" % m
    assert e.get("PRIORITY") == "3", "priority %r" % e.get("PRIORITY")
    assert "web\\n<3>FORGED by outside text\\nMAINPID=1\\r\\x1b[2J" in m, "not escaped: %r" % m
    assert "\x1b" not in m and "\n" not in m and "\r" not in m, "raw control characters: %r" % m
assert not [e for e in entries if text(e).startswith("MAINPID=")], "a MAINPID= line of its own"
print("journal: %d entries mention the text, each escaped on one line at priority 3" % len(hits))
PY
echo OK
