"""What the boto3 scripts share: a tally of checks, a check of answers against the model's
output shapes, and brook broker processes on ephemeral loopback ports."""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading

import boto3
from botocore.exceptions import ClientError

BROOK = "target/debug/brook"
tally = {"passed": 0, "failed": 0}
# Operations whose answers were checked against the model, by name.
ANSWERED = set()
# Which operations' answers are checked: those whose name contains one of these words.
CHECKED_WORDS = set()


def check(name, ok, detail=""):
    if ok:
        tally["passed"] += 1
    else:
        tally["failed"] += 1
        print(f"FAIL {name}: {detail}", file=sys.stderr)


def conforms(value, shape, path, problems):
    """Appends to `problems` where `value` (as botocore parsed it) breaks the model's `shape`."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: not a structure")
            return
        for name in shape.required_members:
            if name not in value:
                problems.append(f"{path}.{name}: required, missing")
        for name, member in value.items():
            if name == "ResponseMetadata":
                continue
            if name not in shape.members:
                problems.append(f"{path}.{name}: not in the model")
            else:
                conforms(member, shape.members[name], f"{path}.{name}", problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: not a list")
            return
        for i, item in enumerate(value):
            conforms(item, shape.member, f"{path}[{i}]", problems)
    elif kind == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: not a map")
    elif kind == "string":
        if not isinstance(value, str) or (shape.enum and value not in shape.enum):
            problems.append(f"{path}: {value!r} is not a string of the shape")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: {value!r} is not an integer")
    elif kind == "timestamp":
        if not hasattr(value, "timestamp"):
            problems.append(f"{path}: {value!r} is not a timestamp")
    elif kind == "blob":
        if not isinstance(value, (bytes, bytearray)):
            problems.append(f"{path}: not a blob")


def check_output_shape(http_response, parsed, model, **_):
    """Every answer of a checked operation has the output shape the model documents."""
    if not any(word in model.name for word in CHECKED_WORDS) or http_response.status_code != 200:
        return
    ANSWERED.add(model.name)
    problems = []
    if model.output_shape is not None:
        conforms(parsed, model.output_shape, model.name, problems)
    check(f"output shape of {model.name}", not problems, problems)


class Broker:
    """A broker process on an ephemeral loopback port over `data_dir`."""

    def __init__(self, data_dir, log_path, *extra, env=None):
        self.log = open(log_path, "a")
        self.process = subprocess.Popen(
            [BROOK, "broker", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--data-dir", data_dir, "--stream-transition-ms", "0", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        first = self.process.stdout.readline()
        found = re.findall(r"https?://[0-9.:]+", first)
        if len(found) < 2:
            raise RuntimeError(f"the broker did not start: {first!r}")
        self.endpoint, self.metrics = found[0], found[1]
        # Keep draining stdout so the broker never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def client(self, key="AKIDEXAMPLE", secret="secret"):
        client = boto3.client("kinesis", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id=key, aws_secret_access_key=secret)
        client.meta.events.register("after-call.kinesis", check_output_shape)
        return client

    def kill_9(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        self.process.terminate()
        self.process.wait()


def free_ports(count):
    """`count` distinct loopback ports free now."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cluster_pod(work, ordinal, internal, *extra, env=None):
    """Pod `ordinal` of a cluster whose internal ports are `internal`, on its own data dir."""
    peers = ",".join(f"http://127.0.0.1:{p}" for p in internal)
    return Broker(os.path.join(work, f"pod-{ordinal}"), os.path.join(work, f"pod-{ordinal}.log"),
                  "--cluster-peers", peers, "--pod-ordinal", str(ordinal),
                  "--cluster-listen", f"127.0.0.1:{internal[ordinal]}", *extra, env=env)


def error_code(call):
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"]
    return None


def on_demand_stream(kinesis, name):
    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def create_queue(kinesis, name, stream_arn, position="TRIM_HORIZON", **attributes):
    """Creates a queue on `stream_arn` and returns its ARN once it is ACTIVE."""
    queue = kinesis.create_queue(
        QueueName=name,
        StreamConfigurationList=[{"StreamARN": stream_arn, "StartingPosition": {"Type": position}}],
        **({"QueueAttributes": attributes} if attributes else {}))["QueueDescription"]
    while queue["QueueStatus"] != "ACTIVE":
        queue = kinesis.describe_queue(QueueARN=queue["QueueARN"])["QueueDescription"]
    return queue["QueueARN"]


def finish(work, title):
    """Prints the logs of `work` if a check failed, removes it, prints the tally and exits."""
    if tally["failed"]:
        for name in sorted(os.listdir(work)):
            if name.endswith(".log"):
                print(open(os.path.join(work, name)).read()[-3000:], file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{title}: {tally['passed']} passed, {tally['failed']} failed")
    sys.exit(1 if tally["failed"] else 0)
