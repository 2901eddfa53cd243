"""Kinesis channels through boto3 (whose model has the channel operations) against brook broker
processes this script starts, delivering to a real S3-compatible server (moto's, from PyPI)
that it starts too: records in objects named by the key template, in each record format and
compression, records of the wrong format in the dead-letter bucket, updates, tags, the
refusals, a channel whose delivery cannot start, and delivery across a broker's `kill -9`."""

import base64
import gzip
import json
import os
import tempfile
import time
import urllib.request

import boto3
import cramjam
from botocore.exceptions import ClientError

import brook_process
from moto_server import S3_KEY, S3Server
from brook_process import ANSWERED, Broker, check, error_code, on_demand_stream

brook_process.BROOK = os.environ.get("BROOK", "target/debug/brook")
brook_process.CHECKED_WORDS.add("Channel")
# moto's account: ExpectedBucketOwner must name it.
OWNER = "123456789012"
ROLE = f"arn:aws:iam::{OWNER}:role/channel"
# How long delivered objects may take to appear (freshness is 1 s here).
DELIVERY_DEADLINE_S = 90


def channel_broker(work, s3, name, s3_keys=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if s3_keys:
        env.update(S3_KEY)
    return Broker(os.path.join(work, name), os.path.join(work, f"{name}.log"),
                  "--s3-endpoint", s3.endpoint, "--channel-min-freshness-seconds", "1", env=env)


def storage(bucket="lake", compression="GZIP", **extra):
    return {"BucketARN": f"arn:aws:s3:::{bucket}", "ExpectedBucketOwner": OWNER,
            "CompressionType": compression, **extra}


def create_channel(kinesis, name, stream_arn, record_format="JSON", freshness=1, **s3):
    destination = {"DataFreshnessInSeconds": freshness, "StorageConfiguration": storage(), **s3}
    return kinesis.create_channel(
        ChannelName=name, ServiceExecutionRoleARN=ROLE,
        StreamConfigurationList=[{"StreamARN": stream_arn,
                                  "RecordConfiguration": {"RecordFormatType": record_format}}],
        S3DestinationConfiguration=destination)["ChannelDescription"]


def wait_active(kinesis, arn):
    deadline = time.monotonic() + 30
    while True:
        channel = kinesis.describe_channel(ChannelARN=arn)["ChannelDescription"]
        if channel["ChannelStatus"] != "CREATING" or time.monotonic() > deadline:
            return channel


def delivered(s3, bucket, prefix, decode, want, split):
    """Polls the bucket until `want` items (records) are there or the deadline passes; returns
    {key: [items]}."""
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while True:
        objects = {key: split(decode(body)) for key, body in s3.objects(bucket, prefix).items()}
        if sum(len(items) for items in objects.values()) >= want or time.monotonic() > deadline:
            return objects
        time.sleep(0.5)


def lines(content):
    return [line for line in content.split(b"\n") if line]


def refusals(kinesis, stream_arn, fixed_arn):
    def refused(**changes):
        request = {"ChannelName": "refused", "ServiceExecutionRoleARN": ROLE,
                   "StreamConfigurationList": [{"StreamARN": stream_arn,
                                                "RecordConfiguration": {"RecordFormatType": "JSON"}}],
                   "S3DestinationConfiguration": {"DataFreshnessInSeconds": 1,
                                                  "StorageConfiguration": storage()}}
        request.update(changes)
        request = {k: v for k, v in request.items() if v is not None}
        return error_code(lambda: kinesis.create_channel(**request))

    tables = {"DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::dead", "ExpectedBucketOwner": OWNER},
              "S3TablesConfigurationList": [{"TableBucketARN": f"arn:aws:s3tables:us-east-1:{OWNER}:bucket/tables",
                                             "Namespace": "ns", "TableName": "t", "CompressionType": "ZSTD"}]}
    cases = {
        "a provisioned stream": (refused(StreamConfigurationList=[
            {"StreamARN": fixed_arn, "RecordConfiguration": {"RecordFormatType": "JSON"}}]), "InvalidArgumentException"),
        "S3 Tables without a record schema": (refused(S3DestinationConfiguration=None,
                                                      S3TablesDestinationConfiguration=tables), "InvalidArgumentException"),
        "both destinations": (refused(S3TablesDestinationConfiguration=tables), "InvalidArgumentException"),
        "no destination": (refused(S3DestinationConfiguration=None), "InvalidArgumentException"),
        "GSR_JSON for an S3 bucket": (refused(StreamConfigurationList=[
            {"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": "GSR_JSON"}}]), "InvalidArgumentException"),
        "two streams": (refused(StreamConfigurationList=[
            {"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": "JSON"}}] * 2), "InvalidArgumentException"),
        "an unknown template variable": (refused(S3DestinationConfiguration={
            "StorageConfiguration": storage(OutputKeyTemplate="x/!{nope}")}), "InvalidArgumentException"),
        "a template ending in a folder": (refused(S3DestinationConfiguration={
            "StorageConfiguration": storage(OutputKeyTemplate="x/!{yyyy}/")}), "InvalidArgumentException"),
        "freshness over 900 s": (refused(S3DestinationConfiguration={
            "DataFreshnessInSeconds": 901, "StorageConfiguration": storage()}), "InvalidArgumentException"),
        "a stream that does not exist": (refused(StreamConfigurationList=[
            {"StreamARN": f"arn:aws:kinesis:us-east-1:000000000000:stream/nowhere",
             "RecordConfiguration": {"RecordFormatType": "JSON"}}]), "ResourceNotFoundException"),
        "a name off the pattern": (refused(ChannelName="no spaces"), "ValidationException"),
    }
    for case, (got, want) in cases.items():
        check(f"channel refused: {case}", got == want, got)
    check("channel refusals created nothing", kinesis.list_channels()["ChannelSummaries"] == [])


def metrics_show(broker, lines):
    """Polls the broker's /metrics until it has every line of `lines` (a counter may be
    incremented a moment after its object is visible); returns whether it did."""
    deadline = time.monotonic() + 30
    while True:
        text = urllib.request.urlopen(f"{broker.metrics}/metrics").read().decode()
        if all(line in text.splitlines() for line in lines) or time.monotonic() > deadline:
            return all(line in text.splitlines() for line in lines), text
        time.sleep(0.2)


def json_channel(s3, kinesis, stream_arn, broker):
    """A JSON channel with gzip, a template of its own, GLACIER_IR and a dead-letter bucket:
    JSON records in objects, the others in the dead letters, nothing from before it."""
    kinesis.put_record(StreamName="clicks", PartitionKey="early", Data=b'{"before": true}')
    channel = create_channel(
        kinesis, "clicks-to-lake", stream_arn,
        StorageConfiguration=storage(OutputKeyTemplate="events/!{stream-name}/!{yyyy}-!{MM}-!{dd}/!{channel-name}!{extension}",
                                     StorageClass="GLACIER_IR"),
        DeadLetterQueueS3Configuration={"BucketARN": "arn:aws:s3:::dead", "ExpectedBucketOwner": OWNER,
                                        "ErrorOutputPrefix": "bad-json/"})
    check("channel starts CREATING or ACTIVE", channel["ChannelStatus"] in ("CREATING", "ACTIVE"), channel)
    channel = wait_active(kinesis, channel["ChannelARN"])
    check("channel becomes ACTIVE", channel["ChannelStatus"] == "ACTIVE", channel)
    check("channel ARN names the channel",
          channel["ChannelARN"] == "arn:aws:kinesis:us-east-1:000000000000:channel/clicks-to-lake", channel)
    sent = [json.dumps({"click": i, "page": f"/p/{i % 7}"}).encode() for i in range(300)]
    bad = [b"not json", b"{\"open\": ", b"\xff\xfe"]
    for start in range(0, len(sent), 100):
        kinesis.put_records(StreamName="clicks", Records=[
            {"PartitionKey": f"user-{i}", "Data": data} for i, data in enumerate(sent[start:start + 100])])
    for data in bad:
        kinesis.put_record(StreamName="clicks", PartitionKey="bad", Data=data)
    objects = delivered(s3, "lake", "events/", gzip.decompress, len(sent), lines)
    got = [line for items in objects.values() for line in items]
    check("channel delivers every JSON record exactly once", sorted(got) == sorted(sent),
          (len(got), len(sent)))
    check("channel delivers nothing put before it was created", b'{"before": true}' not in got)
    check("channel objects are named by the template, a unique suffix before the extension",
          objects and all(key.startswith("events/clicks/") and key.split("/")[2].count("-") == 2
                          and key.split("/")[3].startswith("clicks-to-lake-") and key.endswith(".gz")
                          for key in objects), sorted(objects))
    first = next(iter(objects), None)
    if first:
        head = s3.client.head_object(Bucket="lake", Key=first)
        check("channel objects have the storage class asked for",
              head.get("StorageClass") == "GLACIER_IR", head.get("StorageClass"))
    dead = delivered(s3, "dead", "bad-json/", lambda body: body, len(bad), lines)
    dead_records = [json.loads(line) for items in dead.values() for line in items]
    check("channel records that are not JSON go to the dead-letter bucket",
          sorted(base64.b64decode(r["rawData"]) for r in dead_records) == sorted(bad), dead_records)
    check("channel dead letters say why", all(r["errorCode"] == "Channel.RecordFormatInvalid"
                                             for r in dead_records), dead_records)
    shown, text = metrics_show(broker, [
        'brook_delivery_delivered_records_total{channel="clicks-to-lake"} 300',
        'brook_delivery_failed_records_total{type="processing-failed",channel="clicks-to-lake"} 3'])
    check("channel metrics on the broker's /metrics count deliveries and dead letters", shown,
          [line for line in text.splitlines() if "channel=" in line][:20])
    return channel["ChannelARN"]


def other_formats(s3, kinesis):
    """STRING with ZSTD and the default template; BYTE_ARRAY uncompressed, records back to back."""
    text_arn = on_demand_stream(kinesis, "logs")
    text = wait_active(kinesis, create_channel(kinesis, "logs-to-lake", text_arn, "STRING",
                                               StorageConfiguration=storage(compression="ZSTD"))["ChannelARN"])
    sent = [f"GET /déjà/{i} 200".encode() for i in range(120)]
    kinesis.put_records(StreamName="logs", Records=[{"PartitionKey": str(i), "Data": d} for i, d in enumerate(sent)])
    kinesis.put_record(StreamName="logs", PartitionKey="x", Data=b"\xc3\x28 not utf-8")
    prefix = f"kinesis-channel/logs-to-lake/{text['ChannelId']}/"
    objects = delivered(s3, "lake", prefix, lambda b: bytes(cramjam.zstd.decompress(b)), len(sent), lines)
    got = [line for items in objects.values() for line in items]
    check("channel STRING records arrive zstd-compressed, a line each", sorted(got) == sorted(sent),
          (len(got), len(sent)))
    check("channel default template: by channel, id and hour, .zst at the end",
          objects and all(key.endswith(".zst") and key.count("/") == 7 for key in objects), sorted(objects))
    dead = delivered(s3, "lake", "errors/", lambda body: body, 1, lines)
    check("channel text that is not UTF-8 goes to the default error prefix of the bucket",
          any(b"not utf-8" in base64.b64decode(json.loads(line)["rawData"])
              for items in dead.values() for line in items), sorted(dead))

    bytes_arn = on_demand_stream(kinesis, "frames")
    frames = wait_active(kinesis, create_channel(kinesis, "frames-to-lake", bytes_arn, "BYTE_ARRAY",
                                                 StorageConfiguration=storage(compression="NONE"))["ChannelARN"])
    sent = [bytes([i]) * 15 + bytes([255 - i]) for i in range(64)]
    kinesis.put_records(StreamName="frames", Records=[{"PartitionKey": "one", "Data": d} for d in sent])
    prefix = f"kinesis-channel/frames-to-lake/{frames['ChannelId']}/"
    objects = delivered(s3, "lake", prefix, lambda b: b,
                        len(sent), lambda content: [content[i:i + 16] for i in range(0, len(content), 16)])
    got = [chunk for chunks in objects.values() for chunk in chunks]
    check("channel BYTE_ARRAY records arrive as they are, back to back", sorted(got) == sorted(sent),
          (len(got), len(sent)))
    return text["ChannelARN"]


def management(kinesis, channel_arn, stream_arn, other_arn):
    check("channel second S3 channel on a stream refused",
          error_code(lambda: create_channel(kinesis, "second", stream_arn)) == "LimitExceededException")
    check("channel name taken refused",
          error_code(lambda: create_channel(kinesis, "clicks-to-lake", other_arn)) == "ResourceInUseException")
    listed = kinesis.list_channels()["ChannelSummaries"]
    check("channel list has every channel", sorted(c["ChannelName"] for c in listed)
          == ["clicks-to-lake", "frames-to-lake", "logs-to-lake"], listed)
    filtered = kinesis.list_channels(StreamFilter=[{"StreamARN": stream_arn}])["ChannelSummaries"]
    check("channel list by stream", [c["ChannelName"] for c in filtered] == ["clicks-to-lake"]
          and filtered[0]["ChannelDestinationType"] == "S3", filtered)
    first = kinesis.list_channels(MaxResults=1)
    second = kinesis.list_channels(MaxResults=1, NextToken=first["NextToken"])
    check("channel list pages", [c["ChannelName"] for c in first["ChannelSummaries"] + second["ChannelSummaries"]]
          == ["clicks-to-lake", "frames-to-lake"], (first, second))

    updated = kinesis.update_channel(
        ChannelARN=channel_arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 2},
        LoggingConfiguration={"CloudWatchLogs": {"Enabled": True, "LogGroupName": "/brook/channels"}})["ChannelDescription"]
    check("channel update answers with the new configuration",
          updated["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 2
          and updated["LoggingConfiguration"]["CloudWatchLogs"]["LogGroupName"] == "/brook/channels", updated)
    check("channel update of an S3 Tables destination refused", error_code(lambda: kinesis.update_channel(
        ChannelARN=channel_arn, S3TablesDestinationConfiguration={"DataFreshnessInSeconds": 300}))
        == "InvalidArgumentException")
    check("channel update below the freshness floor refused", error_code(lambda: kinesis.update_channel(
        ChannelARN=channel_arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 0}))
        == "InvalidArgumentException")

    kinesis.tag_resource(ResourceARN=channel_arn, Tags={"team": "web", "tier": "gold"})
    kinesis.untag_resource(ResourceARN=channel_arn, TagKeys=["tier"])
    tags = kinesis.list_tags_for_resource(ResourceARN=channel_arn)["Tags"]
    check("channel tags", tags == [{"Key": "team", "Value": "web"}], tags)
    check("channel stream with a channel cannot be deleted",
          error_code(lambda: kinesis.delete_stream(StreamName="clicks")) == "ResourceInUseException")
    check("channel stream with a channel stays ON_DEMAND", error_code(lambda: kinesis.update_stream_mode(
        StreamARN=stream_arn, StreamModeDetails={"StreamMode": "PROVISIONED"})) == "ResourceInUseException")
    missing = channel_arn.replace("clicks-to-lake", "nothing-here")
    check("channel unknown ARN not found",
          error_code(lambda: kinesis.describe_channel(ChannelARN=missing)) == "ResourceNotFoundException")


def after_update(s3, kinesis):
    """The restarted worker (new freshness) still delivers, once."""
    sent = [json.dumps({"after_update": i}).encode() for i in range(50)]
    kinesis.put_records(StreamName="clicks", Records=[{"PartitionKey": str(i), "Data": d} for i, d in enumerate(sent)])
    objects = delivered(s3, "lake", "events/", gzip.decompress, 300 + len(sent), lines)
    got = [line for items in objects.values() for line in items]
    check("channel delivers after an update, nothing twice",
          sorted(line for line in got if b"after_update" in line) == sorted(sent) and len(got) == len(set(got)),
          (len(got), len(set(got))))


def deletion(kinesis, channel_arn):
    kinesis.delete_channel(ChannelARN=channel_arn)
    deadline = time.monotonic() + 30
    while error_code(lambda: kinesis.describe_channel(ChannelARN=channel_arn)) != "ResourceNotFoundException":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check("channel deleted", error_code(lambda: kinesis.describe_channel(ChannelARN=channel_arn))
          == "ResourceNotFoundException")
    check("channel stream deletable once its channel is gone",
          error_code(lambda: kinesis.delete_stream(StreamName="logs")) is None)


def failed_channel(work, s3):
    """A broker with no S3 credentials: the channel is FAILED, with the reason."""
    broker = channel_broker(work, s3, "nokeys", s3_keys=False)
    try:
        kinesis = broker.client()
        arn = on_demand_stream(kinesis, "orphan")
        channel = kinesis.describe_channel(
            ChannelARN=create_channel(kinesis, "no-keys", arn)["ChannelARN"])["ChannelDescription"]
        check("channel without S3 credentials is FAILED with a reason",
              channel["ChannelStatus"] == "FAILED" and "credentials" in channel.get("ChannelStatusReason", ""),
              channel)
    finally:
        broker.stop()


def across_kill_9(work, s3):
    """Records acknowledged before a `kill -9` are delivered after the restart, once."""
    broker = channel_broker(work, s3, "killed")
    try:
        kinesis = broker.client()
        arn = on_demand_stream(kinesis, "orders")
        channel = wait_active(kinesis, create_channel(
            kinesis, "orders-to-lake", arn, freshness=30,
            StorageConfiguration=storage(OutputKeyTemplate="orders/!{channel-id}!{extension}"))["ChannelARN"])
        sent = [json.dumps({"order": i}).encode() for i in range(200)]
        kinesis.put_records(StreamName="orders", Records=[{"PartitionKey": str(i), "Data": d}
                                                           for i, d in enumerate(sent)])
    finally:
        # Freshness is 30 s: the batches are still buffered when the broker dies.
        broker.kill_9()
    check("channel nothing delivered before the kill", s3.objects("lake", "orders/") == {})
    broker = channel_broker(work, s3, "killed")
    try:
        kinesis = broker.client()
        listed = kinesis.describe_channel(ChannelARN=channel["ChannelARN"])["ChannelDescription"]
        check("channel still ACTIVE after kill -9", listed["ChannelStatus"] == "ACTIVE", listed)
        objects = delivered(s3, "lake", "orders/", gzip.decompress, len(sent), lines)
        got = [line for items in objects.values() for line in items]
        check("channel after kill -9: every record delivered exactly once", sorted(got) == sorted(sent),
              (len(got), len(sent)))
    finally:
        broker.stop()


def managed_brokers(work, s3):
    """Brokers managed by the operator: without --channels (a Stream without spec.channels)
    CreateChannel is refused with the reason; with it the channel delivers, and the Firehose
    API stays closed either way (DeliveryStream resources deliver in Kubernetes)."""
    admin_keys = os.path.join(work, "admin-keys")
    with open(admin_keys, "w") as f:
        f.write("BROOKADMIN=admin-secret\n")
    for name, extra in (("managed", ()), ("managed-channels", ("--channels",))):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(S3_KEY)
        broker = Broker(os.path.join(work, name), os.path.join(work, f"{name}.log"),
                        "--managed-by", "Stream shop/orders", "--admin-credentials", admin_keys,
                        "--s3-endpoint", s3.endpoint, "--channel-min-freshness-seconds", "1", *extra,
                        env=env)
        try:
            operator = broker.client(key="BROOKADMIN", secret="admin-secret")
            arn = on_demand_stream(operator, "orders")
            kinesis = broker.client()
            firehose = boto3.client("firehose", endpoint_url=broker.endpoint, region_name="us-east-1",
                                    aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
            check(f"channel {name} broker serves no Firehose API",
                  error_code(lambda: firehose.list_delivery_streams()) is not None)
            if not extra:
                try:
                    create_channel(kinesis, "orders-to-lake", arn)
                    refusal = None
                except ClientError as error:
                    refusal = error.response["Error"]
                check("channel a managed broker without spec.channels refuses, naming it",
                      refusal is not None and refusal["Code"] == "InvalidArgumentException"
                      and "spec.channels" in refusal["Message"], refusal)
                continue
            channel = wait_active(kinesis, create_channel(
                kinesis, "orders-to-lake", arn,
                StorageConfiguration=storage(OutputKeyTemplate="managed/!{channel-id}!{extension}"))["ChannelARN"])
            check("channel on a managed broker with --channels ACTIVE", channel["ChannelStatus"] == "ACTIVE", channel)
            sent = [json.dumps({"managed": i}).encode() for i in range(50)]
            kinesis.put_records(StreamName="orders", Records=[{"PartitionKey": str(i), "Data": d}
                                                               for i, d in enumerate(sent)])
            objects = delivered(s3, "lake", "managed/", gzip.decompress, len(sent), lines)
            got = [line for items in objects.values() for line in items]
            check("channel on a managed broker delivers every record once", sorted(got) == sorted(sent),
                  (len(got), len(sent)))
        finally:
            broker.stop()


def main():
    work = tempfile.mkdtemp(prefix="brook-channels-")
    s3 = S3Server(os.path.join(work, "moto.log"))
    broker = None
    try:
        for bucket in ("lake", "dead"):
            s3.client.create_bucket(Bucket=bucket)
        broker = channel_broker(work, s3, "data")
        kinesis = broker.client()
        kinesis.create_stream(StreamName="fixed", ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName="fixed", WaiterConfig={"Delay": 1})
        fixed_arn = kinesis.describe_stream_summary(StreamName="fixed")["StreamDescriptionSummary"]["StreamARN"]
        stream_arn = on_demand_stream(kinesis, "clicks")
        refusals(kinesis, stream_arn, fixed_arn)
        channel_arn = json_channel(s3, kinesis, stream_arn, broker)
        text_arn = other_formats(s3, kinesis)
        management(kinesis, channel_arn, stream_arn, on_demand_stream(kinesis, "spare"))
        after_update(s3, kinesis)
        deletion(kinesis, text_arn)
        across_kill_9(work, s3)
        failed_channel(work, s3)
        managed_brokers(work, s3)
        channel_operations = {name for name in kinesis.meta.service_model.operation_names if "Channel" in name}
        check("channel every channel operation of the model answered and checked",
              len(channel_operations) == 5 and ANSWERED == channel_operations,
              sorted(channel_operations - ANSWERED))
    finally:
        if broker:
            broker.stop()
        s3.stop()
    brook_process.finish(work, "channels (boto3)")


main()
