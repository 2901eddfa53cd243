#!/usr/bin/env bash
# Starts `brook broker` on ephemeral loopback ports for the shell and Node tests.
# Usage: source tests/support/start-broker.sh; then $ENDPOINT is set and the broker stops on exit.
set -euo pipefail
BROOK=${BROOK:-target/debug/brook}
BROKER_DIR=$(mktemp -d)
mkfifo "$BROKER_DIR/out"
"$BROOK" broker --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$BROKER_DIR/data" \
  --stream-transition-ms 0 ${BROKER_ARGS:-} >"$BROKER_DIR/out" 2>"$BROKER_DIR/log" &
BROKER_PID=$!
read -r FIRST_LINE <"$BROKER_DIR/out"
# Keep draining stdout so the broker never blocks on a full pipe.
cat "$BROKER_DIR/out" >/dev/null &
ENDPOINT=$(echo "$FIRST_LINE" | grep -oE 'https?://[0-9.:]*' | head -n1)
stop_broker() {
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  rm -rf "$BROKER_DIR"
}
trap stop_broker EXIT
export ENDPOINT
