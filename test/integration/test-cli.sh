#!/bin/bash
# One argument parser for every verb: global options before or after the
# verb, each verb's flags only with that verb, clear usage errors (64).
. "$(dirname "$0")/lib.sh"
printf '[env]\ntemplate = %s/none.tmpl\n' "$WORK" >"$WORK/agent.conf"

step "--config after the verb is the same as before it"
capture "$ANB_AGENT" check-config --config "$WORK/agent.conf"
assert_eq "$rc" 78 "check-config --config FILE: $out"
assert_contains "$out" "$WORK/none.tmpl" "the option reached the verb"
capture "$ANB_AGENT" --config "$WORK/agent.conf" check-config
assert_eq "$rc" 78 "--config FILE check-config: $out"
capture "$ANB_AGENT" render -c "$WORK/agent.conf" --verbose
assert_eq "$rc" 78 "render -c FILE --verbose: $out"

step "a verb's flag on another verb, an extra operand, an unknown option: 64 naming it"
capture "$ANB_AGENT" status --undo
assert_eq "$rc" 64 "status --undo"
assert_contains "$out" "status does not take --undo" "names the flag"
capture "$ANB_AGENT" drain now
assert_eq "$rc" 64 "drain now"
assert_contains "$out" "unexpected argument 'now'" "names the operand"
capture "$ANB_AGENT" render --bogus
assert_eq "$rc" 64 "render --bogus"
assert_contains "$out" "unknown option '--bogus'" "names the option"
capture "$ANB_AGENT" --config
assert_eq "$rc" 64 "--config without a value"

step "help: global and per verb, wherever --help stands"
capture "$ANB_AGENT" --help
assert_eq "$rc" 0 "--help"
assert_contains "$out" "Options (before or after the verb)" "global help"
capture "$ANB_AGENT" drain --help
assert_contains "$out" "drain [--undo]" "drain's usage"
capture "$ANB_AGENT" --help status
assert_contains "$out" "status [--json]" "status's usage"
capture "$ANB_AGENT" status --version
assert_eq "$rc" 0 "--version anywhere"
assert_contains "$out" "anb-agent " "version printed"
echo OK
