"""A channel on a stream whose shards are spread over three broker processes playing one
Stream's pods, delivering to moto's S3 server (boto3 1.44): channel calls through any pod,
pod 0 runs the delivery and reads every pod's shards through the cluster, and every record
stored on any pod arrives in the bucket exactly once."""

import json
import os
import tempfile
import time
import urllib.request

import brook_process
from moto_server import S3_KEY, S3Server
from brook_process import check, cluster_pod, error_code, free_ports, on_demand_stream

brook_process.BROOK = os.environ.get("BROOK", "target/debug/brook")
brook_process.CHECKED_WORDS.add("Channel")
OWNER = "123456789012"
STREAM = "spread"


def main():
    work = tempfile.mkdtemp(prefix="brook-channel-cluster-")
    s3 = S3Server(os.path.join(work, "moto.log"))
    s3.client.create_bucket(Bucket="lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(S3_KEY)
    internal = free_ports(3)
    pods = [cluster_pod(work, i, internal, "--s3-endpoint", s3.endpoint,
                        "--channel-min-freshness-seconds", "1", env=env)
            for i in range(3)]
    try:
        kinesis = pods[1].client()
        stream_arn = on_demand_stream(kinesis, STREAM)
        deadline = time.monotonic() + 60
        while any(error_code(lambda p=p: p.client().describe_stream_summary(StreamName=STREAM))
                  for p in pods) and time.monotonic() < deadline:
            time.sleep(0.1)
        channel = pods[2].client().create_channel(
            ChannelName="spread-to-lake", ServiceExecutionRoleARN=f"arn:aws:iam::{OWNER}:role/channel",
            StreamConfigurationList=[{"StreamARN": stream_arn,
                                      "RecordConfiguration": {"RecordFormatType": "JSON"}}],
            S3DestinationConfiguration={
                "DataFreshnessInSeconds": 1,
                "StorageConfiguration": {"BucketARN": "arn:aws:s3:::lake", "ExpectedBucketOwner": OWNER,
                                         "CompressionType": "NONE"}})["ChannelDescription"]
        arn = channel["ChannelARN"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = pods[1].client().describe_channel(ChannelARN=arn)["ChannelDescription"]
            if described["ChannelStatus"] == "ACTIVE":
                break
            time.sleep(0.1)
        check("channel cluster created through pod 2, ACTIVE through pod 1",
              described["ChannelStatus"] == "ACTIVE", described)
        listed = pods[0].client().list_channels()["ChannelSummaries"]
        check("channel cluster listed through pod 0", [c["ChannelARN"] for c in listed] == [arn], listed)

        sent, shards = [], set()
        for start in range(0, 300, 100):
            batch = [json.dumps({"n": i}).encode() for i in range(start, start + 100)]
            pending = [{"PartitionKey": f"k-{i}", "Data": d} for i, d in zip(range(start, start + 100), batch)]
            while pending:
                answer = kinesis.put_records(StreamName=STREAM, Records=pending)
                retry = []
                for entry, result in zip(pending, answer["Records"]):
                    if "SequenceNumber" in result:
                        sent.append(entry["Data"])
                        shards.add(result["ShardId"])
                    else:
                        retry.append(entry)
                pending = retry
        check("channel cluster records went to every shard", len(shards) == 4, shards)
        stored = []
        for pod in pods:
            with urllib.request.urlopen(f"{pod.metrics}/metrics", timeout=10) as answer:
                text = answer.read().decode()
            stored.append(sum(float(line.split()[-1]) for line in text.splitlines()
                              if line.startswith("brook_incoming_records_total{")))
        check("channel cluster every pod stored records", all(count > 0 for count in stored), stored)

        deadline = time.monotonic() + 90
        got = []
        while time.monotonic() < deadline:
            got = [line for body in s3.objects("lake").values() for line in body.split(b"\n") if line]
            if len(got) >= len(sent):
                break
            time.sleep(0.5)
        check("channel cluster every record of every pod's shards delivered exactly once",
              sorted(got) == sorted(sent), (len(got), len(set(got)), len(sent)))
        pods[1].client().delete_channel(ChannelARN=arn)
        deadline = time.monotonic() + 30
        while (error_code(lambda: pods[0].client().describe_channel(ChannelARN=arn)) is None
               and time.monotonic() < deadline):
            time.sleep(0.1)
        check("channel cluster deleted through pod 1", error_code(
            lambda: pods[0].client().describe_channel(ChannelARN=arn)) == "ResourceNotFoundException")
    finally:
        for pod in pods:
            pod.stop()
        s3.stop()
    brook_process.finish(work, "channel cluster (boto3)")


main()
