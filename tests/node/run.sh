#!/usr/bin/env bash
# Runs the Node SDK test against a fresh broker.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/support/start-broker.sh
NODE_NO_WARNINGS=1 NODE_PATH=.tools/node/node_modules node tests/node/h2c.cjs
