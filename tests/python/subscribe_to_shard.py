"""boto3's subscribe_to_shard against brook broker: events carry the records written before
subscribing, then the ones written after, with continuation sequence numbers."""

import os
import sys
import time

import boto3

endpoint = os.environ["ENDPOINT"]
kinesis = boto3.client(
    "kinesis",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="secret",
)
passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", file=sys.stderr)


kinesis.create_stream(StreamName="py", ShardCount=1)
kinesis.get_waiter("stream_exists").wait(StreamName="py")
stream_arn = kinesis.describe_stream_summary(StreamName="py")["StreamDescriptionSummary"]["StreamARN"]
consumer = kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName="py-reader")["Consumer"]
while kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]["ConsumerStatus"] != "ACTIVE":
    time.sleep(0.05)
kinesis.put_record(StreamName="py", PartitionKey="k", Data=b"written before")

response = kinesis.subscribe_to_shard(
    ConsumerARN=consumer["ConsumerARN"],
    ShardId="shardId-000000000000",
    StartingPosition={"Type": "TRIM_HORIZON"},
)
received = []
continuation = None
written_after = False
deadline = time.time() + 20
for event in response["EventStream"]:
    shard_event = event.get("SubscribeToShardEvent")
    if shard_event is None:
        continue
    received.extend(record["Data"] for record in shard_event["Records"])
    continuation = shard_event["ContinuationSequenceNumber"]
    if received and not written_after:
        kinesis.put_record(StreamName="py", PartitionKey="k", Data=b"written after")
        written_after = True
    if len(received) >= 2 or time.time() > deadline:
        break
response["EventStream"].close()

check("records from before and after subscribing", received == [b"written before", b"written after"], received)
check("continuation sequence numbers are Kinesis-shaped", continuation is not None and len(continuation) == 56, continuation)
print(f"boto3-subscribe-to-shard: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
