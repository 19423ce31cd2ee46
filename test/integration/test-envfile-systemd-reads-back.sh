#!/bin/bash
# The third reader: systemd's EnvironmentFile= (the real manager), given
# the agent's rendering of awkward values, must hand the process exactly
# the original values.  (sh and python-dotenv are checked in the unit tests.)
. "$(dirname "$0")/lib.sh"
start_imds
write_conf "$WORK/agent.conf" </dev/null
# Values come from tags, so nothing in the template needs escaping.
/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
values = ["plain", "", " lead and trail ", "it's", 'say "hi"', "$HOME", "${HOME}", "$$", "a\\b",
          "two\\\\slashes", "ends\\", "#hash", "a=b=c", "multi\nline\n", "tab\there", "`cmd`",
          "caf\u00e9 \u20ac", "it's $5", "it's `x`", "it's \\ \"q\" $ ` done", "'", '"', "\\", "x\\$y",
          "x'\nINJECTED=1\n'", 'y"\nINJECTED=2\n"', "z\\\nINJECTED=3"]
tags = {"v%d" % i: v for i, v in enumerate(values)}
json.dump(tags, open(work + "/values.json", "w"))
with open(work + "/env.tmpl", "w") as f:
    for k in tags:
        f.write("%s=${tag:%s}\n" % (k.upper(), k))
PY
imds_ctl state "{\"tags\": $(cat "$WORK/values.json")}" >/dev/null
"$ANB_AGENT" -c "$WORK/agent.conf" render 2>"$WORK/render.err"
step "values with no common form are warned about by key, never by value"
assert_contains "$(cat "$WORK/render.err")" "V6 has no quoting that" "warning for \${HOME}"
assert_not_contains "$(cat "$WORK/render.err")" "it's \$5" "value not logged"

systemd-run --user --wait --quiet -p EnvironmentFile="$WORK/app/.env" \
	/usr/bin/python3 -c 'import os, json; json.dump({k: v for k, v in os.environ.items() if k.startswith("V") or k.startswith("INJECTED")}, open("'"$WORK"'/seen.json", "w"))'
/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
want = {k.upper(): v for k, v in json.load(open(work + "/values.json")).items()}
seen = json.load(open(work + "/seen.json"))
bad = [(k, want[k], seen.get(k)) for k in want if seen.get(k) != want[k]]
if any(k.startswith("INJECTED") for k in seen) or any("INJECTED" == k for k in seen):
    bad.append(("INJECTED", None, "a value defined another variable"))
for k, w, s in bad:
    print("systemd read %s as %r, want %r" % (k, s, w))
sys.exit(1 if bad else 0)
PY
echo OK
