#!/bin/bash
# Generates user-manager variants of the project's units (and of Debian's
# nginx and redis-server units with the project's drop-ins), so tests and
# the demo run the very files that ship, under `systemd --user`.
#
#   scripts/user-units.sh ROOT AGENT OUT_DIR
#
# ROOT is where /etc/anb-agent, /srv/anb, /var/lib/anb-agent, /etc/nginx,
# /etc/redis and /run are relocated; AGENT is the anb-agent binary.  What a user manager cannot
# do is dropped: User=/Group= (everything runs as the manager's user) and
# the sandboxing directives that need privileges a user manager lacks.
# Everything else -- Type=, ExecStart=, EnvironmentFile=, KillMode=,
# ordering -- is kept as written.
set -euo pipefail
root=$1 agent=$2 out=$3
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"

drop='^(User|Group|DynamicUser|SupplementaryGroups|PrivateUsers|ProtectSystem|ProtectHome|PrivateTmp|'
drop+='PrivateDevices|ProtectKernel[A-Za-z]*|ProtectControlGroups|ProtectClock|ProtectHostname|ProtectProc|'
drop+='RestrictNamespaces|RestrictRealtime|RestrictSUIDSGID|RestrictAddressFamilies|LockPersonality|'
drop+='MemoryDenyWriteExecute|SystemCallArchitectures|SystemCallFilter|CapabilityBoundingSet|'
drop+='AmbientCapabilities|NoNewPrivileges|ReadWritePaths|ReadWriteDirectories|ReadOnlyPaths|'
drop+='InaccessiblePaths|NoExecPaths|ExecPaths|RemoveIPC|UMask|PIDFile|Alias|StateDirectory|StateDirectoryMode)='

convert() { # convert SRC DST
	sed -E \
		-e "/$drop/d" \
		-e "s#/usr/sbin/anb-agent#$agent#g" \
		-e "s#/etc/anb-agent#$root/etc/anb-agent#g" \
		-e "s#/srv/anb#$root/srv/anb#g" \
		-e "s#/var/lib/anb-agent#$root/var/lib/anb-agent#g" \
		-e "s#/usr/sbin/nginx #/usr/sbin/nginx -c $root/etc/nginx/nginx.conf #g" \
		-e "s#--pidfile /run/nginx.pid#--pidfile $root/run/nginx.pid#g" \
		-e "s#/etc/redis/redis.conf#$root/etc/redis/redis.conf#g" \
		-e 's#^WantedBy=multi-user.target#WantedBy=default.target#' \
		"$1" >"$2"
}

for u in "$src"/units/*.service "$src"/units/*.socket /lib/systemd/system/nginx.service /lib/systemd/system/redis-server.service; do
	convert "$u" "$out/$(basename "$u")"
done
for d in "$src"/units/*.service.d; do
	mkdir -p "$out/$(basename "$d")"
	for f in "$d"/*.conf; do convert "$f" "$out/$(basename "$d")/$(basename "$f")"; done
done
