#!/usr/bin/env bash
# Runs the boto3 test against a fresh broker.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.tools/venv/bin/python}
source tests/support/start-broker.sh
"$PYTHON" tests/python/subscribe_to_shard.py
# The queue test starts (and kills) brokers of its own.
BROOK=${BROOK:-target/debug/brook} "$PYTHON" tests/python/queues.py
# Three brokers playing one Stream's pods: a queue over shards spread across them.
BROOK=${BROOK:-target/debug/brook} "$PYTHON" tests/python/queue_cluster.py
# The channel test starts brokers and an S3-compatible server (moto's) of its own.
BROOK=${BROOK:-target/debug/brook} "$PYTHON" tests/python/channels.py
# Three brokers playing one Stream's pods: a channel over shards spread across them.
BROOK=${BROOK:-target/debug/brook} "$PYTHON" tests/python/channel_cluster.py
# Channels to Iceberg tables: moto's server plays S3 Tables and the Glue Schema Registry.
BROOK=${BROOK:-target/debug/brook} "$PYTHON" tests/python/channel_tables.py
