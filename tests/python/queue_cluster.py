"""A queue on a stream whose shards are spread over three broker processes playing one Stream's
pods (boto3 1.44, whose model has the queue operations): queue calls through any pod, records
stored on every pod received exactly once by competing consumers on different pods, a queue
starting at LATEST, long polling woken by a record committed on another pod, a reshard whose
children land on other pods, and a pod killed with `kill -9` and restarted — nothing
acknowledged to a producer is lost, and the other pods' shards keep being delivered."""

import json
import os
import tempfile
import threading
import time
import urllib.request

import brook_process
from brook_process import check, cluster_pod, create_queue, error_code, free_ports, on_demand_stream

brook_process.BROOK = os.environ.get("BROOK", "target/debug/brook")
brook_process.CHECKED_WORDS.add("Queue")

STREAM = "spread"


class Pods:
    """Three pods of one cluster, each on its own data directory and internal port."""

    def __init__(self, work):
        self.work = work
        self.internal = free_ports(3)
        self.pods = [self.start(i) for i in range(3)]

    def start(self, ordinal):
        return cluster_pod(self.work, ordinal, self.internal)

    def restart(self, ordinal):
        self.pods[ordinal] = self.start(ordinal)

    def stop(self):
        for pod in self.pods:
            pod.stop()


def placement(pod):
    request = urllib.request.Request(
        pod.endpoint, data=json.dumps({"StreamName": STREAM}).encode(), method="POST",
        headers={"X-Amz-Target": "BrookCluster_20261130.DescribePlacement",
                 "Content-Type": "application/x-amz-json-1.1", "X-Amz-Date": "20261130T000000Z",
                 # The brokers run without credentials: any SigV4-form signature is accepted.
                 "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/kinesis/"
                                  "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
                                  "Signature=0000"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        shards = json.load(answer)["Streams"][0]["Shards"]
    return {s["ShardId"]: s for s in shards}


def wait_until(what, condition, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    check(what, False, f"not within {seconds} s")
    return False


def put_all(kinesis, count, prefix):
    """Puts `count` records over many keys, retrying what a pod could not store; returns
    what was acknowledged: the data by sequence number, and each sequence number's shard."""
    pending = [{"PartitionKey": f"{prefix}-{i % 31}", "Data": f"{prefix}-{i}".encode()} for i in range(count)]
    acknowledged, shard_of = {}, {}
    deadline = time.time() + 60
    while pending and time.time() < deadline:
        try:
            answer = kinesis.put_records(StreamName=STREAM, Records=pending)
        except Exception:  # a pod restarting: the whole request again
            time.sleep(0.2)
            continue
        retry = []
        for entry, result in zip(pending, answer["Records"]):
            if "SequenceNumber" in result:
                acknowledged[result["SequenceNumber"]] = entry["Data"].decode()
                shard_of[result["SequenceNumber"]] = result["ShardId"]
            else:
                retry.append(entry)
        pending = retry
    check(f"queue cluster every record of {prefix} acknowledged", not pending, f"{len(pending)} left")
    return acknowledged, shard_of


def consume(clients, queue_arn, expected, seconds=120):
    """Competing consumers, one per client, receive and acknowledge until `expected` records
    were acknowledged; returns every acknowledged RecordId (duplicates included)."""
    acknowledged = []
    lock = threading.Lock()
    deadline = time.time() + seconds

    def worker(client):
        while time.time() < deadline:
            with lock:
                if len(set(acknowledged)) >= expected:
                    return
            try:
                records = client.receive_queue_records(QueueARN=queue_arn, WaitTimeSeconds=1)["QueueRecords"]
                if not records:
                    continue
                answer = client.acknowledge_queue_records(
                    QueueARN=queue_arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in records])
            except Exception:  # the pod this consumer talks to is restarting
                time.sleep(0.2)
                continue
            done = {s["ReceiptHandle"] for s in answer["Successful"]}
            with lock:
                acknowledged.extend(r["RecordId"] for r in records if r["ReceiptHandle"] in done)

    threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0, deadline - time.time()) + 5)
    return acknowledged


def competing_consumers_on_every_pod(pods, queue_arn):
    kinesis = pods.pods[1].client()
    written, _ = put_all(kinesis, 400, "work")
    owners = {s["Owner"] for s in placement(pods.pods[0]).values()}
    check("queue cluster the stream's shards are on every pod", owners == {0, 1, 2}, owners)
    clients = [pods.pods[i % 3].client() for i in range(6)]
    acknowledged = consume(clients, queue_arn, len(written))
    check("queue cluster consumers on every pod acknowledge every record exactly once",
          sorted(acknowledged) == sorted(written),
          f"{len(set(acknowledged))} of {len(written)}, {len(acknowledged) - len(set(acknowledged))} twice, "
          f"{len(set(acknowledged) - set(written))} unknown")
    check("queue cluster empty afterwards", kinesis.receive_queue_records(
        QueueARN=queue_arn, WaitTimeSeconds=1)["QueueRecords"] == [])


def latest_queue(pods, stream_arn, work_queue_arn):
    """A queue starting at LATEST skips what every pod's shards held before it (the
    TRIM_HORIZON queue gets the new records too)."""
    kinesis = pods.pods[2].client()
    queue_arn = create_queue(kinesis, "latest", stream_arn, position="LATEST")
    written, _ = put_all(kinesis, 60, "after")
    acknowledged = consume([pods.pods[i].client() for i in range(3)], queue_arn, len(written), seconds=60)
    check("queue cluster a LATEST queue delivers only what was put after it, once",
          sorted(acknowledged) == sorted(written), f"{len(acknowledged)} of {len(written)}")
    kinesis.delete_queue(QueueARN=queue_arn)
    acknowledged = consume([pods.pods[i].client() for i in range(3)], work_queue_arn, len(written), seconds=60)
    check("queue cluster the other queue delivers them too, once", sorted(acknowledged) == sorted(written),
          f"{len(acknowledged)} of {len(written)}")


def hash_ranges(kinesis):
    return {s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
            for s in kinesis.list_shards(StreamName=STREAM)["Shards"]}


def long_poll_woken_by_another_pod(pods, queue_arn):
    """A receive long-polling through pod 2 returns as soon as a record lands on a shard
    another pod owns."""
    kinesis = pods.pods[0].client()
    remote = next(s for s in placement(pods.pods[0]).values() if s["Owner"] == 1 and s["ClosedMs"] is None)
    low, _ = hash_ranges(kinesis)[remote["ShardId"]]
    answer = {}

    def wait_for_record():
        started = time.time()
        answer["records"] = pods.pods[2].client().receive_queue_records(
            QueueARN=queue_arn, WaitTimeSeconds=20)["QueueRecords"]
        answer["seconds"] = time.time() - started

    waiter = threading.Thread(target=wait_for_record)
    waiter.start()
    # Gives the receive time to reach its wait, so the test shows the wake-up; should the
    # machine be slower than that, the receive finds the record at once and the check holds.
    time.sleep(1)
    kinesis.put_record(StreamName=STREAM, PartitionKey="polled", Data=b"polled", ExplicitHashKey=str(low))
    waiter.join(30)
    records = answer.get("records", [])
    check("queue cluster a long poll returns early with a record stored on another pod",
          len(records) == 1 and records[0]["Data"] == b"polled" and answer["seconds"] < 15, answer)
    kinesis.acknowledge_queue_records(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in records])


def across_a_reshard(pods, queue_arn):
    """Records before and after a split of a shard on pod 2 (its children placed by the
    placement function) are all delivered once."""
    kinesis = pods.pods[1].client()
    before, _ = put_all(kinesis, 100, "before")
    shards = placement(pods.pods[0])
    parent = next(s for s in shards.values() if s["Owner"] == 2 and s["ClosedMs"] is None)
    low, high = hash_ranges(kinesis)[parent["ShardId"]]
    kinesis.split_shard(StreamName=STREAM, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((low + high) // 2))
    wait_until("queue cluster split done", lambda: kinesis.describe_stream_summary(
        StreamName=STREAM)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
    children = [s for s in placement(pods.pods[0]).values() if s.get("ParentShardId") == parent["ShardId"]]
    check("queue cluster the children are placed", len(children) == 2, children)
    after, _ = put_all(kinesis, 100, "after-split")
    written = {**before, **after}
    acknowledged = consume([pods.pods[i].client() for i in range(3)], queue_arn, len(written))
    check("queue cluster every record across the reshard once", sorted(acknowledged) == sorted(written),
          f"{len(set(acknowledged))} of {len(written)}, {len(acknowledged) - len(set(acknowledged))} twice")


def a_pod_killed(pods, queue_arn):
    """Pod 2 is killed with kill -9 while consumers on pods 0 and 1 work: the records on the
    other pods' shards are delivered meanwhile, and pod 2's once it is back."""
    kinesis = pods.pods[0].client()
    written, shard_of = put_all(kinesis, 300, "killed")
    on_pod_2 = {s["ShardId"] for s in placement(pods.pods[0]).values() if s["Owner"] == 2}
    elsewhere = {seq for seq, shard in shard_of.items() if shard not in on_pod_2}
    check("queue cluster records on pod 2 and elsewhere", 0 < len(elsewhere) < len(written),
          f"{len(elsewhere)} of {len(written)} elsewhere")
    pods.pods[2].kill_9()
    meanwhile = consume([pods.pods[0].client(), pods.pods[1].client()], queue_arn, len(elsewhere))
    check("queue cluster while pod 2 is down, every record of the other pods' shards is delivered once",
          sorted(meanwhile) == sorted(elsewhere),
          f"{len(set(meanwhile) & elsewhere)} of {len(elsewhere)}, {len(set(meanwhile) - elsewhere)} others")
    pods.restart(2)
    rest = consume([pods.pods[i].client() for i in range(3)], queue_arn, len(written) - len(elsewhere))
    acknowledged = meanwhile + rest
    check("queue cluster after pod 2's restart every record was delivered once",
          sorted(acknowledged) == sorted(written),
          f"{len(set(acknowledged))} of {len(written)}, {len(acknowledged) - len(set(acknowledged))} twice")


def main():
    work = tempfile.mkdtemp(prefix="brook-queue-cluster-")
    pods = Pods(work)
    try:
        kinesis = pods.pods[1].client()
        stream_arn = on_demand_stream(kinesis, STREAM)
        wait_until("queue cluster every pod knows the stream", lambda: all(
            error_code(lambda p=p: p.client().describe_stream_summary(StreamName=STREAM)) is None
            for p in pods.pods))
        queue_arn = create_queue(pods.pods[2].client(), "work", stream_arn)
        described = pods.pods[1].client().describe_queue(QueueARN=queue_arn)["QueueDescription"]
        check("queue cluster a queue created through pod 2 is described through pod 1",
              described["QueueStatus"] == "ACTIVE" and described["QueueName"] == "work", described)
        listed = pods.pods[0].client().list_queues()["QueueSummaries"]
        check("queue cluster listed through pod 0", [q["QueueARN"] for q in listed] == [queue_arn], listed)
        competing_consumers_on_every_pod(pods, queue_arn)
        latest_queue(pods, stream_arn, queue_arn)
        long_poll_woken_by_another_pod(pods, queue_arn)
        across_a_reshard(pods, queue_arn)
        a_pod_killed(pods, queue_arn)
    finally:
        pods.stop()
    brook_process.finish(work, "queue cluster (boto3)")


main()
