#!/bin/bash
# Runs a command inside the running `make demo`'s namespace, next to its
# systemd manager, e.g.: scripts/demo-exec.sh systemctl --user status anb-agent
set -euo pipefail
pid=$(cat /tmp/anb-demo/demo.pid 2>/dev/null) || { echo "demo-exec: no demo running" >&2; exit 69; }
exec nsenter --target "$pid" --mount -- env XDG_RUNTIME_DIR=/run/user/0 \
	DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus SYSTEMD_PAGER= "$@"
