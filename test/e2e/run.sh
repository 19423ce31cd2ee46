#!/bin/bash
# make check-e2e: an EC2 instance in a box.  A bookworm VM (test/e2e/
# build-image.sh) boots under qemu (TCG) with root on NVMe like EBS and
# SMBIOS saying "Amazon EC2"; cloud-init's EC2 datasource reaches the IMDS
# fake on the host at the real 169.254.169.254 (slirp guestfwd) and runs
# scripts/user-data.sh from it, which installs the packages of `make deb`
# and starts anb-agent under PID-1 systemd with the real app.  A prober on
# the host sees /health through hostfwd, like the ALB.  Then the fleet
# lifecycle, each step labelled PASS/FAIL/SKIP:
#   launch hook CONTINUE; user-data again (idempotent); package upgrade;
#   spot notice → 503 within 2 s; Terminated → units stopped, then
#   terminate hook CONTINUE; purge; user-data once more (reinstall, READY);
#   poweroff → 503 for the drain grace before nginx stops.
# One boot for all of it: under TCG a boot to READY is the slow part.
# Lifecycle steps need the agent's [lifecycle]/[drain] keys: when the agent
# under test does not know them, those steps SKIP.
#   test/e2e/run.sh            (E2E_KEEP=1 keeps build/e2e/run for a look)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
e2e=$src/build/e2e
run=$e2e/run
py=/usr/bin/python3
t_all=$(date +%s)
passed=0 failed=0 skipped=0
step() { echo "=== $*"; }
pass() { echo "PASS $*"; passed=$((passed + 1)); }
failstep() { echo "FAIL $*"; failed=$((failed + 1)); }
skip() { echo "SKIP $*"; skipped=$((skipped + 1)); }
die() {
	echo "e2e: FATAL: $*" >&2
	echo "e2e: console: $run/console.log (last lines below)" >&2
	tail -40 "$run/console.log" 2>/dev/null | sed 's/^/    | /' >&2 || true
	echo "e2e: 0 passed, 1 failed"
	exit 1
}
ms() { date +%s%3N; }

if [ "$(id -u)" -ne 0 ]; then
	echo "e2e: needs root (debootstrap, mkfs -d)" >&2
	exit 77
fi
"$src/test/e2e/install-deps.sh"

step "packages (make deb) and image"
t=$(ms)
make -s --no-print-directory -C "$src" deb >/dev/null
agent_deb=$(ls "$src"/build/deb/anb-agent_*_amd64.deb)
app_deb=$(ls "$src"/build/deb/anb-sample-app_*_all.deb)
echo "e2e: make deb: $(($(ms) - t)) ms"
t=$(ms)
image=$(nice "$src/test/e2e/build-image.sh" "$e2e" | tail -1)
echo "e2e: image: $(($(ms) - t)) ms ($image)"

rm -rf "$run"
mkdir -p "$run/debs"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${E2E_KEEP:-}" ] || rm -rf "$run"
}
trap cleanup EXIT
freeport() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# An upgrade candidate: the same agent repackaged at a higher version.
ver=$(dpkg-deb -f "$agent_deb" Version)
dpkg-deb -R "$agent_deb" "$run/up"
sed -i "s/^Version: .*/Version: $ver+e2e1/" "$run/up/DEBIAN/control"
dpkg-deb --root-owner-group -b "$run/up" "$run/debs/anb-agent_${ver}+e2e1_amd64.deb" >/dev/null
rm -rf "$run/up"
cp "$agent_deb" "$app_deb" "$run/debs/"

# Does the agent under test know the lifecycle keys?
printf '[env]\ntemplate = %s\n[lifecycle]\nlaunch_hook = anb-launch\nterminate_hook = anb-terminate\n[drain]\ngrace = 10\n' \
	"$src/conf/env.tmpl" >"$run/probe.conf"
lifecycle=no
if "$src/build/anb-agent" --config "$run/probe.conf" check-config >/dev/null 2>&1; then lifecycle=yes; fi
echo "e2e: the agent knows [lifecycle] and [drain]: $lifecycle"

# The user-data: scripts/user-data.sh with its settings pointed at the box.
# 169.254.169.253:8001 serves the packages (like S3), .252:8002 is the AWS
# fake (slirp names a guestfwd by its port: each needs its own).  Each
# guestfwd runs socat per guest connection: a "-tcp:" chardev is one host
# connection for all guest connections, and hangs once the server closes it.
grace=10
sed -e "s#^PACKAGES=.*#PACKAGES=\"http://169.254.169.253:8001/$(basename "$agent_deb") http://169.254.169.253:8001/$(basename "$app_deb")\"#" \
	-e 's#^READY_TIMEOUT=.*#READY_TIMEOUT=240#' \
	-e 's#^AWS_ENDPOINT_URL=.*#AWS_ENDPOINT_URL="http://169.254.169.252:8002"#' \
	"$src/scripts/user-data.sh" >"$run/user-data"
if [ $lifecycle = yes ]; then
	sed -i -e 's#^LAUNCH_HOOK=.*#LAUNCH_HOOK="anb-launch"#' -e 's#^TERMINATE_HOOK=.*#TERMINATE_HOOK="anb-terminate"#' \
		-e "s#^DRAIN_GRACE=.*#DRAIN_GRACE=\"$grace\"#" "$run/user-data"
fi

iid=i-0e2e0000000000001
cat >"$run/imds-state.json" <<JSON
{"tags": {"Name": "anb-e2e", "anb:role": "web", "anb:env": "e2e", "aws:autoscaling:groupName": "anb-web-asg"},
 "target_lifecycle_state": "InService",
 "identity": {"instanceId": "$iid"},
 "meta-data": {"instance-id": "$iid", "local-hostname": "ip-10-0-1-23.eu-west-1.compute.internal"}}
JSON

start_fakes() {
	imds_port=$(freeport) aws_port=$(freeport) debs_port=$(freeport)
	rm -f "$run"/*.port
	$py "$src/test/fakes/imds.py" --port "$imds_port" --port-file "$run/imds.port" --state "$run/imds-state.json" \
		--user-data "$run/user-data" 2>>"$run/imds.log" &
	pids+=($!)
	$py "$src/test/fakes/aws.py" --port "$aws_port" --port-file "$run/aws.port" \
		--imds "http://127.0.0.1:$imds_port" 2>>"$run/aws.log" &
	pids+=($!)
	$py -m http.server --bind 127.0.0.1 --directory "$run/debs" "$debs_port" >>"$run/debs.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do [ -s "$run/imds.port" ] && [ -s "$run/aws.port" ] && break; sleep 0.1; done
	[ -s "$run/aws.port" ] || die "fakes did not start"
	imds=http://127.0.0.1:$imds_port aws=http://127.0.0.1:$aws_port
}
imds_ctl() { curl -sf -X POST --data "$2" "$imds/_fake/$1" >/dev/null; }
aws_stat() { curl -sf "$aws/_fake/stats" | $py -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
imds_stat() { curl -sf "$imds/_fake/stats" | $py -c "import json,sys; s=json.load(sys.stdin); print($1)"; }

boot() { # boot NAME: starts the VM; sets qemu_pid, web, health, g
	local name=$1 uuid=ec2e2e00-0000-4000-8000-000000000001
	web_port=$(freeport) health_port=$(freeport)
	web=127.0.0.1:$web_port health=127.0.0.1:$health_port
	g="$py $src/test/e2e/guest.py $run/serial-$name.sock"
	qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic -no-reboot \
		-kernel "$image/vmlinuz" -append "console=ttyS0 root=/dev/nvme0n1 rw net.ifnames=0 quiet" \
		-drive "file=$image/rootfs.img,if=none,id=ebs,format=raw,snapshot=on" -device nvme,drive=ebs,serial=vol0e2e \
		-netdev "user,id=n0,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15,guestfwd=tcp:169.254.169.254:80-cmd:socat - TCP:127.0.0.1:$imds_port,guestfwd=tcp:169.254.169.253:8001-cmd:socat - TCP:127.0.0.1:$debs_port,guestfwd=tcp:169.254.169.252:8002-cmd:socat - TCP:127.0.0.1:$aws_port,hostfwd=tcp:127.0.0.1:$web_port-:8080,hostfwd=tcp:127.0.0.1:$health_port-:8081" \
		-device virtio-net-pci,netdev=n0 \
		-smbios "type=1,manufacturer=Amazon EC2,product=t3.small,serial=$uuid,uuid=$uuid" \
		-chardev "socket,id=s0,path=$run/serial-$name.sock,server=on,wait=off,logfile=$run/console-$name.log" \
		-serial chardev:s0 -monitor "unix:$run/monitor-$name.sock,server=on,wait=off" \
		>"$run/qemu-$name.log" 2>&1 &
	qemu_pid=$!
	pids+=($qemu_pid)
	ln -sf "console-$name.log" "$run/console.log"
}
monitor() { # monitor NAME COMMAND
	$py -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(0.2); s.recv(4096)
s.sendall(sys.argv[2].encode()+b"\n"); time.sleep(0.3)' "$run/monitor-$1.sock" "$2"
}
probe() { $py "$src/test/e2e/prober.py" once "$1" "${2:-/health}"; }
wait_health() { # wait_health ADDR STATUS SECONDS [PATH]
	$py "$src/test/e2e/prober.py" until "$@"
}
lifecycle_records() { # lifecycle_records HOOK ACTION → "RESULT/ERROR ..." lines
	aws_stat "'\n'.join('%s/%s' % (r.get('result'), r['error']) for r in s['lifecycle'] if r['hook'] == '$1' and r['action'] == '$2')"
}

start_fakes
step "boot: cloud-init runs user-data, the packages install, the agent gets READY"
t_boot=$(ms)
boot one
t_ud=""
deadline=$(($(date +%s) + 300))
while [ "$(date +%s)" -lt "$deadline" ]; do
	kill -0 "$qemu_pid" 2>/dev/null || die "qemu exited: $(cat "$run/qemu-one.log")"
	if [ -z "$t_ud" ] && [ "$(imds_stat 's["by_path"].get("user-data", 0)')" -gt 0 ]; then
		t_ud=$(ms)
		echo "e2e: cloud-init fetched user-data $((t_ud - t_boot)) ms after qemu started"
	fi
	[ "$(probe "$health")" = 200 ] && break
	sleep 1
done
[ -n "$t_ud" ] || die "cloud-init never fetched user-data (EC2 datasource not used?)"
[ "$(probe "$health")" = 200 ] || {
	$g --timeout 20 -- "tail -30 /var/log/cloud-init-output.log; systemctl --no-pager status anb-agent" || true
	die "the agent's /health never answered 200"
}
t_ready=$(ms)
pass "host prober: /health 200 through hostfwd $((t_ready - t_boot)) ms after qemu started"
[ "$(probe "$web")" = 200 ] && pass "nginx → agent: /health 200 on the app's port" || failstep "nginx's /health"
# The first request may wait for gunicorn's workers, slow under TCG.
wait_health "$web" 200 30 /settings >/dev/null && pass "the real app answers through nginx (/settings)" ||
	failstep "the app through nginx: $(probe "$web" /settings)"
# user-data polls once a second: its READY line may follow the host's 200.
$g --timeout 40 -- "for i in \$(seq 30); do grep -q 'anb-agent ready' /var/log/cloud-init-output.log && break; sleep 1; done" >/dev/null || true
out=$($g -- "grep -h 'anb-user-data' /var/log/cloud-init-output.log; systemctl show -P MainPID,ActiveState anb-agent; ps -o comm= -p 1; systemctl is-active redis-server anb-api.socket anb-api nginx" || true)
echo "$out" | sed 's/^/    guest| /'
grep -q "anb-agent ready" <<<"$out" && pass "user-data waited for READY and says so in cloud-init's log" ||
	failstep "no READY line from user-data in cloud-init-output.log"
grep -qx systemd <<<"$out" && pass "the agent runs under PID-1 systemd" || failstep "PID 1 is not systemd"

step "launch lifecycle hook"
if [ $lifecycle = yes ]; then
	for _ in $(seq 30); do [ -n "$(lifecycle_records anb-launch CompleteLifecycleAction)" ] && break; sleep 1; done
	recs=$(lifecycle_records anb-launch CompleteLifecycleAction)
	[ "$recs" = "CONTINUE/None" ] && pass "launch hook: CompleteLifecycleAction CONTINUE exactly once" ||
		failstep "launch hook records: [$recs]"
else
	skip "launch hook: the agent has no [lifecycle]"
fi

step "user-data run again: idempotent"
pid_before=$($g -- systemctl show -P MainPID anb-agent)
if out=$($g --timeout 120 -- "bash /var/lib/cloud/instance/scripts/part-001"); then
	pid_after=$($g -- systemctl show -P MainPID anb-agent)
	if grep -q "already installed" <<<"$out" && [ "$pid_before" = "$pid_after" ] && [ "$(probe "$health")" = 200 ]; then
		pass "user-data twice: nothing reinstalled, agent not restarted, still 200"
	else
		failstep "user-data twice: pid $pid_before → $pid_after; $(tail -3 <<<"$out")"
	fi
else
	failstep "user-data twice exited non-zero: $(tail -5 <<<"$out")"
fi

step "package upgrade restarts the running agent, which gets READY again"
out=$($g --timeout 180 -- "curl -sf -o /tmp/up.deb http://169.254.169.253:8001/anb-agent_${ver}+e2e1_amd64.deb && apt-get install -y -q /tmp/up.deb >/dev/null 2>&1; dpkg-query -W -f='\${Version}' anb-agent; echo; systemctl show -P MainPID anb-agent" || true)
new_pid=$(tail -1 <<<"$out")
if grep -q "+e2e1" <<<"$out" && [ "$new_pid" != "$pid_before" ] && wait_health "$health" 200 120 >/dev/null; then
	pass "upgrade to $ver+e2e1: agent restarted (pid $pid_before → $new_pid) and /health 200 again"
else
	failstep "upgrade: $out"
fi

step "spot interruption notice → 503 within 2 s"
if [ $lifecycle = yes ]; then
	when=$(date -u -d '+2 min' +%Y-%m-%dT%H:%M:%SZ)
	t=$(ms)
	imds_ctl state "{\"spot_instance_action\": {\"action\": \"terminate\", \"time\": \"$when\"}}"
	if wait_health "$health" 503 10 >/dev/null; then
		took=$(($(ms) - t))
		[ "$took" -le 2000 ] && pass "spot notice → 503 in $took ms" || failstep "spot notice → 503 in $took ms (> 2000)"
	else
		failstep "spot notice: no 503 within 10 s"
	fi
	# Why, in the three places the pin names: `anb-agent status`, STATUS=
	# and the log.
	out=$($g -- "anb-agent status" || true)
	echo "$out" | sed 's/^/    guest| /'
	grep -qi spot <<<"$out" && pass "anb-agent status says why (spot)" ||
		failstep "anb-agent status does not say why it drains (no 'spot')"
	out=$($g -- "systemctl show -P StatusText anb-agent" || true)
	grep -qi spot <<<"$out" && pass "STATUS= says why: $(tr -d '\r' <<<"$out")" ||
		failstep "STATUS= does not mention the spot notice: $out"
	out=$($g -- "journalctl -u anb-agent --no-pager -o cat | grep -i spot | tail -1" || true)
	grep -qi spot <<<"$out" && pass "the journal says why: $(tr -d '\r' <<<"$out")" ||
		failstep "the journal does not mention the spot notice"
	# The notice withdrawn (a test-only move) and the agent restarted: a
	# healthy instance again for the next step.
	imds_ctl state '{"spot_instance_action": null}'
	$g -- "systemctl restart --no-block anb-agent" >/dev/null || true
	if ! wait_health "$health" 200 120 >/dev/null; then
		failstep "no 200 after the agent's restart"
		$g -- "systemctl status --no-pager -n 20 anb-agent" | sed 's/^/    guest| /' || true
	fi
else
	skip "spot notice: the agent has no [lifecycle]"
fi

step "ASG Terminated → 503, units stopped, then terminate hook CONTINUE"
if [ $lifecycle = yes ]; then
	t=$(ms)
	imds_ctl state '{"target_lifecycle_state": "Terminated"}'
	if wait_health "$health" 503 10 >/dev/null; then
		took=$(($(ms) - t))
		[ "$took" -le 2000 ] && pass "Terminated → 503 in $took ms" || failstep "Terminated → 503 in $took ms (> 2000)"
	else
		failstep "Terminated: no 503 within 10 s"
	fi
	for _ in $(seq 180); do [ -n "$(lifecycle_records anb-terminate CompleteLifecycleAction)" ] && break; sleep 1; done
	t_hook=$(ms)
	recs=$(lifecycle_records anb-terminate CompleteLifecycleAction)
	units=$($g -- "systemctl is-active redis-server anb-api.socket anb-api nginx | tr '\n' ' '" || true)
	[ "$recs" = "CONTINUE/None" ] && pass "terminate hook: CONTINUE once, $((t_hook - t)) ms after Terminated" ||
		failstep "terminate hook records: [$recs]"
	# When the hook has completed, no unit of the app is active any more.
	grep -q '\bactive\b' <<<"$units" && failstep "units still active after the hook: $units" ||
		pass "the app's units are stopped ($units)"
else
	skip "Terminated: the agent has no [lifecycle]"
fi

step "purge removes the packages cleanly"
out=$($g --timeout 180 -- "apt-get purge -y -q anb-sample-app anb-agent >/dev/null 2>&1; echo rc=\$?; dpkg -l 'anb-*' 2>/dev/null | grep -c '^.i' ; ls /etc/anb-agent /srv/anb/.env 2>&1 | head -3; systemctl is-enabled anb-agent 2>&1" || true)
echo "$out" | sed 's/^/    guest| /'
if grep -q "rc=0" <<<"$out" && ! grep -q "^[1-9]$" <<<"$out" && grep -q "No such file" <<<"$out"; then
	pass "purge: packages gone, /etc/anb-agent and the .env removed"
else
	failstep "purge: $out"
fi

step "user-data after the purge: installs again and waits for READY"
imds_ctl state '{"target_lifecycle_state": "InService", "spot_instance_action": null}'
if out=$($g --timeout 300 -- "bash /var/lib/cloud/instance/scripts/part-001"); then
	[ "$(probe "$health")" = 200 ] && pass "reinstalled by user-data: $(grep 'anb-agent ready' <<<"$out" | tr -d '\r')" ||
		failstep "reinstalled but /health $(probe "$health")"
else
	failstep "user-data after purge: $(tail -5 <<<"$out")"
fi

step "systemctl poweroff → 503 for the drain grace before nginx stops"
if [ $lifecycle = yes ] && [ "$(probe "$web")" = 200 ]; then
	# Poll the app's port (nginx, which proxies /health to the agent) every
	# 50 ms from the power-off until it stops answering.
	$py - "$web" >"$run/poweroff.timeline" <<'PY' &
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
t0 = time.time(); last = None; down_since = None
while time.time() - t0 < 120:
    try:
        with socket.create_connection((host, int(port)), timeout=1) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(64)
        st = data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "down"
    except OSError:
        st = "down"
    if st != last:
        print("%d %s" % ((time.time() - t0) * 1000, st), flush=True); last = st
    if st == "down":
        down_since = down_since or time.time()
        if time.time() - down_since > 3:
            break
    else:
        down_since = None
    time.sleep(0.05)
PY
	poller=$!
	sleep 1
	$g --timeout 5 -- "systemctl poweroff" >/dev/null 2>&1 || true
	wait "$poller" || true
	sed 's/^/    timeline (ms status)| /' "$run/poweroff.timeline"
	t503=$(awk '$2 == 503 {print $1; exit}' "$run/poweroff.timeline")
	tdown=$(awk -v a="${t503:-0}" '$2 == "down" && $1 > a {print $1; exit}' "$run/poweroff.timeline")
	if [ -n "$t503" ] && [ -n "$tdown" ] && [ $((tdown - t503)) -ge $(((grace - 1) * 1000)) ]; then
		pass "poweroff: 503 through nginx for $((tdown - t503)) ms (grace ${grace}s) before nginx stopped"
	else
		failstep "poweroff: 503 at ${t503:-never} ms, nginx down at ${tdown:-never} ms (want ≥ $(((grace - 1) * 1000)) ms of 503)"
	fi
	for _ in $(seq 60); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
	kill -0 "$qemu_pid" 2>/dev/null && failstep "the VM did not power off within 30 s" || pass "the VM powered off"
elif [ $lifecycle = no ]; then
	skip "poweroff drain: the agent has no [drain]"
else
	failstep "poweroff drain: the app is not answering 200 to start from"
fi

echo "e2e: total $(($(date +%s) - t_all)) s"
echo "e2e: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
