#!/usr/bin/python3
"""A local fake of the AWS APIs anb-agent calls, that checks rather than
accepts: every request's SigV4 signature is recomputed with botocore's
signer (python3-botocore) from the credentials the IMDS fake issued, and a
bad, unknown or expired signature gets AWS's error answer.

  Secrets Manager  GetSecretValue       JSON 1.1, X-Amz-Target secretsmanager.*
  SSM              GetParameters        JSON 1.1, X-Amz-Target AmazonSSM.* (<= 10 names)
  EC2              DescribeTags         Query protocol, XML answers
  Auto Scaling     CompleteLifecycleAction, RecordLifecycleActionHeartbeat
                                        Query protocol (Version 2011-01-01),
                                        signed for service "autoscaling"

Every Auto Scaling call with a valid signature is recorded, in order, in
GET /_fake/stats → "lifecycle": a list of {"action", "group", "hook",
"instance", "token", "result" (CompleteLifecycleAction only), "region",
"time" (epoch seconds), "error" (the error code answered, or null)}.  As on
AWS, an action that was completed is gone: completing it again, or a
heartbeat after it, answers 400 ValidationError "No active Lifecycle Action
found".  State "deny" may list "autoscaling:CompleteLifecycleAction" or
"autoscaling:RecordLifecycleActionHeartbeat" (403 AccessDenied).

Shapes and error codes follow the AWS API references.  Test control under
/_fake/: GET stats, POST state (merge JSON: secrets, params, tags, deny,
page_size, repeat_next_token, rate_limits: {"AmazonSSM.GetParameters": 40}
throttles like AWS's quotas, with ThrottlingException), POST fault ({"kind": "throttle"|"status", "count": N,
"target": "..."}), POST reset.

Run: aws.py --port 0 --port-file F --imds http://127.0.0.1:PORT [--state S]
          [--tls-cert CHAIN --tls-key KEY]   (HTTPS, e.g. with a test CA)
"""
import argparse
import datetime
import hashlib
import json
import os
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

LOCK = threading.Lock()
ACCOUNT = "123456789012"
STATE = {"secrets": {}, "params": {}, "tags": {}, "deny": [], "page_size": 0, "faults": [], "rate_limits": {}}
BUCKETS = {}  # rate_limits' token buckets
STATS = {"calls": {}, "signatures_valid": 0, "signatures_invalid": 0, "params_batches": [], "errors": {},
         "lifecycle": []}
COMPLETED = set()  # (group, hook, instance) of lifecycle actions completed
ASG_ACTIONS = ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat")
IMDS = None


KNOWN_CREDENTIALS = {}  # AccessKeyId -> the set the IMDS fake issued


def issued_credentials(akid):
    """The set IMDS issued with this key id, or None.  The IMDS fake's sets
    never change once issued (a rotation appends a new one), so only a key
    not seen before costs a request to it: otherwise every signed call would
    wait for a second HTTP round trip, which no benchmark of the agent
    should measure."""
    with LOCK:
        c = KNOWN_CREDENTIALS.get(akid)
    if c is not None:
        return c
    with urllib.request.urlopen(IMDS + "/_fake/credentials-issued", timeout=5) as r:
        issued = json.load(r)
    with LOCK:
        for c in issued:
            KNOWN_CREDENTIALS[c["AccessKeyId"]] = c
        return KNOWN_CREDENTIALS.get(akid)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate sends: without TCP_NODELAY, Nagle
    # holds the body until the client's delayed ACK (~40 ms per answer).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if os.environ.get("AWS_FAKE_LOG"):
            super().log_message(fmt, *args)

    def reply(self, status, body, ctype):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    # --- errors in each protocol's shape ---------------------------------
    def json_error(self, status, code, message):
        with LOCK:
            STATS["errors"][code] = STATS["errors"].get(code, 0) + 1
        self.reply(status, json.dumps({"__type": code, "message": message}), "application/x-amz-json-1.1")

    def xml_error(self, status, code, message):
        with LOCK:
            STATS["errors"][code] = STATS["errors"].get(code, 0) + 1
        self.reply(status, '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code>'
                   "<Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>"
                   % (code, message, uuid.uuid4()), "text/xml;charset=UTF-8")

    # --- SigV4 -------------------------------------------------------------
    def verify(self, body, service):
        """Returns None when the signature is valid, else (code, message)."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return ("MissingAuthenticationTokenException", "Missing Authentication Token")
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        akid, date, region, svc, term = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        amz_date = self.headers.get("X-Amz-Date", "")
        if svc != service or term != "aws4_request" or not amz_date.startswith(date):
            return ("InvalidSignatureException", "Credential should be scoped to a valid region/service.")
        skew = abs(time.time() - datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
                   .replace(tzinfo=datetime.timezone.utc).timestamp())
        if skew > 300:
            return ("InvalidSignatureException", "Signature expired: %s is now earlier than allowed" % amz_date)
        c = issued_credentials(akid)
        if c is None:
            return ("UnrecognizedClientException", "The security token included in the request is invalid.")
        if self.headers.get("X-Amz-Security-Token") != c["Token"] or "x-amz-security-token" not in signed:
            return ("UnrecognizedClientException", "The security token included in the request is invalid.")
        if c["_expires"] < time.time():
            return ("ExpiredTokenException", "The security token included in the request is expired")
        headers = {h: self.headers.get(h) for h in signed}
        req = AWSRequest(method=self.command, url="http://%s%s" % (self.headers.get("Host"), self.path),
                         data=body, headers=headers)
        req.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(akid, c["SecretAccessKey"], c["Token"]), service, region)
        want = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        if os.environ.get("AWS_FAKE_LOG"):
            import sys
            sys.stderr.write("canonical request:\n%s\nheaders: %r\n" % (signer.canonical_request(req), dict(self.headers)))
        if want != parts["Signature"]:
            return ("InvalidSignatureException", "The request signature we calculated does not match the "
                    "signature you provided. Check your AWS Secret Access Key and signing method.")
        self.region, self.role_key = region, akid
        return None

    def take_fault(self, target):
        with LOCK:
            for f in STATE["faults"]:
                if f.get("count", 1) > 0 and f.get("target", target) == target:
                    f["count"] = f.get("count", 1) - 1
                    return f
        return None

    def rate_limited(self, target):
        """A token bucket per API, as AWS meters them: state "rate_limits"
        maps a target (e.g. "AmazonSSM.GetParameters") to calls per second,
        with a burst of one second's worth."""
        rate = STATE.get("rate_limits", {}).get(target)
        if not rate:
            return False
        with LOCK:
            now = time.monotonic()
            b = BUCKETS.setdefault(target, {"tokens": float(rate), "at": now})
            b["tokens"] = min(float(rate), b["tokens"] + (now - b["at"]) * rate)
            b["at"] = now
            if b["tokens"] >= 1:
                b["tokens"] -= 1
                return False
            STATS["throttled"] = STATS.get("throttled", 0) + 1
            return True

    # --- dispatch ------------------------------------------------------------
    def do_GET(self):
        if self.path == "/_fake/stats":
            with LOCK:
                return self.reply(200, json.dumps(STATS), "application/json")
        self.reply(404, "", "text/plain")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/_fake/"):
            return self.control(self.path[len("/_fake/"):], json.loads(body or b"{}"))
        target = self.headers.get("X-Amz-Target")
        if target:
            service = "secretsmanager" if target.startswith("secretsmanager.") else "ssm"
            err = self.verify(body, service)
            with LOCK:
                STATS["signatures_invalid" if err else "signatures_valid"] += 1
            if err:
                status = 403 if err[0] == "MissingAuthenticationTokenException" else 400
                return self.json_error(status, *err)
            with LOCK:
                STATS["calls"][target] = STATS["calls"].get(target, 0) + 1
            fault = self.take_fault(target)
            if not fault and self.rate_limited(target):
                return self.json_error(400, "ThrottlingException", "Rate exceeded")
            if fault and fault["kind"] == "throttle":
                return self.json_error(400, "ThrottlingException", "Rate exceeded")
            if fault and fault["kind"] == "status":
                return self.json_error(int(fault.get("status", 500)), "InternalServiceError", "fault")
            req = json.loads(body or b"{}")
            if target == "secretsmanager.GetSecretValue":
                return self.get_secret_value(req)
            if target == "AmazonSSM.GetParameters":
                return self.get_parameters(req)
            return self.json_error(400, "UnknownOperationException", "")
        form = urllib.parse.parse_qs(body.decode())
        if form.get("Action", [""])[0] in ASG_ACTIONS:
            return self.autoscaling(body, form)
        err = self.verify(body, "ec2")
        with LOCK:
            STATS["signatures_invalid" if err else "signatures_valid"] += 1
        if err:
            code = {"InvalidSignatureException": "SignatureDoesNotMatch",
                    "UnrecognizedClientException": "AuthFailure", "ExpiredTokenException": "RequestExpired"}.get(
                        err[0], err[0])
            return self.xml_error(400 if code == "RequestExpired" else 401 if code == "AuthFailure" else 403,
                                  code, err[1])
        action = form.get("Action", [""])[0]
        with LOCK:
            STATS["calls"]["ec2." + action] = STATS["calls"].get("ec2." + action, 0) + 1
        if action != "DescribeTags":
            return self.xml_error(400, "InvalidAction", "The action %s is not valid for this web service." % action)
        if "ec2:DescribeTags" in STATE["deny"]:
            return self.xml_error(403, "UnauthorizedOperation", "You are not authorized to perform this operation.")
        return self.describe_tags(form)

    def control(self, what, req):
        with LOCK:
            if what == "state":
                STATE.update(req)
            elif what == "fault":
                STATE["faults"].append(req)
            elif what == "reset":
                STATS.update({"calls": {}, "signatures_valid": 0, "signatures_invalid": 0, "params_batches": [],
                              "errors": {}, "lifecycle": []})
                COMPLETED.clear()
                STATE["faults"] = []
        self.reply(200, "{}", "application/json")

    # --- the APIs ------------------------------------------------------------
    def denied(self, action, resource):
        return self.json_error(400, "AccessDeniedException",
                               "User: arn:aws:sts::%s:assumed-role/anb-instance-role/i-0123456789abcdef0 is not "
                               "authorized to perform: %s on resource: %s because no identity-based policy allows "
                               "the %s action" % (ACCOUNT, action, resource, action))

    def get_secret_value(self, req):
        sid = req.get("SecretId")
        if not sid:
            return self.json_error(400, "ValidationException", "1 validation error detected: SecretId")
        if sid in STATE["deny"]:
            return self.denied("secretsmanager:GetSecretValue", sid)
        if sid not in STATE["secrets"]:
            return self.json_error(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
        v = STATE["secrets"][sid]
        out = {"ARN": "arn:aws:secretsmanager:%s:%s:secret:%s-AbCdEf" % (self.region, ACCOUNT, sid), "Name": sid,
               "VersionId": str(uuid.uuid5(uuid.NAMESPACE_OID, sid + json.dumps(v))),
               "VersionStages": ["AWSCURRENT"], "CreatedDate": 1700000000.0}
        out["SecretString"] = v if isinstance(v, str) else json.dumps(v)
        self.reply(200, json.dumps(out), "application/x-amz-json-1.1")

    def get_parameters(self, req):
        names = req.get("Names") or []
        if not 1 <= len(names) <= 10:
            return self.json_error(400, "ValidationException", "1 validation error detected: Value at 'names' "
                                   "failed to satisfy constraint: Member must have length less than or equal to 10")
        with LOCK:
            STATS["params_batches"].append(names)
        for n in names:
            if n in STATE["deny"]:
                return self.denied("ssm:GetParameters", "arn:aws:ssm:%s:%s:parameter%s" % (self.region, ACCOUNT, n))
        params, invalid = [], []
        for n in names:
            p = STATE["params"].get(n)
            if p is None:
                invalid.append(n)
                continue
            ptype = p.get("Type", "String")
            value = p["Value"]
            if ptype == "SecureString" and not req.get("WithDecryption"):
                value = "AQICAH" + hashlib.sha256(value.encode()).hexdigest()
            params.append({"Name": n, "Type": ptype, "Value": value, "Version": 1, "DataType": "text",
                           "LastModifiedDate": 1700000000.0,
                           "ARN": "arn:aws:ssm:%s:%s:parameter%s" % (self.region, ACCOUNT, n)})
        self.reply(200, json.dumps({"Parameters": params, "InvalidParameters": invalid}),
                   "application/x-amz-json-1.1")

    # --- Auto Scaling (Query API 2011-01-01) ---------------------------------
    def asg_error(self, status, code, message, record=None):
        with LOCK:
            STATS["errors"][code] = STATS["errors"].get(code, 0) + 1
            if record is not None:
                record["error"] = code
                STATS["lifecycle"].append(record)
        self.reply(status, '<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                   "<Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>"
                   "<RequestId>%s</RequestId></ErrorResponse>" % (code, message, uuid.uuid4()), "text/xml")

    def autoscaling(self, body, form):
        err = self.verify(body, "autoscaling")
        with LOCK:
            STATS["signatures_invalid" if err else "signatures_valid"] += 1
        if err:
            code = {"InvalidSignatureException": "SignatureDoesNotMatch",
                    "UnrecognizedClientException": "InvalidClientTokenId",
                    "ExpiredTokenException": "ExpiredToken"}.get(err[0], err[0])
            return self.asg_error(403, code, err[1])
        f = {k: v[0] for k, v in form.items()}
        action = f["Action"]
        with LOCK:
            STATS["calls"]["autoscaling." + action] = STATS["calls"].get("autoscaling." + action, 0) + 1
        rec = {"action": action, "group": f.get("AutoScalingGroupName"), "hook": f.get("LifecycleHookName"),
               "instance": f.get("InstanceId"), "token": f.get("LifecycleActionToken"),
               "region": self.region, "time": time.time(), "error": None}
        if action == "CompleteLifecycleAction":
            rec["result"] = f.get("LifecycleActionResult")
        if f.get("Version") != "2011-01-01":
            return self.asg_error(400, "InvalidAction", "Version must be 2011-01-01", rec)
        if "autoscaling:" + action in STATE["deny"]:
            return self.asg_error(403, "AccessDenied", "User is not authorized to perform: autoscaling:%s"
                                  % action, rec)
        if not rec["group"] or not rec["hook"]:
            return self.asg_error(400, "ValidationError", "AutoScalingGroupName and LifecycleHookName are "
                                  "required", rec)
        if not rec["instance"] and not rec["token"]:
            return self.asg_error(400, "ValidationError", "InstanceId or LifecycleActionToken is required", rec)
        if action == "CompleteLifecycleAction" and rec["result"] not in ("CONTINUE", "ABANDON"):
            return self.asg_error(400, "ValidationError", "LifecycleActionResult must be CONTINUE or ABANDON", rec)
        key = (rec["group"], rec["hook"], rec["instance"] or rec["token"])
        with LOCK:
            done = key in COMPLETED
            if not done and action == "CompleteLifecycleAction":
                COMPLETED.add(key)
        if done:
            return self.asg_error(400, "ValidationError", "No active Lifecycle Action found with instance ID %s"
                                  % (rec["instance"] or rec["token"]), rec)
        with LOCK:
            STATS["lifecycle"].append(rec)
        self.reply(200, '<%sResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><%sResult/>'
                   "<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>"
                   % (action, action, uuid.uuid4(), action), "text/xml")

    def describe_tags(self, form):
        rid = form.get("Filter.1.Value.1", [""])[0]
        items = sorted(STATE["tags"].items()) if form.get("Filter.1.Name", [""])[0] == "resource-id" else []
        start = int(form.get("NextToken", ["0"])[0])
        size = STATE.get("page_size") or len(items) or 1
        page = items[start:start + size]
        nxt = start + size if start + size < len(items) else None
        if STATE.get("repeat_next_token"):  # a broken pager: the same token forever
            nxt = size

        def esc(s):
            return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        xml = ['<?xml version="1.0" encoding="UTF-8"?>',
               '<DescribeTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">',
               "<requestId>%s</requestId>" % uuid.uuid4(), "<tagSet>"]
        for k, v in page:
            xml.append("<item><resourceId>%s</resourceId><resourceType>instance</resourceType><key>%s</key>"
                       "<value>%s</value></item>" % (esc(rid), esc(k), esc(v)))
        xml.append("</tagSet>")
        if nxt is not None:
            xml.append("<nextToken>%d</nextToken>" % nxt)
        xml.append("</DescribeTagsResponse>")
        self.reply(200, "\n".join(xml), "text/xml;charset=UTF-8")


def main():
    global IMDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--imds", required=True)
    ap.add_argument("--state")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate chain")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    IMDS = a.imds
    if a.state:
        with open(a.state) as f:
            STATE.update(json.load(f))
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    if a.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
