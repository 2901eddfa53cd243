"""Aggregates records with the AWS aggregation library (`aws-kinesis-agg`, the format the
Kinesis Producer Library writes), for the de-aggregation tests.

    kpl_aggregate.py '[{"key": "k", "hash": null, "data": "<base64>"}, ...]'

prints the aggregated record's data, base64.
"""

import base64
import json
import sys

from aws_kinesis_agg.aggregator import RecordAggregator


def main(argv):
    aggregator = RecordAggregator()
    for record in json.loads(argv[1]):
        aggregator.add_user_record(record["key"], base64.b64decode(record["data"]), record.get("hash"))
    _, _, data = aggregator.clear_and_get().get_contents()
    print(base64.b64encode(data).decode())


if __name__ == "__main__":
    main(sys.argv)
