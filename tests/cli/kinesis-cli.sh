#!/usr/bin/env bash
# The AWS CLI against brook broker: create-stream, put-record, get-shard-iterator,
# get-records, list-shards, delete-stream, each checked for what a user would see.
set -euo pipefail
cd "$(dirname "$0")/../.."
AWS=${AWS:-.tools/venv/bin/aws}
source tests/support/start-broker.sh

export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=secret AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
kinesis() { "$AWS" --endpoint-url "$ENDPOINT" kinesis "$@"; }
passed=0
failed=0
check() {
  local name=$1 expected=$2 actual=$3
  if [[ "$expected" == "$actual" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $name: expected [$expected], got [$actual]" >&2
  fi
}

kinesis create-stream --stream-name cli-stream --shard-count 2
kinesis wait stream-exists --stream-name cli-stream
check "stream is active" "ACTIVE" \
  "$(kinesis describe-stream-summary --stream-name cli-stream --query StreamDescriptionSummary.StreamStatus --output text)"
check "list-shards shows both shards" "shardId-000000000000 shardId-000000000001" \
  "$(kinesis list-shards --stream-name cli-stream --query 'Shards[].ShardId' --output text | tr '\t' ' ')"

# The CLI (v1) sends --data as raw bytes, base64-encoded on the wire.
put=$(kinesis put-record --stream-name cli-stream --partition-key user-1 --data "hello brook" --output json)
shard=$(echo "$put" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ShardId"])')
sequence=$(echo "$put" | python3 -c 'import json,sys; print(json.load(sys.stdin)["SequenceNumber"])')
check "sequence numbers are 56 digits" "56" "${#sequence}"
iterator=$(kinesis get-shard-iterator --stream-name cli-stream --shard-id "$shard" \
  --shard-iterator-type AT_SEQUENCE_NUMBER --starting-sequence-number "$sequence" --query ShardIterator --output text)
records=$(kinesis get-records --shard-iterator "$iterator" --output json)
check "get-records returns the record" "hello brook|user-1|$sequence" "$(echo "$records" | python3 -c '
import base64, json, sys
r = json.load(sys.stdin)["Records"][0]
print(base64.b64decode(r["Data"]).decode() + "|" + r["PartitionKey"] + "|" + r["SequenceNumber"])')"

kinesis delete-stream --stream-name cli-stream
kinesis wait stream-not-exists --stream-name cli-stream
set +e
error=$(kinesis describe-stream --stream-name cli-stream 2>&1 >/dev/null)
status=$?
set -e
check "describe after delete fails" "255" "$status"
check "with ResourceNotFoundException" "1" "$(echo "$error" | grep -c ResourceNotFoundException)"

echo "aws-cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
