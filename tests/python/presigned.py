"""Sends one Kinesis JSON request signed in the query string by botocore's SigV4QueryAuth (a
presigned request) and prints the answer as JSON.

botocore's query signer is made for query-protocol services and moves a body's parameters
into the query string; Kinesis takes JSON bodies, so the subclass below keeps the body where
it is and lets botocore canonicalize and sign everything else. The payload is signed as the
body's SHA-256, or as UNSIGNED-PAYLOAD with `--unsigned-payload`.

usage: presigned.py ENDPOINT OPERATION BODY KEY SECRET EXPIRES [ARG ...], each ARG either
`NAME=VALUE`, a header added after signing, or `--send=BODY`, a body sent instead of the
signed one (a tampered request), or `--unsigned-payload`.
"""

import json
import sys
import urllib.error
import urllib.request

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials



class KeepBody(SigV4QueryAuth):
    unsigned_payload = False

    def _modify_request_before_signing(self, request):
        body = request.data
        request.data = b""
        super()._modify_request_before_signing(request)
        request.data = body

    def payload(self, request):
        return "UNSIGNED-PAYLOAD" if self.unsigned_payload else super().payload(request)


endpoint, operation, body, key, secret, expires = sys.argv[1:7]
sent_body = None
extra = {}
for arg in sys.argv[7:]:
    if arg == "--unsigned-payload":
        KeepBody.unsigned_payload = True
    elif arg.startswith("--send="):
        sent_body = arg[len("--send="):].encode()
    else:
        name, value = arg.split("=", 1)
        extra[name] = value
request = AWSRequest(
    method="POST",
    url=endpoint + "/",
    data=body.encode(),
    headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Kinesis_20131202." + operation,
    },
)
KeepBody(Credentials(key, secret), "kinesis", "us-east-1", expires=int(expires)).add_auth(request)
prepared = request.prepare()
headers = dict(prepared.headers)
headers.update(extra)
body = prepared.body if sent_body is None else sent_body
if isinstance(body, str):
    body = body.encode()
headers["Content-Length"] = str(len(body))
sent = urllib.request.Request(prepared.url, data=body, headers=headers, method="POST")
try:
    with urllib.request.urlopen(sent) as answer:
        status, text = answer.status, answer.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
print(json.dumps({"status": status, "body": text, "query": prepared.url.split("?", 1)[1]}))
