#!/bin/bash
# AWS endpoints over HTTPS with certificate verification: the AWS fake
# serves TLS with a certificate from a test CA; the agent trusts it only
# through AWS_CA_BUNDLE (as the SDKs do), and refuses a wrong host name.
. "$(dirname "$0")/lib.sh"
start_imds
cd "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=anb test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout srv.key -out srv.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >ext.cnf
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out srv.pem 2>/dev/null
cd - >/dev/null
/usr/bin/python3 "$SRC/test/fakes/aws.py" --port 0 --port-file "$WORK/aws.port" --imds "$IMDS_URL" \
	--tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key" 2>"$WORK/aws.log" &
pid=$!
at_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
wait_for 10 test -s "$WORK/aws.port" || fail "AWS fake did not start"
port=$(cat "$WORK/aws.port")
curl -sf --cacert "$WORK/ca.pem" -X POST --data '{"secrets": {"anb/tls": "over-tls"}}' "https://127.0.0.1:$port/_fake/state" >/dev/null
write_conf "$WORK/agent.conf" </dev/null
echo 'S=${secret:anb/tls}' >"$WORK/env.tmpl"

step "trusted through AWS_CA_BUNDLE: the signed call goes over verified TLS"
AWS_ENDPOINT_URL=https://127.0.0.1:$port AWS_CA_BUNDLE=$WORK/ca.pem "$ANB_AGENT" --config "$WORK/agent.conf" render \
	2>"$WORK/ok.err" || fail "render over TLS: $(cat "$WORK/ok.err")"
grep -qx "S='over-tls'" "$WORK/app/.env" || fail "value not rendered"

step "with the shipped unit's environment (GnuTLS left uninitialised): the same"
unit_env=$(sed -n 's/^Environment=//p' "$SRC/units/anb-agent.service")
assert_contains "$unit_env" "GNUTLS_NO_IMPLICIT_INIT=1" "the unit's environment"
rm -f "$WORK/app/.env"
env $unit_env AWS_ENDPOINT_URL=https://127.0.0.1:$port AWS_CA_BUNDLE=$WORK/ca.pem "$ANB_AGENT" \
	--config "$WORK/agent.conf" render 2>"$WORK/ok.err" || fail "render over TLS: $(cat "$WORK/ok.err")"
grep -qx "S='over-tls'" "$WORK/app/.env" || fail "value not rendered"

step "without the CA: refused, and the message says why"
capture env -u AWS_CA_BUNDLE AWS_ENDPOINT_URL=https://127.0.0.1:$port "$ANB_AGENT" --config "$WORK/agent.conf" render
[ "$rc" -ne 0 ] || fail "an untrusted certificate was accepted"
assert_contains "$out" "SSL certificate problem: unable to get local issuer certificate" "TLS error named"

step "a certificate for another name: refused"
capture env AWS_ENDPOINT_URL=https://localhost:$port AWS_CA_BUNDLE=$WORK/ca.pem "$ANB_AGENT" --config "$WORK/agent.conf" render
[ "$rc" -ne 0 ] || fail "a certificate for 127.0.0.1 was accepted for localhost"
assert_contains "$out" "no alternative certificate subject name matches target host name 'localhost'" "name check"
echo OK
