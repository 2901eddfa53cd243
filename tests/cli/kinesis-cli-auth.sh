#!/usr/bin/env bash
# The AWS CLI against a broker that requires SigV4: the right key works, a wrong secret is
# refused with InvalidSignatureException.
set -euo pipefail
cd "$(dirname "$0")/../.."
AWS=${AWS:-.tools/venv/bin/aws}
CREDENTIALS=$(mktemp)
printf 'AKIDCLIUSER=cli-secret-value\n' >"$CREDENTIALS"
BROKER_ARGS="--credentials $CREDENTIALS"
source tests/support/start-broker.sh
trap 'stop_broker; rm -f "$CREDENTIALS"' EXIT

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
echo "aws-cli-sigv4: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
