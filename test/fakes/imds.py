#!/usr/bin/python3
"""A local fake of the EC2 instance metadata service, IMDSv2 only.

Follows AWS's documented behaviour (EC2 User Guide, "Use the Instance
Metadata Service to access instance metadata"):
  * PUT /latest/api/token needs X-aws-ec2-metadata-token-ttl-seconds, an
    integer 1..21600, else 400; a request carrying X-Forwarded-For gets 403;
    the answer carries the TTL header back.
  * Every GET needs X-aws-ec2-metadata-token; a missing, unknown or expired
    token gets 401 (the instance requires IMDSv2, HttpTokens=required).
  * Unknown paths get 404; directories list their entries one per line.
  * tags/instance answers 404 when instance tags are not enabled in the
    instance's metadata options.
  * meta-data/spot/instance-action: 404 until a spot interruption notice,
    then {"action": "terminate"|"stop"|"hibernate", "time": "...Z"}.
  * meta-data/autoscaling/target-lifecycle-state: 404 for an instance that
    is not in an Auto Scaling group, else InService, Terminated, Standby...
  * user-data (404 when there is none), and every path under a dated API
    version as well as under latest/ (cloud-init asks /2021-03-23/...,
    and dynamic/instance-identity without the trailing slash).

Test control, on the same port under /_fake/ (not part of IMDS):
  GET  /_fake/stats          request counts; "order": the first 200 GET paths
  POST /_fake/reset          zero the counts
  POST /_fake/state          merge JSON into the state (tags, tags_enabled, ...), e.g.
                             {"spot_instance_action": {"action": "terminate",
                              "time": "2026-11-23T13:00:00Z"}} (null: no notice),
                             {"target_lifecycle_state": "Terminated"} (null: no ASG),
                             {"user_data": "#!/bin/sh ..."} (null: none)
  POST /_fake/fault          {"kind": "status"|"slow"|"drop"|"redirect", "status": 500,
                              "delay_ms": 3000, "count": 1, "path": "meta-data/"}
  POST /_fake/expire-tokens  invalidate every token issued so far
  GET  /_fake/tokens         every token issued (for leak checks)
  GET  /_fake/credentials    the role credentials currently served
  GET  /_fake/credentials-issued  every set issued, with its expiry (the AWS
                             fake accepts signatures made with any unexpired one)

Run: imds.py --port 0 --port-file F [--state state.json] [--user-data FILE]
          [--host ADDR]
"""
import argparse
import datetime
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def default_state():
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {
        "identity": {
            "accountId": "123456789012",
            "architecture": "x86_64",
            "availabilityZone": "eu-west-1b",
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": "ami-0abcdef1234567890",
            "instanceId": "i-0123456789abcdef0",
            "instanceType": "t3.small",
            "kernelId": None,
            "pendingTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "privateIp": "10.0.1.23",
            "ramdiskId": None,
            "region": "eu-west-1",
            "version": "2017-09-30",
        },
        "meta-data": {
            "ami-id": "ami-0abcdef1234567890",
            "hostname": "ip-10-0-1-23.eu-west-1.compute.internal",
            "instance-id": "i-0123456789abcdef0",
            "instance-type": "t3.small",
            "local-ipv4": "10.0.1.23",
            "placement/availability-zone": "eu-west-1b",
            "placement/region": "eu-west-1",
        },
        "tags_enabled": True,
        "tags": {"Name": "anb-web-1", "anb:role": "web", "anb:env": "staging"},
        "role": "anb-instance-role",
        "credentials_ttl": 6 * 3600,
        "credentials_code": "Success",
        # IMDS hands out new credentials this long before the old expire.
        "credentials_rotate_before": 300,
        # Fleet lifecycle: no spot notice, not in an Auto Scaling group.
        "spot_instance_action": None,
        "target_lifecycle_state": None,
        "user_data": None,
    }


class State:
    def __init__(self, initial):
        self.data = initial
        self.tokens = {}  # token -> expiry (monotonic)
        self.token_instance = {}  # token -> instance number (identity_per_token)
        self.counts = {"token_put": 0, "get": 0, "unauthorized": 0, "redirected": 0, "by_path": {}}
        self.faults = []
        self.credentials = None
        self.issued = []  # every credential set handed out

    def creds(self):
        d = self.data
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        c = self.credentials
        if c is None or c["_expires"] - time.time() < d.get("credentials_rotate_before", 300):
            ttl = int(d.get("credentials_ttl", 6 * 3600))
            c = {
                "Code": d.get("credentials_code", "Success"),
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": "ASIA" + secrets.token_hex(8).upper(),
                "SecretAccessKey": secrets.token_urlsafe(30),
                "Token": secrets.token_urlsafe(120),
                "Expiration": (now + datetime.timedelta(seconds=ttl)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "_expires": time.time() + ttl,
            }
            self.credentials = c
            self.issued.append(c)
        return {k: v for k, v in c.items() if not k.startswith("_")}


STATE = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate sends: without TCP_NODELAY, Nagle
    # holds the body until the client's delayed ACK (~40 ms per answer).
    disable_nagle_algorithm = True
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, fmt, *args):
        if os.environ.get("IMDS_FAKE_LOG"):
            sys.stderr.write("imds-fake: " + (fmt % args) + "\n")

    def reply(self, status, body=b"", ctype="text/plain", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def not_found(self):
        self.reply(404, "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<html><head><title>404 - Not Found"
                   "</title></head><body><h1>404 - Not Found</h1></body></html>\n", "text/html")

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        return json.loads(raw or b"{}")

    # --- faults -----------------------------------------------------------
    def apply_fault(self, path):
        with LOCK:
            for f in STATE.faults:
                if f["count"] <= 0 or not path.startswith(f.get("path", "")):
                    continue
                f["count"] -= 1
                fault = dict(f)
                break
            else:
                return False
            STATE.faults = [f for f in STATE.faults if f["count"] > 0]
        kind = fault["kind"]
        if kind == "status":
            self.reply(int(fault.get("status", 500)), "fault\n")
            return True
        if kind == "slow":
            time.sleep(fault.get("delay_ms", 3000) / 1000.0)
            return False
        if kind == "redirect":
            self.send_response(int(fault.get("status", 302)))
            self.send_header("Location", fault.get("location", "/_fake/redirected"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        return False

    # --- control ----------------------------------------------------------
    def control(self):
        path = self.path[len("/_fake/"):]
        with LOCK:
            if path == "stats" and self.command == "GET":
                return self.reply(200, json.dumps(STATE.counts), "application/json")
            if path == "reset":
                STATE.counts = {"token_put": 0, "get": 0, "unauthorized": 0, "redirected": 0, "by_path": {}}
                STATE.faults = []
                return self.reply(200, "{}", "application/json")
            if path == "expire-tokens":
                STATE.tokens.clear()
                return self.reply(200, "{}", "application/json")
        if path == "state":
            upd = self.body_json()
            with LOCK:
                for k, v in upd.items():
                    if isinstance(v, dict) and isinstance(STATE.data.get(k), dict) and k != "tags":
                        STATE.data[k].update(v)
                    else:
                        STATE.data[k] = v
                if "credentials_ttl" in upd or "credentials_code" in upd:
                    STATE.credentials = None
            return self.reply(200, "{}", "application/json")
        if path == "fault":
            f = self.body_json()
            f.setdefault("count", 1)
            with LOCK:
                STATE.faults.append(f)
            return self.reply(200, "{}", "application/json")
        if path == "redirected":
            with LOCK:
                STATE.counts["redirected"] = STATE.counts.get("redirected", 0) + 1
            return self.reply(200, "followed a redirect")
        if path == "tokens" and self.command == "GET":
            with LOCK:
                return self.reply(200, json.dumps(list(STATE.tokens)), "application/json")
        if path == "credentials-issued" and self.command == "GET":
            with LOCK:
                return self.reply(200, json.dumps(STATE.issued), "application/json")
        if path == "credentials" and self.command == "GET":
            with LOCK:
                return self.reply(200, json.dumps(STATE.creds()), "application/json")
        return self.not_found()

    # --- IMDS -------------------------------------------------------------
    def do_PUT(self):
        if self.path.startswith("/_fake/"):
            return self.control()
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if self.path != "/latest/api/token":
            return self.reply(405, "")
        if self.apply_fault("api/token"):
            return
        if self.headers.get("X-Forwarded-For") is not None:
            return self.reply(403, "")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        try:
            ttl_i = int(ttl)
        except (TypeError, ValueError):
            return self.reply(400, "")
        if not 1 <= ttl_i <= 21600:
            return self.reply(400, "")
        token = secrets.token_urlsafe(40)
        with LOCK:
            STATE.tokens[token] = time.monotonic() + ttl_i
            STATE.counts["token_put"] += 1
        self.reply(200, token, headers={"X-aws-ec2-metadata-token-ttl-seconds": str(ttl_i)})

    def do_POST(self):
        if self.path.startswith("/_fake/"):
            return self.control()
        self.reply(405, "")

    def do_GET(self):
        if self.path.startswith("/_fake/"):
            return self.control()
        m = re.match(r"/(latest|\d{4}-\d{2}-\d{2})/", self.path)
        if not m:
            return self.not_found()
        path = self.path[m.end():]
        with LOCK:
            STATE.counts["get"] += 1
            STATE.counts["by_path"][path] = STATE.counts["by_path"].get(path, 0) + 1
            if len(STATE.counts.setdefault("order", [])) < 200:
                STATE.counts["order"].append(path)
        if self.apply_fault(path):
            return
        token = self.headers.get("X-aws-ec2-metadata-token")
        with LOCK:
            exp = STATE.tokens.get(token)
            if exp is None or exp < time.monotonic():
                STATE.counts["unauthorized"] += 1
                return self.reply(401, "")
        if path == "api/token":
            return self.reply(405, "")
        self.token = token
        self.serve(path)

    def serve(self, path):
        with LOCK:
            d = STATE.data
            if path == "dynamic/instance-identity/document":
                ident = d["identity"]
                if d.get("identity_per_token"):
                    # Many instances behind one fake (the scale-out bench):
                    # each token is an instance of its own.
                    n = STATE.token_instance.setdefault(self.token, len(STATE.token_instance) + 1)
                    ident = dict(ident, instanceId="i-%017x" % n)
                # AWS pretty-prints with " : " separators.
                return self.reply(200, json.dumps(ident, indent=2, separators=(",", " : ")))
            if path == "dynamic/instance-identity" or path == "dynamic/instance-identity/":
                return self.reply(200, "document")
            if path == "user-data":
                ud = d.get("user_data")
                if ud is None:
                    return self.not_found()
                return self.reply(200, ud, "application/octet-stream")
            if path == "meta-data/spot/instance-action":
                if not d.get("spot_instance_action"):
                    return self.not_found()
                return self.reply(200, json.dumps(d["spot_instance_action"]))
            if path == "meta-data/autoscaling/target-lifecycle-state":
                if not d.get("target_lifecycle_state"):
                    return self.not_found()
                return self.reply(200, d["target_lifecycle_state"])
            if path.startswith("meta-data/tags/instance"):
                if not d.get("tags_enabled", True):
                    return self.not_found()
                rest = path[len("meta-data/tags/instance"):].lstrip("/")
                if not rest:
                    return self.reply(200, "\n".join(d["tags"].keys()))
                if rest in d["tags"]:
                    return self.reply(200, d["tags"][rest])
                return self.not_found()
            if path.startswith("meta-data/iam/security-credentials"):
                rest = path[len("meta-data/iam/security-credentials"):]
                role = d.get("role")
                if not role:
                    return self.not_found()
                if rest in ("", "/"):
                    return self.reply(200, role)
                if rest == "/" + role:
                    return self.reply(200, json.dumps(STATE.creds(), indent=2))
                return self.not_found()
            if path.startswith("meta-data/"):
                key = path[len("meta-data/"):]
                md = d["meta-data"]
                if key in md:
                    return self.reply(200, md[key])
                prefix = key.rstrip("/") + "/" if key else ""
                children = sorted({k[len(prefix):].split("/")[0] + ("/" if "/" in k[len(prefix):] else "")
                                   for k in md if k.startswith(prefix)})
                if children:
                    return self.reply(200, "\n".join(children))
            return self.not_found()


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--state", help="JSON merged over the default state")
    ap.add_argument("--user-data", help="a file served as user-data")
    a = ap.parse_args()
    st = default_state()
    if a.state:
        with open(a.state) as f:
            for k, v in json.load(f).items():
                if isinstance(v, dict) and isinstance(st.get(k), dict) and k != "tags":
                    st[k].update(v)
                else:
                    st[k] = v
    if a.user_data:
        with open(a.user_data, "rb") as f:
            st["user_data"] = f.read()
    STATE = State(st)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
