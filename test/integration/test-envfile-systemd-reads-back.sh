#!/bin/bash
# The third reader: systemd's EnvironmentFile= (the real manager), given
# the agent's rendering of awkward values, must hand the process exactly
# the original values -- in the default format, and in format = dotenv,
# whose forms serve python-dotenv but must never let systemd read past a
# value's closing quote into variables of its own.  (sh and python-dotenv
# are checked in the unit tests.)
. "$(dirname "$0")/lib.sh"
start_imds
# Values come from tags, so nothing in the template needs escaping.
/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
values = ["plain", "", " lead and trail ", "it's", 'say "hi"', "$HOME", "${HOME}", "$$", "a\\b",
          "two\\\\slashes", "ends\\", "#hash", "a=b=c", "multi\nline\n", "tab\there", "`cmd`",
          "caf\u00e9 \u20ac", "it's $5", "it's `x`", "it's \\ \"q\" $ ` done", "'", '"', "\\", "x\\$y",
          "x'\nINJECTED=1\n'", 'y"\nINJECTED=2\n"', "z\\\nINJECTED=3", "$'\nINJECTED=4\n#", "it's $\\ x"]
tags = {"v%d" % i: v for i, v in enumerate(values)}
json.dump(tags, open(work + "/values.json", "w"))
with open(work + "/env.tmpl", "w") as f:
    for k in tags:
        f.write("%s=${tag:%s}\n" % (k.upper(), k))
# The same without the values dotenv cannot hold (a trailing backslash).
with open(work + "/env-dotenv.tmpl", "w") as f:
    for k, v in tags.items():
        if not v.endswith("\\"):
            f.write("%s=${tag:%s}\n" % (k.upper(), k))
PY
imds_ctl state "{\"tags\": $(cat "$WORK/values.json")}" >/dev/null

# systemd reads TEMPLATE's rendering and hands the process exactly its values.
systemd_reads_back() { # TEMPLATE
	rm -f "$WORK/seen.json"
	systemd-run --user --wait --quiet -p EnvironmentFile="$WORK/app/.env" \
		/usr/bin/python3 -c 'import os, json; json.dump({k: v for k, v in os.environ.items() if k.startswith("V") or k.startswith("INJECTED")}, open("'"$WORK"'/seen.json", "w"))'
	/usr/bin/python3 - "$WORK" "$1" <<'PY'
import json, re, sys
work, tmpl = sys.argv[1], sys.argv[2]
keys = [re.match(r"(\w+)=", l).group(1) for l in open(tmpl)]
values = json.load(open(work + "/values.json"))
want = {k: values[k.lower()] for k in keys}
seen = json.load(open(work + "/seen.json"))
bad = [(k, want[k], seen.get(k)) for k in want if seen.get(k) != want[k]]
bad += [(k, None, seen[k]) for k in seen if k not in want]
for k, w, s in bad:
    print("systemd read %s as %r, want %r" % (k, s, w))
sys.exit(1 if bad else 0)
PY
}

step "format = systemd: every value exactly; those with no common form warned about by key, never by value"
write_conf "$WORK/agent.conf" </dev/null
"$ANB_AGENT" -c "$WORK/agent.conf" render 2>"$WORK/render.err"
assert_contains "$(cat "$WORK/render.err")" "V6 has no quoting that" "warning for \${HOME}"
assert_not_contains "$(cat "$WORK/render.err")" "it's \$5" "value not logged"
systemd_reads_back "$WORK/env.tmpl" || fail "systemd misread the systemd format"

step "format = dotenv: a value ending in a backslash is refused, naming its line; the .env is kept"
cp "$WORK/app/.env" "$WORK/before.env"
write_conf "$WORK/agent.conf" <<<$'format = dotenv'
rc=0
"$ANB_AGENT" -c "$WORK/agent.conf" render 2>"$WORK/render.err" || rc=$?
assert_eq "$rc" 65 "exit EX_DATAERR: $(cat "$WORK/render.err")"
assert_contains "$(cat "$WORK/render.err")" "env.tmpl:11:1: the value of V10 ends with a backslash" "names the line"
cmp -s "$WORK/app/.env" "$WORK/before.env" || fail "the .env changed"

step "format = dotenv: systemd reads every other value exactly, and no variable of its own"
sed -i "s#^template = .*#template = $WORK/env-dotenv.tmpl#" "$WORK/agent.conf"
"$ANB_AGENT" -c "$WORK/agent.conf" render 2>"$WORK/render.err" || fail "render: $(cat "$WORK/render.err")"
systemd_reads_back "$WORK/env-dotenv.tmpl" || fail "systemd misread the dotenv format"
echo OK
