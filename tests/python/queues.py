"""Kinesis queues through boto3 (whose model has the queue operations) against brook broker
processes this script starts: competing consumers, visibility timeouts, dead letters and
restore, long polling, a queue across a reshard, and the queue's state after `kill -9`."""

import json
import os
import tempfile
import threading
import time
import urllib.request

import brook_process
from brook_process import create_queue, ANSWERED, Broker, check, error_code, on_demand_stream

brook_process.BROOK = os.environ.get("BROOK", "target/debug/brook")
brook_process.CHECKED_WORDS.add("Queue")


def put(kinesis, stream, count, prefix):
    sequences = {}
    for i in range(count):
        answer = kinesis.put_record(StreamName=stream, PartitionKey=f"{prefix}-{i % 7}",
                                    Data=f"{prefix}-{i}".encode())
        sequences[answer["SequenceNumber"]] = f"{prefix}-{i}"
    return sequences


def receive(kinesis, queue_arn, wait=1, **options):
    return kinesis.receive_queue_records(QueueARN=queue_arn, WaitTimeSeconds=wait,
                                         **options)["QueueRecords"]


def ack(kinesis, queue_arn, records):
    return kinesis.acknowledge_queue_records(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in records])


def queue_definition(kinesis, stream_arn):
    queue_arn = create_queue(kinesis, "orders", stream_arn, VisibilityTimeoutSeconds=45,
                             DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": 3})
    described = kinesis.describe_queue(QueueARN=queue_arn)["QueueDescription"]
    check("queue describe", described["QueueName"] == "orders"
          and described["QueueAttributes"]["VisibilityTimeoutSeconds"] == 45
          and described["QueueAttributes"]["DeadLetterConfiguration"] == {"TargetType": "BUILT_IN", "MaxReceiveCount": 3}
          and described["StreamConfigurationList"][0]["StreamARN"] == stream_arn, described)
    listed = kinesis.list_queues(StreamFilter=[{"StreamARN": stream_arn}])["QueueSummaries"]
    check("queue list", [q["QueueARN"] for q in listed] == [queue_arn], listed)
    updated = kinesis.update_queue(QueueARN=queue_arn, QueueAttributes={"VisibilityTimeoutSeconds": 30})
    check("queue update", updated["QueueDescription"]["QueueAttributes"]["VisibilityTimeoutSeconds"] == 30
          and updated["QueueDescription"]["QueueAttributes"]["DeadLetterConfiguration"]["MaxReceiveCount"] == 3,
          updated["QueueDescription"])
    kinesis.tag_resource(ResourceARN=queue_arn, Tags={"team": "billing"})
    tags = kinesis.list_tags_for_resource(ResourceARN=queue_arn)["Tags"]
    check("queue tags", tags == [{"Key": "team", "Value": "billing"}], tags)
    kinesis.untag_resource(ResourceARN=queue_arn, TagKeys=["team"])
    check("queue untag", kinesis.list_tags_for_resource(ResourceARN=queue_arn)["Tags"] == [])
    check("queue name taken", error_code(lambda: create_queue(kinesis, "orders", stream_arn)) == "ResourceInUseException")
    check("queue stream with queues stays ON_DEMAND",
          error_code(lambda: kinesis.update_stream_mode(
              StreamARN=stream_arn, StreamModeDetails={"StreamMode": "PROVISIONED"})) == "ResourceInUseException")
    check("queue stream with queues not deleted",
          error_code(lambda: kinesis.delete_stream(StreamName="queued")) == "ResourceInUseException")
    return queue_arn


def consumer_limit(kinesis):
    """A queue counts as a registered consumer: 20 consumers and queues per stream."""
    stream_arn = on_demand_stream(kinesis, "crowded")
    for i in range(19):
        kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName=f"c{i}")
    queue_arn = create_queue(kinesis, "crowded-q", stream_arn)
    check("queue the twentieth consumer may be a queue",
          kinesis.describe_queue(QueueARN=queue_arn)["QueueDescription"]["QueueStatus"] == "ACTIVE")
    check("queue one more queue is over the limit",
          error_code(lambda: create_queue(kinesis, "crowded-q2", stream_arn)) == "LimitExceededException")
    check("queue one more consumer is over the limit",
          error_code(lambda: kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName="c19"))
          == "LimitExceededException")


def competing_consumers(broker, kinesis, queue_arn):
    written = put(kinesis, "queued", 300, "work")
    received = []
    lock = threading.Lock()

    def consume():
        client = broker.client()
        while True:
            with lock:
                if len(received) >= len(written):
                    return
            records = receive(client, queue_arn)
            if not records:
                continue
            answer = ack(client, queue_arn, records)
            with lock:
                received.extend(r["RecordId"] for r in records)
            if answer["Failed"]:
                check("queue acknowledgement", False, answer["Failed"])

    workers = [threading.Thread(target=consume) for _ in range(4)]
    deadline = time.time() + 120
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0, deadline - time.time()))
    check("queue competing consumers receive every record once",
          sorted(received) == sorted(written), f"{len(received)} received of {len(written)}, "
          f"{len(received) - len(set(received))} twice")
    check("queue empty after acknowledgements", receive(kinesis, queue_arn) == [])


def visibility(kinesis, queue_arn):
    put(kinesis, "queued", 1, "visible")
    first = receive(kinesis, queue_arn, wait=5)
    check("queue receive one", len(first) == 1 and first[0]["ReceiveCount"] == 1, first)
    check("queue in flight record invisible", receive(kinesis, queue_arn) == [])
    kinesis.update_queue_records_visibility(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": first[0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}])
    again = receive(kinesis, queue_arn, wait=5)
    check("queue visible again after visibility 0",
          [r["RecordId"] for r in again] == [first[0]["RecordId"]] and again[0]["ReceiveCount"] == 2
          and again[0]["ReceiptHandle"] != first[0]["ReceiptHandle"]
          and again[0]["FirstReceiveTimestamp"] == first[0]["FirstReceiveTimestamp"], again)
    stale = ack(kinesis, queue_arn, first)
    check("queue stale receipt refused per entry",
          stale["Successful"] == [] and stale["Failed"][0]["ErrorCode"] == "InvalidArgumentException", stale)
    # A short timeout: the long poll returns once it passes, with the record again.
    kinesis.update_queue_records_visibility(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": again[0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 1}])
    started = time.time()
    third = receive(kinesis, queue_arn, wait=10)
    check("queue record reappears after its visibility timeout",
          [r["RecordId"] for r in third] == [first[0]["RecordId"]] and third[0]["ReceiveCount"] == 3
          and time.time() - started >= 0.5, (third, time.time() - started))
    check("queue acknowledge", ack(kinesis, queue_arn, third)["Successful"] != [])


def dead_letters(kinesis, stream_arn):
    queue_arn = create_queue(kinesis, "retries", stream_arn, position="LATEST",
                             DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": 2})
    put(kinesis, "queued", 2, "poison")
    counts = []
    for _ in range(2):
        records = receive(kinesis, queue_arn, wait=5, VisibilityTimeoutSeconds=0)
        counts.append(sorted(r["ReceiveCount"] for r in records))
    check("queue redelivered up to MaxReceiveCount", counts == [[1, 1], [2, 2]], counts)
    check("queue dead letters leave the queue", receive(kinesis, queue_arn) == [])
    dead = kinesis.receive_dead_letter_queue_records(QueueARN=queue_arn, WaitTimeSeconds=5)["QueueRecords"]
    check("queue dead letters received", len(dead) == 2, dead)
    kinesis.update_dead_letter_queue_records_visibility(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": dead[1]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}])
    seen_again = kinesis.receive_dead_letter_queue_records(QueueARN=queue_arn, WaitTimeSeconds=5)["QueueRecords"]
    check("queue dead letter visible again after its visibility change",
          [r["RecordId"] for r in seen_again] == [dead[1]["RecordId"]], seen_again)
    dead[1] = seen_again[0] if seen_again else dead[1]
    normal_ack = ack(kinesis, queue_arn, dead[:1])
    check("queue dead letter not acknowledged as a queue record", normal_ack["Failed"] != [], normal_ack)
    restored = kinesis.restore_dead_letter_queue_records(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": dead[0]["ReceiptHandle"]}])
    check("queue restore", len(restored["Successful"]) == 1, restored)
    back = receive(kinesis, queue_arn, wait=5)
    check("queue restored record received from count 1",
          [r["RecordId"] for r in back] == [dead[0]["RecordId"]] and back[0]["ReceiveCount"] == 1, back)
    ack(kinesis, queue_arn, back)
    done = kinesis.acknowledge_dead_letter_queue_records(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": dead[1]["ReceiptHandle"]}])
    check("queue dead letter acknowledged", len(done["Successful"]) == 1, done)
    check("queue no dead letters left",
          kinesis.receive_dead_letter_queue_records(QueueARN=queue_arn, WaitTimeSeconds=1)["QueueRecords"] == [])
    kinesis.delete_queue(QueueARN=queue_arn)
    gone = None
    for _ in range(200):
        gone = error_code(lambda: kinesis.describe_queue(QueueARN=queue_arn))
        if gone:
            break
        time.sleep(0.05)
    check("queue deleted", gone == "ResourceNotFoundException", gone)


def drain(kinesis, queue_arn):
    while True:
        records = receive(kinesis, queue_arn, wait=1, VisibilityTimeoutSeconds=0)
        if not records:
            return
        ack(kinesis, queue_arn, records)


def long_polling(broker, kinesis, queue_arn):
    drain(kinesis, queue_arn)
    answer = {}

    def wait_for_record():
        started = time.time()
        answer["records"] = receive(broker.client(), queue_arn, wait=20)
        answer["seconds"] = time.time() - started

    waiter = threading.Thread(target=wait_for_record)
    waiter.start()
    put(kinesis, "queued", 1, "polled")
    waiter.join(30)
    records = answer.get("records", [])
    check("queue long poll returns early with the record",
          len(records) == 1 and answer["seconds"] < 15, answer)
    ack(kinesis, queue_arn, records)


def across_a_reshard(kinesis, queue_arn):
    drain(kinesis, queue_arn)
    shards = kinesis.list_shards(StreamName="queued")["Shards"]
    parent = shards[0]
    low, high = int(parent["HashKeyRange"]["StartingHashKey"]), int(parent["HashKeyRange"]["EndingHashKey"])
    before = {}
    for i in range(10):
        answer = kinesis.put_record(StreamName="queued", PartitionKey="x", ExplicitHashKey=str(low + i),
                                    Data=b"before split")
        before[answer["SequenceNumber"]] = True
    kinesis.split_shard(StreamName="queued", ShardToSplit=parent["ShardId"],
                        NewStartingHashKey=str((low + high) // 2))
    kinesis.get_waiter("stream_exists").wait(StreamName="queued", WaiterConfig={"Delay": 1})
    after = {}
    for i in range(10):
        answer = kinesis.put_record(StreamName="queued", PartitionKey="x", ExplicitHashKey=str(low + i),
                                    Data=b"after split")
        after[answer["SequenceNumber"]] = True
    got = []
    for _ in range(20):
        records = receive(kinesis, queue_arn)
        ack(kinesis, queue_arn, records)
        got.extend(r["RecordId"] for r in records)
        if len(got) >= 20:
            break
    check("queue across a reshard: parent's then children's records",
          sorted(got) == sorted(list(before) + list(after)), got)
    parent_ids = set(before)
    first_child = min((i for i, r in enumerate(got) if r in after), default=len(got))
    check("queue follows the lineage", all(r in parent_ids for r in got[:first_child])
          and first_child == len(before), got)


def queue_policies(work):
    credentials = os.path.join(work, "credentials")
    with open(credentials, "w") as f:
        f.write("AKIDOWNER=owner-secret\nAKIDOTHER=other-secret\n")
    broker = Broker(os.path.join(work, "signed"), os.path.join(work, "signed.log"),
                    "--credentials", credentials)
    try:
        owner = broker.client("AKIDOWNER", "owner-secret")
        other = broker.client("AKIDOTHER", "other-secret")
        stream_arn = on_demand_stream(owner, "guarded")
        queue_arn = create_queue(owner, "guarded-q", stream_arn)
        owner.put_resource_policy(ResourceARN=queue_arn, Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "AKIDOWNER"}, "Action": "kinesis:*", "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": "AKIDOTHER"}, "Action": "kinesis:DescribeQueue", "Resource": queue_arn},
            ]}))
        put(owner, "guarded", 1, "guarded")
        check("queue policy: the owner receives", len(receive(owner, queue_arn, wait=5)) == 1)
        check("queue policy: another key describes",
              other.describe_queue(QueueARN=queue_arn)["QueueDescription"]["QueueName"] == "guarded-q")
        check("queue policy: another key may not receive",
              error_code(lambda: receive(other, queue_arn)) == "AccessDeniedException")
        check("queue policy: a wrong secret is refused",
              error_code(lambda: receive(broker.client("AKIDOWNER", "wrong"), queue_arn)) is not None)
    finally:
        broker.stop()


def retention_expiry(work):
    broker = Broker(os.path.join(work, "clocked"), os.path.join(work, "clocked.log"), "--test-clock")
    try:
        kinesis = broker.client()
        stream_arn = on_demand_stream(kinesis, "aging")
        queue_arn = create_queue(kinesis, "aging-q", stream_arn)
        put(kinesis, "aging", 3, "old")
        in_flight = receive(kinesis, queue_arn, wait=5, Limit=1, VisibilityTimeoutSeconds=60)
        check("queue retention: one record in flight", len(in_flight) == 1, in_flight)
        metrics = urllib.request.urlopen(f"{broker.metrics}/metrics").read().decode()
        check("queue metrics show the record in flight",
              'brook_queue_records{queue="aging-q",state="in_flight",stream="aging"} 1' in metrics
              and 'brook_queue_records{queue="aging-q",state="dead_letter",stream="aging"} 0' in metrics,
              [line for line in metrics.splitlines() if "queue_records" in line])
        # 25 hours later every one of them is past the stream's 24-hour retention: neither the
        # one in flight nor the two never received are delivered.
        urllib.request.urlopen(urllib.request.Request(
            f"{broker.metrics}/debug/advance-clock?ms={25 * 3600 * 1000}", method="POST"))
        check("queue retention: expired records are not delivered", receive(kinesis, queue_arn) == [])
        fresh = put(kinesis, "aging", 1, "new")
        check("queue retention: a new record still is",
              [r["RecordId"] for r in receive(kinesis, queue_arn, wait=5)] == list(fresh))
    finally:
        broker.stop()


def state_after_kill_9(work):
    data = os.path.join(work, "killed")
    broker = Broker(data, os.path.join(work, "killed.log"))
    try:
        queue_arn, written, taken, in_flight, poison = before_the_kill(broker)
    finally:
        broker.kill_9()

    broker = Broker(data, os.path.join(work, "killed.log"))
    try:
        after_restart(broker, queue_arn, written, taken, in_flight, poison)
    finally:
        broker.stop()


def before_the_kill(broker):
    kinesis = broker.client()
    stream_arn = on_demand_stream(kinesis, "durable")
    queue_arn = create_queue(kinesis, "durable-q", stream_arn,
                             DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": 1})
    written = put(kinesis, "durable", 30, "kept")
    taken = []
    while len(taken) < 20:
        taken.extend(receive(kinesis, queue_arn, wait=5, Limit=10, VisibilityTimeoutSeconds=600))
    acknowledged, in_flight = taken[:10], taken[10:20]
    ack(kinesis, queue_arn, acknowledged)
    # One record becomes a dead letter: received once (the maximum) and visible again.
    poison = receive(kinesis, queue_arn, wait=5, Limit=1, VisibilityTimeoutSeconds=0)
    check("queue dead letter before the kill",
          len(kinesis.receive_dead_letter_queue_records(QueueARN=queue_arn, WaitTimeSeconds=5,
                                                        VisibilityTimeoutSeconds=0)["QueueRecords"]) == 1)
    return queue_arn, written, taken, in_flight, poison


def after_restart(broker, queue_arn, written, taken, in_flight, poison):
    kinesis = broker.client()
    rest = []
    while True:
        records = receive(kinesis, queue_arn, wait=1)
        if not records:
            break
        rest.extend(records)
        ack(kinesis, queue_arn, records)
    taken_ids = {r["RecordId"] for r in taken} | {r["RecordId"] for r in poison}
    check("queue after kill -9: acknowledged and in-flight records not delivered again",
          sorted(r["RecordId"] for r in rest) == sorted(set(written) - taken_ids),
          (len(rest), len(set(written) - taken_ids)))
    resumed = ack(kinesis, queue_arn, in_flight)
    check("queue after kill -9: receipts of in-flight records still acknowledge",
          len(resumed["Successful"]) == 10, resumed)
    dead = kinesis.receive_dead_letter_queue_records(QueueARN=queue_arn, WaitTimeSeconds=5)["QueueRecords"]
    check("queue after kill -9: the dead letter is still one",
          [r["RecordId"] for r in dead] == [r["RecordId"] for r in poison], dead)


def main():
    work = tempfile.mkdtemp(prefix="brook-queues-")
    broker = Broker(os.path.join(work, "data"), os.path.join(work, "broker.log"))
    try:
        kinesis = broker.client()
        kinesis.create_stream(StreamName="fixed", ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName="fixed", WaiterConfig={"Delay": 1})
        fixed_arn = kinesis.describe_stream_summary(StreamName="fixed")["StreamDescriptionSummary"]["StreamARN"]
        check("queue refused on a provisioned stream",
              error_code(lambda: create_queue(kinesis, "nope", fixed_arn)) == "InvalidArgumentException")
        stream_arn = on_demand_stream(kinesis, "queued")
        queue_arn = queue_definition(kinesis, stream_arn)
        consumer_limit(kinesis)
        competing_consumers(broker, kinesis, queue_arn)
        visibility(kinesis, queue_arn)
        dead_letters(kinesis, stream_arn)
        long_polling(broker, kinesis, queue_arn)
        across_a_reshard(kinesis, queue_arn)
        state_after_kill_9(work)
        retention_expiry(work)
        queue_policies(work)
        queue_operations = {name for name in kinesis.meta.service_model.operation_names if "Queue" in name}
        check("queue every queue operation of the model answered and checked",
              len(queue_operations) == 12 and ANSWERED == queue_operations,
              sorted(queue_operations - ANSWERED))
    finally:
        broker.stop()
    brook_process.finish(work, "queues (boto3)")


main()
