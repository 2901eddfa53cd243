#!/usr/bin/env bash
# Runs the Node SDK test against a fresh broker, over h2c and then over TLS (HTTP/2 by ALPN).
set -euo pipefail
cd "$(dirname "$0")/../.."
export NODE_NO_WARNINGS=1 NODE_PATH=.tools/node/node_modules
(
  source tests/support/start-broker.sh
  node tests/node/h2c.cjs
)
PKI=$(mktemp -d)
trap 'rm -rf "$PKI"' EXIT
(
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=brook node test CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.pem 2>/dev/null
)
(
  BROKER_ARGS="--tls-cert $PKI/server.pem --tls-key $PKI/server.key"
  source tests/support/start-broker.sh
  [[ "$ENDPOINT" == https://* ]] || { echo "the broker is not serving TLS: $ENDPOINT" >&2; exit 1; }
  NODE_EXTRA_CA_CERTS="$PKI/ca.pem" TEST_LABEL=node-sdk-h2-tls node tests/node/h2c.cjs
)
