"""Kinesis channels to Apache Iceberg tables (S3 Tables destinations) through boto3, against
brook broker processes this script starts and moto's server (from PyPI) playing S3, S3 Tables
and the Glue Schema Registry: the table is created with the columns of the registered record
schema, partitioned by hour, its Parquet files compressed as asked; every record is read back
with pyiceberg exactly once, records that do not fit land in the dead-letter bucket, and a
broker stopped between a commit and saving its progress does not append that batch twice."""

import base64
import io
import json
import os
import tempfile
import time
import uuid

import boto3
import botocore.config
import pyarrow.parquet
from pyiceberg.table import StaticTable

import brook_process
from brook_process import Broker, check, error_code, on_demand_stream
from moto_server import S3_KEY, S3Server

brook_process.BROOK = os.environ.get("BROOK", "target/debug/brook")
brook_process.CHECKED_WORDS.add("Channel")
OWNER = "123456789012"
ROLE = f"arn:aws:iam::{OWNER}:role/channel"
DEADLINE_S = 120
ORDERS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "order_id": {"type": "integer"},
        "customer": {"type": "string"},
        "amount": {"type": ["number", "null"]},
        "placed_at": {"type": "string", "format": "date-time"},
        "address": {"type": "object", "properties": {"city": {"type": "string"}}},
        "items": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["order_id", "placed_at"],
}
HOURS = ["2026-12-01T08", "2026-12-01T09", "2026-12-01T10"]


def broker_process(work, s3, name, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(S3_KEY)
    return Broker(os.path.join(work, name), os.path.join(work, f"{name}.log"),
                  "--s3-endpoint", s3.endpoint, "--channel-min-freshness-seconds", "1", *extra, env=env)


def order(i):
    return {"order_id": i, "customer": f"c{i % 7}", "amount": i * 1.5,
            "placed_at": f"{HOURS[i % 3]}:{i % 60:02d}:00Z", "address": {"city": "Lisbon"},
            "items": [f"sku-{i}"]}


class Lakehouse:
    """The table bucket, its namespace, the record schema and the dead-letter bucket."""

    def __init__(self, s3):
        self.s3 = s3
        self.tables = s3.service("s3tables")
        glue = s3.service("glue")
        glue.create_registry(RegistryName="streams")
        self.schema_arn = glue.create_schema(
            RegistryId={"RegistryName": "streams"}, SchemaName="orders", DataFormat="JSON",
            Compatibility="NONE", SchemaDefinition=json.dumps(ORDERS_SCHEMA))["SchemaArn"]
        self.bucket_arn = self.tables.create_table_bucket(name="lakehouse")["arn"]
        self.tables.create_namespace(tableBucketARN=self.bucket_arn, namespace=["sales"])
        s3.client.create_bucket(Bucket="dead")

    def destination(self, table, compression="ZSTD", freshness=1):
        return {"DataFreshnessInSeconds": freshness,
                "DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::dead", "ExpectedBucketOwner": OWNER,
                                                   "ErrorOutputPrefix": f"{table}-errors/"},
                "S3TablesConfigurationList": [{
                    "TableBucketARN": self.bucket_arn, "Namespace": "sales", "TableName": table,
                    "CompressionType": compression,
                    "PartitionSpec": {"PartitionFields": [{"Transform": "TIME_HOUR", "SourceName": "placed_at"}]}}]}

    def create_channel(self, kinesis, name, stream_arn, table, **changes):
        request = {"ChannelName": name, "ServiceExecutionRoleARN": ROLE,
                   "StreamConfigurationList": [{"StreamARN": stream_arn, "RecordConfiguration": {
                       "RecordFormatType": "GSR_JSON", "GSRSchemaARN": self.schema_arn}}],
                   "S3TablesDestinationConfiguration": self.destination(table)}
        request.update(changes)
        return kinesis.create_channel(**request)["ChannelDescription"]

    def table(self, name):
        """The table as pyiceberg reads it from its current metadata, or None before any."""
        try:
            location = self.tables.get_table_metadata_location(
                tableBucketARN=self.bucket_arn, namespace="sales", name=name).get("metadataLocation")
        except self.tables.exceptions.NotFoundException:
            return None
        if not location:
            return None
        return StaticTable.from_metadata(location, properties=self.read_properties())

    def read_properties(self):
        """pyiceberg's settings for reading the tables' files from the server."""
        return {"s3.endpoint": self.s3.endpoint, "s3.region": "us-east-1",
                "s3.access-key-id": S3_KEY["AWS_ACCESS_KEY_ID"],
                "s3.secret-access-key": S3_KEY["AWS_SECRET_ACCESS_KEY"]}

    def rows(self, name, want):
        """Polls until the table holds at least `want` rows or the deadline passes; returns
        (table, rows as a list of dicts)."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            table = self.table(name)
            rows = table.scan().to_arrow().to_pylist() if table else []
            if len(rows) >= want or time.monotonic() > deadline:
                return table, rows
            time.sleep(0.5)

    def dead_letters(self, prefix, want):
        deadline = time.monotonic() + DEADLINE_S
        while True:
            lines = [json.loads(line) for body in self.s3.objects("dead", prefix).values()
                     for line in body.splitlines() if line]
            if len(lines) >= want or time.monotonic() > deadline:
                return lines
            time.sleep(0.5)


def put_orders(kinesis, stream, orders):
    for start in range(0, len(orders), 100):
        kinesis.put_records(StreamName=stream, Records=[
            {"PartitionKey": str(o["order_id"]), "Data": json.dumps(o).encode()} for o in orders[start:start + 100]])


def wait_active(kinesis, arn):
    deadline = time.monotonic() + 30
    while True:
        channel = kinesis.describe_channel(ChannelARN=arn)["ChannelDescription"]
        if channel["ChannelStatus"] not in ("CREATING", "UPDATING") or time.monotonic() > deadline:
            return channel
        time.sleep(0.1)


def orders_table(lake, kinesis):
    """The main path: columns, partitions, compression, rows once, dead letters."""
    stream_arn = on_demand_stream(kinesis, "orders")
    created = lake.create_channel(kinesis, "orders-to-lakehouse", stream_arn, "orders")
    described = wait_active(kinesis, created["ChannelARN"])
    check("channel to a table ACTIVE", described["ChannelStatus"] == "ACTIVE", described)
    check("channel to a table describes its table destination",
          described.get("S3TablesDestinationConfiguration", {}).get("S3TablesConfigurationList", [{}])[0].get("TableName") == "orders"
          and "S3DestinationConfiguration" not in described, described)
    listed = kinesis.list_channels(StreamFilter=[{"StreamARN": stream_arn}])["ChannelSummaries"]
    check("channel to a table listed as S3_TABLES",
          [c["ChannelDestinationType"] for c in listed] == ["S3_TABLES"], listed)
    sent = [order(i) for i in range(300)]
    put_orders(kinesis, "orders", sent)
    misfits = [b"not json at all", json.dumps({"order_id": "seven", "placed_at": "2026-12-01T08:00:00Z"}).encode(),
               json.dumps({"customer": "no id", "placed_at": "2026-12-01T08:00:00Z"}).encode()]
    for data in misfits:
        kinesis.put_record(StreamName="orders", PartitionKey="misfit", Data=data)
    table, rows = lake.rows("orders", len(sent))
    ids = [r["order_id"] for r in rows]
    check("channel table: every record a row exactly once", sorted(ids) == list(range(300)),
          (len(ids), len(set(ids))))
    by_id = {r["order_id"]: r for r in rows}
    sample = by_id.get(7, {})
    check("channel table: the row holds the record's values",
          sample.get("customer") == "c0" and sample.get("amount") == 10.5
          and sample.get("address") == {"city": "Lisbon"} and sample.get("items") == ["sku-7"]
          and sample.get("placed_at") is not None and sample["placed_at"].isoformat().startswith("2026-12-01T09:07"),
          sample)
    if table is None:
        check("channel table exists", False)
        return
    schema = table.schema()
    types = {field.name: str(field.field_type) for field in schema.fields}
    check("channel table: columns of the registered schema",
          types.get("order_id") == "long" and types.get("customer") == "string" and types.get("amount") == "double"
          and types.get("placed_at") == "timestamptz" and types.get("items") == "list<string>"
          and types.get("address", "").startswith("struct<"), types)
    check("channel table: order_id and placed_at required",
          schema.find_field("order_id").required and schema.find_field("placed_at").required
          and not schema.find_field("amount").required)
    spec = table.spec()
    check("channel table: partitioned by the hour of placed_at",
          [(str(f.transform), schema.find_column_name(f.source_id)) for f in spec.fields] == [("hour", "placed_at")],
          spec)
    files = table.inspect.files().to_pylist()
    partitions = {tuple(sorted(f["partition"].items())) for f in files}
    check("channel table: one partition per hour of the records", len(partitions) == 3, partitions)
    check("channel table: data files are Parquet", files and all(f["file_format"] == "PARQUET" for f in files), files[:1])
    first = files[0]["file_path"] if files else ""
    bucket, key = first.removeprefix("s3://").split("/", 1) if first else ("", "")
    body = lake.s3.client.get_object(Bucket=bucket, Key=key)["Body"].read() if first else b""
    codecs = {pyarrow.parquet.ParquetFile(io.BytesIO(body)).metadata.row_group(0).column(c).compression
              for c in range(3)} if body else set()
    check("channel table: Parquet columns compressed with ZSTD", codecs == {"ZSTD"}, codecs)
    summaries = [s.summary.additional_properties.get("brook.batch") for s in table.metadata.snapshots]
    check("channel table: each commit names its batch once",
          all(summaries) and len(summaries) == len(set(summaries)), summaries)
    dead = lake.dead_letters("orders-errors/", len(misfits))
    codes = sorted(line.get("errorCode") for line in dead)
    check("channel table: records that do not fit in the dead-letter bucket",
          codes == ["Channel.RecordFormatInvalid", "Channel.SchemaMismatch", "Channel.SchemaMismatch"], dead)
    check("channel table: the dead letters hold the records",
          sorted(base64.b64decode(line["rawData"]) for line in dead) == sorted(misfits))
    # Updates: freshness of a table destination; an S3 destination update is refused.
    updated = kinesis.update_channel(ChannelARN=created["ChannelARN"],
                                     S3TablesDestinationConfiguration={"DataFreshnessInSeconds": 2})
    check("channel table: freshness updated",
          updated["ChannelDescription"]["S3TablesDestinationConfiguration"]["DataFreshnessInSeconds"] == 2, updated)
    wait_active(kinesis, created["ChannelARN"])
    check("channel table: an S3 destination update is refused", error_code(lambda: kinesis.update_channel(
        ChannelARN=created["ChannelARN"], S3DestinationConfiguration={"DataFreshnessInSeconds": 2}))
          == "InvalidArgumentException")
    more = [order(i) for i in range(300, 350)]
    put_orders(kinesis, "orders", more)
    _, rows = lake.rows("orders", len(sent) + len(more))
    ids = [r["order_id"] for r in rows]
    check("channel table: after the update, every record once", sorted(ids) == list(range(350)), len(ids))
    return stream_arn


def schema_evolution(lake, kinesis):
    """A newer version of the record schema with a new property, and one inside a struct:
    records that carry them fill new columns, rows from before read null."""
    glue = lake.s3.service("glue")
    newer = json.loads(json.dumps(ORDERS_SCHEMA))
    newer["properties"]["coupon"] = {"type": "string"}
    newer["properties"]["address"]["properties"]["zip"] = {"type": "string"}
    glue.register_schema_version(SchemaId={"SchemaArn": lake.schema_arn}, SchemaDefinition=json.dumps(newer))
    extra = [dict(order(i), coupon=f"C{i}", address={"city": "Lisbon", "zip": f"Z{i}"}) for i in range(350, 380)]
    put_orders(kinesis, "orders", extra)
    table, rows = lake.rows("orders", 380)
    ids = [r["order_id"] for r in rows]
    check("channel table evolves: every record once", sorted(ids) == list(range(380)), len(ids))
    by_id = {r["order_id"]: r for r in rows}
    check("channel table evolves: the new properties are in their new columns",
          all(by_id.get(i, {}).get("coupon") == f"C{i}" and by_id.get(i, {}).get("address", {}).get("zip") == f"Z{i}"
              for i in range(350, 380)), by_id.get(360))
    check("channel table evolves: rows from before read null",
          by_id.get(10, {}).get("coupon", "missing") is None
          and by_id.get(10, {}).get("address") == {"city": "Lisbon", "zip": None}, by_id.get(10))
    columns = {f.name: f for f in table.schema().fields} if table else {}
    check("channel table evolves: coupon is an optional string column",
          "coupon" in columns and str(columns["coupon"].field_type) == "string" and not columns["coupon"].required,
          sorted(columns))


def snapshot_expiry(lake, kinesis):
    """Another writer sets the table's history.expire.max-snapshot-age-ms to 1 s (Iceberg's
    knob for snapshot expiry); the channel's next commit expires the older snapshots, and
    every row stays readable."""
    for _ in range(5):
        pointer = lake.tables.get_table_metadata_location(tableBucketARN=lake.bucket_arn, namespace="sales", name="orders")
        bucket, key = pointer["metadataLocation"].removeprefix("s3://").split("/", 1)
        metadata = json.loads(lake.s3.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        before = len(metadata["snapshots"])
        metadata["properties"]["history.expire.max-snapshot-age-ms"] = "1000"
        metadata["last-updated-ms"] = int(time.time() * 1000)
        version = int(key.split("/")[-1].split("-")[0]) + 1
        next_key = f"metadata/{version:05d}-{uuid.uuid4()}.metadata.json"
        lake.s3.client.put_object(Bucket=bucket, Key=next_key, Body=json.dumps(metadata).encode())
        try:
            lake.tables.update_table_metadata_location(
                tableBucketARN=lake.bucket_arn, namespace="sales", name="orders",
                versionToken=pointer["versionToken"], metadataLocation=f"s3://{bucket}/{next_key}")
            break
        except lake.tables.exceptions.ConflictException:
            continue
    newest = max(snapshot["timestamp-ms"] for snapshot in metadata["snapshots"])
    # The snapshots must be over a second old by the clock: wait for the clock, not an event.
    while time.time() * 1000 < newest + 1500:
        time.sleep(0.1)
    put_orders(kinesis, "orders", [order(i) for i in range(380, 390)])
    deadline = time.monotonic() + DEADLINE_S
    while True:
        table, rows = lake.rows("orders", 390)
        after = len(table.metadata.snapshots) if table else before
        if (len(rows) >= 390 and after < before) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check("channel table: snapshots past the table's age limit are expired", after < before, (before, after))
    check("channel table: every row still there after the expiry",
          sorted(r["order_id"] for r in rows) == list(range(390)), len(rows))


def refusals(lake, broker, stream_arn):
    # Without the SDK's own checks: the broker must refuse what a caller skipping them sends.
    kinesis = boto3.client("kinesis", endpoint_url=broker.endpoint, region_name="us-east-1",
                           aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                           config=botocore.config.Config(parameter_validation=False))

    def refused(**changes):
        return error_code(lambda: lake.create_channel(kinesis, "refused", stream_arn, "refused", **changes))
    destination = lake.destination("refused")
    no_dead_letters = {k: v for k, v in destination.items() if k != "DeadLetterQueueS3Configuration"}
    two_tables = dict(destination, S3TablesConfigurationList=destination["S3TablesConfigurationList"] * 2)
    config = destination["S3TablesConfigurationList"][0]
    day = dict(destination, S3TablesConfigurationList=[dict(config, PartitionSpec={
        "PartitionFields": [{"Transform": "TIME_DAY", "SourceName": "placed_at"}]})])
    cases = {
        "no record schema": refused(StreamConfigurationList=[
            {"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": "JSON"}}]),
        "STRING records": refused(StreamConfigurationList=[
            {"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": "STRING",
                                                              "GSRSchemaARN": lake.schema_arn}}]),
        "two tables": refused(S3TablesDestinationConfiguration=two_tables),
    }
    for case, got in cases.items():
        check(f"channel table refused: {case}", got == "InvalidArgumentException", got)
    for case, change in {"no dead-letter bucket": no_dead_letters, "a day partition": day}.items():
        got = refused(S3TablesDestinationConfiguration=change)
        check(f"channel table refused by the model: {case}", got == "ValidationException", got)
    check("channel table refusals created nothing",
          [c["ChannelName"] for c in kinesis.list_channels()["ChannelSummaries"]] == ["orders-to-lakehouse"])


def schema_without_the_partition_column(lake, kinesis):
    """A schema whose `placed_at` is a plain string cannot be partitioned by hour: the channel
    is FAILED with the reason once it has something to deliver, and nothing is created."""
    glue = lake.s3.service("glue")
    broken = dict(ORDERS_SCHEMA, properties=dict(ORDERS_SCHEMA["properties"], placed_at={"type": "string"}))
    arn = glue.create_schema(RegistryId={"RegistryName": "streams"}, SchemaName="untimed", DataFormat="JSON",
                             Compatibility="NONE", SchemaDefinition=json.dumps(broken))["SchemaArn"]
    stream_arn = on_demand_stream(kinesis, "untimed")
    channel = lake.create_channel(kinesis, "untimed-to-lakehouse", stream_arn, "untimed", StreamConfigurationList=[
        {"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": "JSON", "GSRSchemaARN": arn}}])
    wait_active(kinesis, channel["ChannelARN"])
    kinesis.put_record(StreamName="untimed", PartitionKey="k", Data=json.dumps(order(1)).encode())
    deadline = time.monotonic() + DEADLINE_S
    while True:
        described = kinesis.describe_channel(ChannelARN=channel["ChannelARN"])["ChannelDescription"]
        if described["ChannelStatus"] == "FAILED" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check("channel table: a schema without a timestamptz partition column is FAILED with the reason",
          described["ChannelStatus"] == "FAILED" and "placed_at" in described.get("ChannelStatusReason", "")
          and "timestamptz" in described.get("ChannelStatusReason", ""), described)
    check("channel table: no table made for it", lake.table("untimed") is None)
    kinesis.delete_channel(ChannelARN=channel["ChannelARN"])


def wait_status(kinesis, arn, status):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        described = kinesis.describe_channel(ChannelARN=arn)["ChannelDescription"]
        if described["ChannelStatus"] == status or time.monotonic() > deadline:
            return described
        time.sleep(0.5)


def missing_namespace(lake, kinesis):
    """A channel to a namespace that does not exist is FAILED with the reason; once the
    namespace is made, an update restarts its delivery and the records arrive."""
    stream_arn = on_demand_stream(kinesis, "returns")
    destination = lake.destination("returns")
    destination["S3TablesConfigurationList"][0]["Namespace"] = "returns"
    channel = lake.create_channel(kinesis, "returns-to-lakehouse", stream_arn, "returns",
                                  S3TablesDestinationConfiguration=destination)
    wait_active(kinesis, channel["ChannelARN"])
    sent = [order(i) for i in range(20)]
    put_orders(kinesis, "returns", sent)
    described = wait_status(kinesis, channel["ChannelARN"], "FAILED")
    check("channel table: a missing namespace is FAILED with the reason",
          described["ChannelStatus"] == "FAILED" and "namespace" in described.get("ChannelStatusReason", ""),
          described)
    lake.tables.create_namespace(tableBucketARN=lake.bucket_arn, namespace=["returns"])
    kinesis.update_channel(ChannelARN=channel["ChannelARN"],
                           S3TablesDestinationConfiguration={"DataFreshnessInSeconds": 1})
    check("channel table: ACTIVE again after the update",
          wait_status(kinesis, channel["ChannelARN"], "ACTIVE")["ChannelStatus"] == "ACTIVE")
    deadline = time.monotonic() + DEADLINE_S
    while True:
        location = None
        try:
            location = lake.tables.get_table_metadata_location(
                tableBucketARN=lake.bucket_arn, namespace="returns", name="returns").get("metadataLocation")
        except lake.tables.exceptions.NotFoundException:
            pass
        rows = StaticTable.from_metadata(location, properties=lake.read_properties()).scan().to_arrow().to_pylist() \
            if location else []
        if len(rows) >= len(sent) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check("channel table: the records put while it was FAILED arrive once",
          sorted(r["order_id"] for r in rows) == list(range(len(sent))), len(rows))


def table_without_metadata(lake, kinesis):
    """A table made in the bucket but never given metadata (a creation cut short) is
    completed by the channel, not refused."""
    lake.tables.create_table(tableBucketARN=lake.bucket_arn, namespace="sales", name="refunds", format="ICEBERG")
    stream_arn = on_demand_stream(kinesis, "refunds")
    channel = lake.create_channel(kinesis, "refunds-to-lakehouse", stream_arn, "refunds")
    wait_active(kinesis, channel["ChannelARN"])
    sent = [order(i) for i in range(10)]
    put_orders(kinesis, "refunds", sent)
    _, rows = lake.rows("refunds", len(sent))
    check("channel table: a table without metadata gets its first metadata and the rows",
          sorted(r["order_id"] for r in rows) == list(range(len(sent))), len(rows))


def commit_then_crash(work, s3, lake):
    """A broker that stops right after its first table commit, before saving the batch's
    progress: after the restart the batch is delivered again and recognized, not appended
    twice."""
    broker = broker_process(work, s3, "crashing", "--crash-after-table-commit")
    kinesis = broker.client()
    stream_arn = on_demand_stream(kinesis, "payments")
    channel = lake.create_channel(kinesis, "payments-to-lakehouse", stream_arn, "payments")
    wait_active(kinesis, channel["ChannelARN"])
    sent = [order(i) for i in range(120)]
    put_orders(kinesis, "payments", sent)
    try:
        code = broker.process.wait(timeout=DEADLINE_S)
    except Exception:
        broker.kill_9()
        code = None
    check("channel table: the broker stopped right after its first commit", code == 101, code)
    table = lake.table("payments")
    committed = len(table.scan().to_arrow()) if table else 0
    check("channel table: the first commit is in the table", 0 < committed <= len(sent), committed)
    broker = broker_process(work, s3, "crashing")
    try:
        kinesis = broker.client()
        # One more record on every shard: a shard's worker delivers the batch it had pending
        # (the committed one, for one shard) before anything put later, so once every
        # shard's last record is a row, every pending batch was handled.
        shards = kinesis.list_shards(StreamName="payments")["Shards"]
        last = [order(len(sent) + n) for n in range(len(shards))]
        for shard, record in zip(shards, last):
            kinesis.put_record(StreamName="payments", PartitionKey="last", Data=json.dumps(record).encode(),
                               ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"])
        want = len(sent) + len(last)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            table = lake.table("payments")
            ids = [r["order_id"] for r in table.scan().to_arrow().to_pylist()] if table else []
            if set(range(want)) <= set(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        check("channel table: after the crash, every record exactly once",
              sorted(ids) == list(range(want)), (len(ids), len(set(ids)), want))
        batches = [s.summary.additional_properties.get("brook.batch") for s in table.metadata.snapshots] if table else []
        check("channel table: no batch committed twice", len(batches) == len(set(batches)), batches)
    finally:
        broker.stop()


def main():
    work = tempfile.mkdtemp(prefix="brook-channel-tables-")
    s3 = S3Server(os.path.join(work, "moto.log"))
    broker = None
    try:
        lake = Lakehouse(s3)
        broker = broker_process(work, s3, "data")
        kinesis = broker.client()
        stream_arn = orders_table(lake, kinesis)
        schema_evolution(lake, kinesis)
        snapshot_expiry(lake, kinesis)
        refusals(lake, broker, stream_arn)
        schema_without_the_partition_column(lake, kinesis)
        missing_namespace(lake, kinesis)
        table_without_metadata(lake, kinesis)
        broker.stop()
        broker = None
        commit_then_crash(work, s3, lake)
    finally:
        if broker:
            broker.stop()
        s3.stop()
    brook_process.finish(work, "channel tables (boto3, pyiceberg)")


main()
