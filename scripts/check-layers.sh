#!/bin/bash
# agent-lib's layer rule, checked by `make check`:
#
#   rank 0  basic/    util, log, clock, backoff, lists: no I/O of their own
#   rank 1  env/      config, template, .env quoting and writing (pure logic + files)
#   rank 1  loop/     libuv glue: curl multi (http), sd-bus on the loop (busloop)
#   rank 2  aws/      IMDSv2, role credentials, signed AWS calls
#   rank 2  systemd/  the managed units through sd-bus
#   rank 2  server/   /health, the control socket, HTTP parsing
#   rank 3  render/   resolving a template from every source and writing the .env
#
# A file may include headers from its own folder and from folders of a
# strictly lower rank, never from one of the same or a higher rank, and
# never from daemon/.  daemon/ may include anything.
set -u
cd "$(dirname "$0")/../agent-lib" || exit 2
declare -A rank=([basic]=0 [env]=1 [loop]=1 [aws]=2 [systemd]=2 [server]=2 [render]=3)
bad=0
for f in */*.[ch]; do
	layer=${f%%/*}
	if [ -z "${rank[$layer]+x}" ]; then
		echo "agent-lib/$f: folder '$layer' has no rank in scripts/check-layers.sh" >&2
		bad=1
		continue
	fi
	while IFS=: read -r line inc; do
		inc=${inc#*\"}
		inc=${inc%\"*}
		target=${inc%%/*}
		if [ "$target" = "$inc" ]; then
			echo "agent-lib/$f:$line: include \"$inc\" names no layer folder" >&2
			bad=1
		elif [ "$target" = "$layer" ]; then
			continue
		elif [ -z "${rank[$target]+x}" ]; then
			echo "agent-lib/$f:$line: includes \"$inc\", outside agent-lib's layers" >&2
			bad=1
		elif [ "${rank[$target]}" -ge "${rank[$layer]}" ]; then
			echo "agent-lib/$f:$line: $layer (rank ${rank[$layer]}) includes $inc (rank ${rank[$target]}): a lower layer never includes a higher or sibling one" >&2
			bad=1
		fi
	done < <(grep -n '^#include "' "$f")
done
[ $bad -eq 0 ] && echo "layers: agent-lib's includes follow basic < env, loop < aws, systemd, server < render"
exit $bad
