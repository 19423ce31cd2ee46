#!/bin/bash
# make bench: 100 instances booting at once.  100 `anb-agent render`
# processes (each its own instance: the IMDS fake hands every token its own
# identity) against an AWS fake that throttles like AWS -- SSM
# GetParameters at its standard 40 TPS, Secrets Manager GetSecretValue at
# its documented 10,000 TPS -- answering ThrottlingException.  Prints how
# many rendered, how many gave up, the calls made against the minimum and
# the time until all have rendered.  Asserts nothing.
#   scripts/bench-scaleout.sh /path/to/anb-agent    BENCH_INSTANCES=100
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
agent=${1:-$src/build/anb-agent}
n=${BENCH_INSTANCES:-100}
if [ -z "${ANB_HARNESS_INNER:-}" ]; then
	exec "$src/test/harness.sh" "$0" "$agent"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/anb-scaleout.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

printf '{"identity_per_token": true, "credentials_ttl": 3600}' >"$work/imds-state.json"
/usr/bin/python3 "$src/test/fakes/imds.py" --port-file "$work/imds.port" --state "$work/imds-state.json" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/imds.port" ] && break; sleep 0.05; done
imds=http://127.0.0.1:$(cat "$work/imds.port")
cat >"$work/aws-state.json" <<JSON
{"secrets": {"anb/db": {"username": "anb", "password": "pw"}},
 "params": {"/anb/feature": {"Value": "on"}, "/anb/mode": {"Value": "fast"}},
 "rate_limits": {"AmazonSSM.GetParameters": 40, "secretsmanager.GetSecretValue": 10000}}
JSON
/usr/bin/python3 "$src/test/fakes/aws.py" --port-file "$work/aws.port" --imds "$imds" --state "$work/aws-state.json" \
	2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/aws.port" ] && break; sleep 0.05; done
export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$work/aws.port")

printf 'REGION=${identity:region}\nID=${identity:instanceId}\nDB_USER=${secret:anb/db#username}\nDB_PASSWORD=${secret:anb/db#password}\nFEATURE=${param:/anb/feature}\nMODE=${param:/anb/mode}\n' \
	>"$work/env.tmpl"
for i in $(seq "$n"); do
	mkdir -p "$work/i$i"
	printf '[imds]\nendpoint = %s\n[env]\ntemplate = %s\noutput = %s\n' "$imds" "$work/env.tmpl" "$work/i$i/.env" \
		>"$work/i$i/agent.conf"
done

t0=$(date +%s%3N)
for i in $(seq "$n"); do
	( "$agent" --config "$work/i$i/agent.conf" render 2>"$work/i$i/err"; echo $? >"$work/i$i/rc"
	  date +%s%3N >"$work/i$i/done" ) &
done
wait_all() { for i in $(seq "$n"); do while [ ! -s "$work/i$i/done" ]; do sleep 0.05; done; done; }
timeout 300 bash -c "$(declare -f wait_all); n=$n work=$work wait_all" || true
ok=0 failed=0 last=0
for i in $(seq "$n"); do
	if [ "$(cat "$work/i$i/rc" 2>/dev/null)" = 0 ] && grep -q "^ID='i-" "$work/i$i/.env"; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
	d=$(cat "$work/i$i/done" 2>/dev/null || echo 0)
	[ "$d" -gt "$last" ] && last=$d
done
ids=$(cat "$work"/i*/.env 2>/dev/null | grep -c "^ID=" || true)
uniq_ids=$(cat "$work"/i*/.env 2>/dev/null | grep "^ID=" | sort -u | wc -l)
stats=$(curl -s "$AWS_ENDPOINT_URL/_fake/stats")
read -r calls throttled <<<"$(/usr/bin/python3 -c '
import json, sys
s = json.loads(sys.argv[1])
print(sum(s["calls"].values()), s.get("throttled", 0))' "$stats")"
minimum=$((n * 2)) # one GetSecretValue and one GetParameters batch per instance
echo
echo "scale-out: $n instances rendering at once against AWS quotas (SSM GetParameters 40 TPS)"
printf '  rendered %d, gave up %d (%d distinct instance ids)\n' "$ok" "$failed" "$uniq_ids"
printf '  AWS calls %d for a minimum of %d: %s x  (%d throttled)\n' "$calls" "$minimum" \
	"$(awk -v a="$calls" -v b="$minimum" 'BEGIN { printf "%.2f", a / b }')" "$throttled"
printf '  all rendered after %d ms (SSM alone needs >= %d ms at 40 TPS beyond its 40-call burst)\n' $((last - t0)) \
	$(( (n > 40 ? n - 40 : 0) * 1000 / 40 ))
[ "$failed" -eq 0 ] || { echo "  first failure:"; for i in $(seq "$n"); do [ "$(cat "$work/i$i/rc")" = 0 ] || { tail -2 "$work/i$i/err"; break; }; done; }
