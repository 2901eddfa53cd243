#!/usr/bin/env bash
# The AWS CLI against a broker that requires SigV4 and speaks TLS with a test CA: the right
# key works over https, a wrong secret is refused with InvalidSignatureException.
set -euo pipefail
cd "$(dirname "$0")/../.."
AWS=${AWS:-.tools/venv/bin/aws}
PKI=$(mktemp -d)
CREDENTIALS="$PKI/credentials"
printf 'AKIDCLIUSER=cli-secret-value\n' >"$CREDENTIALS"
(
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=brook cli test CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.pem 2>/dev/null
)
BROKER_ARGS="--credentials $CREDENTIALS --tls-cert $PKI/server.pem --tls-key $PKI/server.key"
source tests/support/start-broker.sh
trap 'stop_broker; rm -rf "$PKI"' EXIT
export AWS_CA_BUNDLE="$PKI/ca.pem"
[[ "$ENDPOINT" == https://* ]] || { echo "FAIL: the broker is not serving TLS: $ENDPOINT" >&2; exit 1; }

export AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
passed=0
failed=0
if AWS_ACCESS_KEY_ID=AKIDCLIUSER AWS_SECRET_ACCESS_KEY=cli-secret-value \
  "$AWS" --endpoint-url "$ENDPOINT" kinesis create-stream --stream-name signed --shard-count 1; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); echo "FAIL: a correctly signed create-stream was refused" >&2
fi
set +e
error=$(AWS_ACCESS_KEY_ID=AKIDCLIUSER AWS_SECRET_ACCESS_KEY=wrong \
  "$AWS" --endpoint-url "$ENDPOINT" kinesis list-streams 2>&1 >/dev/null)
set -e
if echo "$error" | grep -q InvalidSignatureException; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); echo "FAIL: a wrong secret was not refused: $error" >&2
fi
echo "aws-cli-sigv4-tls: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
