"""Helpers of `make e2e` that need more than kubectl and the shell.

    e2e.py breakages NAMESPACE      every case of tests/manifests/breakages.yaml refused by the
                                     API server (server-side dry-run) with its field and words
    e2e.py put ENDPOINT STREAM N OUT put N records one by one; write the acknowledged ones to OUT
    e2e.py verify ENDPOINT STREAM ACKED...
                                     every acknowledged record is in the stream exactly once, in
                                     its shard's order, with its data
    e2e.py put-until ENDPOINT STREAM STOPFILE REPORT
                                     put one record at a time until STOPFILE exists; write the
                                     acknowledged records and the failures to REPORT (JSON)
    e2e.py load ENDPOINT STREAM RATE STOPFILE
                                     offer about RATE records/s with PutRecords until STOPFILE
                                     exists (refused records are not retried)
    e2e.py queue QUEUE_ARN ACKED ENDPOINT...
                                     consumers, one per ENDPOINT (different broker pods), receive
                                     and acknowledge until every record in ACKED (put's output)
                                     was acknowledged once; fails on a duplicate or a stranger
    e2e.py receive PORT OUT          a Firehose HTTP endpoint on 0.0.0.0:PORT: every request's
                                     path, headers and records appended to OUT (JSON lines)
    e2e.py delivered OUT PATH KEY ACKED...
                                     every acknowledged record arrived at PATH, with the access
                                     key KEY and a request id in the body and the header

Credentials and region come from the usual AWS_* variables.
"""

import base64
import copy
import gzip
import http.server
import json
import os
import subprocess
import sys
import time

import boto3
import botocore.config
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kinesis(endpoint, attempts=1):
    config = botocore.config.Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=10,
    )
    return boto3.client("kinesis", endpoint_url=endpoint, config=config)


def examples():
    documents = []
    folder = os.path.join(ROOT, "examples")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".yaml"):
            with open(os.path.join(folder, name)) as f:
                documents += [d for d in yaml.safe_load_all(f) if d]
    return documents


def broken(case, documents):
    manifest = copy.deepcopy(
        next(
            d
            for d in documents
            if d["kind"] == case["kind"] and d["metadata"]["name"] == case["name"]
        )
    )
    pointer = case.get("set") or case.get("remove")
    *parents, key = pointer.strip("/").split("/")
    target = manifest
    for part in parents:
        target = target[part]
    if "set" in case:
        target[key] = case["value"]
    else:
        del target[key]
    return manifest


def breakages(namespace):
    with open(os.path.join(ROOT, "tests/manifests/breakages.yaml")) as f:
        cases = yaml.safe_load(f)
    documents = examples()
    failures = []
    for case in cases:
        manifest = broken(case, documents)
        result = subprocess.run(
            [os.environ.get("KUBECTL", "kubectl"), "-n", namespace, "create",
             "--dry-run=server", "-o", "name", "-f", "-"],
            input=yaml.safe_dump(manifest),
            capture_output=True,
            text=True,
        )
        said = result.stderr.strip()
        what = f"{case['kind']} {case.get('set') or case.get('remove')}"
        if result.returncode == 0:
            failures.append(f"admitted: {what}")
        elif case["message"] not in said or case["field"] not in said:
            failures.append(f"{what}: refused without {case['field']!r} and {case['message']!r}: {said}")
        else:
            print(f"refused as expected: {what}: {said.splitlines()[0][:160]}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print(f"{len(cases) - len(failures)} of {len(cases)} broken manifests refused with their message")
    return 1 if failures else 0


def put(endpoint, stream, count, out):
    client = kinesis(endpoint, attempts=5)
    acknowledged = []
    for i in range(int(count)):
        data = f"record-{i}-{time.time_ns()}".encode()
        answer = client.put_record(StreamName=stream, PartitionKey=f"key-{i % 17}", Data=data)
        acknowledged.append(
            {"shard": answer["ShardId"], "sequence": answer["SequenceNumber"], "data": data.decode()}
        )
    with open(out, "w") as f:
        json.dump(acknowledged, f)
    print(f"{len(acknowledged)} records acknowledged")
    return 0


def read_shard(client, stream, shard):
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = []
    while iterator:
        answer = client.get_records(ShardIterator=iterator, Limit=10000)
        records += answer["Records"]
        # An open shard's iterator never ends: stop once it is caught up.
        if not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
            break
        iterator = answer.get("NextShardIterator")
    return records


def verify(endpoint, stream, *acked_files):
    acknowledged = []
    # Each file is one producer's puts, acknowledged one after the other: their order within
    # a file is the order to find in each shard (the files' names say nothing of their time).
    runs = []
    for path in acked_files:
        with open(path) as f:
            saved = json.load(f)
        run = saved["acknowledged"] if isinstance(saved, dict) else saved
        runs.append(run)
        acknowledged += run
    client = kinesis(endpoint, attempts=5)
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    stored = {}
    for shard in shards:
        for record in read_shard(client, stream, shard):
            stored.setdefault(record["SequenceNumber"], []).append(
                (shard, record["Data"].decode(errors="replace"))
            )
    problems = []
    for record in acknowledged:
        copies = stored.get(record["sequence"], [])
        if len(copies) != 1:
            problems.append(f"{record['sequence']}: {len(copies)} copies")
        elif copies[0] != (record["shard"], record["data"]):
            problems.append(f"{record['sequence']}: {copies[0]} instead of {record}")
    for run in runs:
        by_shard = {}
        for record in run:
            by_shard.setdefault(record["shard"], []).append(int(record["sequence"]))
        for shard, sequences in by_shard.items():
            if sequences != sorted(sequences):
                problems.append(f"{shard}: acknowledged out of order")
    for problem in problems[:20]:
        print(f"FAIL: {problem}", file=sys.stderr)
    print(
        f"{len(acknowledged) - len(problems)} of {len(acknowledged)} acknowledged records read back "
        f"once, intact, from {len(shards)} shards"
    )
    return 1 if problems else 0


def put_until(endpoint, stream, stop_file, report):
    client = kinesis(endpoint, attempts=1)
    acknowledged, failures, i = [], [], 0
    while not os.path.exists(stop_file):
        data = f"roll-{i}-{time.time_ns()}".encode()
        try:
            answer = client.put_record(StreamName=stream, PartitionKey=f"roll-{i % 13}", Data=data)
            acknowledged.append(
                {"shard": answer["ShardId"], "sequence": answer["SequenceNumber"], "data": data.decode()}
            )
        except Exception as error:  # every failure a client sees counts, whatever its kind
            # A service error by its Kinesis error code; anything else (a refused connection)
            # by its exception's name.
            # (a read timeout has a `response` attribute that is None).
            code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code")
            failures.append(code or type(error).__name__)
            time.sleep(0.2)
        i += 1
    with open(report, "w") as f:
        json.dump({"acknowledged": acknowledged, "failures": failures}, f)
    return 0


def load(endpoint, stream, rate, stop_file):
    client = kinesis(endpoint, attempts=1)
    batch, per_batch = 0, 10
    interval = per_batch / float(rate)
    while not os.path.exists(stop_file):
        started = time.monotonic()
        records = [{"PartitionKey": f"load-{batch}-{i}", "Data": b"x" * 64} for i in range(per_batch)]
        try:
            client.put_records(StreamName=stream, Records=records)
        except Exception:  # a refused or failed call is load the autoscaler must see anyway
            pass
        batch += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return 0


def receive(port, out):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = json.loads(body)
            line = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "requestId": request["requestId"],
                "records": [base64.b64decode(r["data"]).decode(errors="replace") for r in request["records"]],
            }
            with open(out, "a") as f:
                f.write(json.dumps(line) + "\n")
            answer = json.dumps({"requestId": request["requestId"], "timestamp": int(time.time() * 1000)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("0.0.0.0", int(port)), Handler).serve_forever()


def delivered(out, path, key, *acked_files):
    expected = set()
    for name in acked_files:
        with open(name) as f:
            saved = json.load(f)
        expected |= {r["data"] for r in (saved["acknowledged"] if isinstance(saved, dict) else saved)}
    arrived, problems = set(), []
    if os.path.exists(out):
        with open(out) as f:
            for line in f:
                request = json.loads(line)
                if request["path"] != path:
                    continue
                if request["headers"].get("x-amz-firehose-access-key") != key:
                    problems.append(f"access key {request['headers'].get('x-amz-firehose-access-key')!r}")
                if request["headers"].get("x-amz-firehose-request-id") != request["requestId"]:
                    problems.append("the request id header and body differ")
                arrived |= set(request["records"])
    missing = expected - arrived
    for problem in problems[:5]:
        print(f"FAIL: {problem}", file=sys.stderr)
    print(f"{len(expected) - len(missing)} of {len(expected)} records arrived at {path}")
    return 1 if missing or problems else 0


def queue(queue_arn, acked_file, *endpoints):
    with open(acked_file) as f:
        expected = {record["sequence"]: record["data"] for record in json.load(f)}
    clients = [kinesis(endpoint, attempts=5) for endpoint in endpoints]
    acknowledged = []
    deadline = time.time() + 180
    turn = 0
    while len(set(acknowledged)) < len(expected) and time.time() < deadline:
        client = clients[turn % len(clients)]
        turn += 1
        records = client.receive_queue_records(QueueARN=queue_arn, WaitTimeSeconds=2)["QueueRecords"]
        if not records:
            continue
        answer = client.acknowledge_queue_records(
            QueueARN=queue_arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in records])
        done = {entry["ReceiptHandle"] for entry in answer["Successful"]}
        for record in records:
            if record["ReceiptHandle"] in done:
                acknowledged.append(record["RecordId"])
                if expected.get(record["RecordId"]) != record["Data"].decode():
                    print(f"record {record['RecordId']} is not one that was put", file=sys.stderr)
                    return 1
    twice = len(acknowledged) - len(set(acknowledged))
    missing = len(expected) - len(set(acknowledged))
    print(f"{len(set(acknowledged))} of {len(expected)} records received and acknowledged through "
          f"{len(clients)} pods, {twice} twice, {missing} missing")
    return 1 if twice or missing else 0


def main(argv):
    commands = {
        "load": load,
        "breakages": breakages,
        "put": put,
        "verify": verify,
        "put-until": put_until,
        "receive": receive,
        "queue": queue,
        "delivered": delivered,
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
