"""moto's server (from PyPI) on a loopback port: the S3-compatible server, with S3 Tables and
the Glue Schema Registry, that the channel tests deliver to."""

import os
import socket
import subprocess
import time

import boto3

MOTO = os.environ.get("MOTO_SERVER", ".tools/venv/bin/moto_server")
S3_KEY = {"AWS_ACCESS_KEY_ID": "brook-channel-test", "AWS_SECRET_ACCESS_KEY": "brook-channel-secret"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's server on a loopback port, with a client for reading objects back."""

    def __init__(self, log_path):
        self.port = free_port()
        self.log = open(log_path, "a")
        self.process = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self.log, stderr=self.log)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.client = self.service("s3")
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)

    def service(self, name):
        """A boto3 client of service `name` at the server."""
        return boto3.client(name, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_KEY["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_KEY["AWS_SECRET_ACCESS_KEY"])

    def objects(self, bucket, prefix=""):
        """{key: body} of every object under `prefix`."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = self.client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return out

    def stop(self):
        self.process.terminate()
        self.process.wait()
