# Brook: the two commands a new machine needs are `make run` and `make test`.

CARGO ?= cargo
BROOK := target/release/brook
TOOLS := .tools
AWS_CLI := $(TOOLS)/venv/bin/aws
# Pinned so the tests stay reproducible (newer JS SDK releases drop Node 20).
AWSCLI_VERSION := 1.46.3
BOTO3_VERSION := 1.44.8
HELM_SDK_VERSION := 0.2.2
KPL_AGG_VERSION := 1.2.3
PROTOBUF_VERSION := 7.36.2
CRAMJAM_VERSION := 2.14.0
# moto's S3 server: the S3-compatible server the channel test delivers to (the bench-compare
# peers use the same version as a Kinesis emulator).
MOTO_VERSION := 5.2.5
# pyiceberg (with pyarrow) reads back the Iceberg tables channels append to.
PYICEBERG_VERSION := 0.12.0
NODE_SDK_VERSION := 3.1143.0
PYTHON_TOOLS := $(TOOLS)/venv/.installed-awscli-$(AWSCLI_VERSION)-boto3-$(BOTO3_VERSION)-helm-$(HELM_SDK_VERSION)-kpl-$(KPL_AGG_VERSION)-protobuf-$(PROTOBUF_VERSION)-cramjam-$(CRAMJAM_VERSION)-moto-$(MOTO_VERSION)-pyiceberg-$(PYICEBERG_VERSION)
NODE_SDK := $(TOOLS)/node/node_modules/@aws-sdk/client-kinesis

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
## The one image of the operator and the brokers; `brook install` and the operator default to it.
IMAGE ?= localhost/brook:$(VERSION)

.PHONY: build run test unit lint fmt crds generate system-tools e2e image bench bench-compare bench-peers debug-build cli-test node-test python-test

build:
	$(CARGO) build --release --locked

## run: the broker on its embedded defaults (data in ./brook-data, API on 127.0.0.1:4567).
run: build
	@echo "Kinesis API on http://127.0.0.1:4567, metrics on http://127.0.0.1:9100/metrics. Try:"
	@echo "  aws --endpoint-url http://127.0.0.1:4567 kinesis create-stream --stream-name demo --shard-count 2"
	@echo "  aws --endpoint-url http://127.0.0.1:4567 kinesis put-record --stream-name demo --partition-key k --data aGVsbG8="
	@echo "  aws --endpoint-url http://127.0.0.1:4567 kinesis list-shards --stream-name demo"
	@echo "(any credentials work until authentication is configured; Ctrl-C stops it cleanly)"
	$(BROOK) broker

## test: lint, the AWS CLI and Node SDK checks, then every Rust unit and integration test.
test: lint cli-test node-test python-test unit

debug-build:
	$(CARGO) build --locked

$(PYTHON_TOOLS):
	test -x $(TOOLS)/venv/bin/pip || python3 -m venv $(TOOLS)/venv || (apt-get update && apt-get install -y python3-venv && python3 -m venv $(TOOLS)/venv)
	$(TOOLS)/venv/bin/pip install --quiet awscli==$(AWSCLI_VERSION) boto3==$(BOTO3_VERSION) helm-python-sdk==$(HELM_SDK_VERSION) \
		aws-kinesis-agg==$(KPL_AGG_VERSION) protobuf==$(PROTOBUF_VERSION) cramjam==$(CRAMJAM_VERSION) \
		"moto[server]==$(MOTO_VERSION)" "pyiceberg[pyarrow]==$(PYICEBERG_VERSION)"
	touch $@

## system-tools: Lua (runs the Argo CD health check) and promtool (checks the alert rules).
system-tools:
	command -v lua5.4 >/dev/null && command -v promtool >/dev/null || \
		(apt-get update && apt-get install -y --no-install-recommends lua5.4 prometheus)

$(NODE_SDK):
	command -v npm >/dev/null || (apt-get update && apt-get install -y nodejs npm)
	npm install --prefix $(TOOLS)/node --no-audit --no-fund --silent @aws-sdk/client-kinesis@$(NODE_SDK_VERSION)

## cli-test: the AWS CLI against a broker.
cli-test: $(PYTHON_TOOLS) debug-build
	AWS=$(AWS_CLI) bash tests/cli/kinesis-cli.sh
	AWS=$(AWS_CLI) bash tests/cli/kinesis-cli-auth.sh

## python-test: boto3 against brokers: subscribe_to_shard, queues, channels (to moto's S3 server).
python-test: $(PYTHON_TOOLS) debug-build
	bash tests/python/run.sh

## node-test: the AWS SDK for JavaScript v3 over h2c against a broker.
node-test: $(NODE_SDK) debug-build
	bash tests/node/run.sh

unit: $(PYTHON_TOOLS) system-tools
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --no-fail-fast; \
	else \
		$(CARGO) test --locked --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

## generate: regenerate crds/, deploy/operator.yaml, deploy/argocd/ and the chart's generated
## parts from the Rust sources (a test fails while any is stale).
generate:
	$(CARGO) run --quiet --locked -- generate --root .
crds: generate

PEERS := .bench/peers
FERROKINESIS_VERSION := 0.7.0
KINESALITE_VERSION := 3.3.3
KINESIS_LOCAL_VERSION := 0.6.2

## bench-peers: install the emulators Brook is compared with (into .bench/, which git ignores).
bench-peers:
	test -x $(PEERS)/ferrokinesis/bin/ferrokinesis || $(CARGO) install ferrokinesis --version $(FERROKINESIS_VERSION) --locked --root $(PEERS)/ferrokinesis
	test -d $(PEERS)/node/node_modules/kinesis-local || npm install --prefix $(PEERS)/node --no-audit --no-fund --silent kinesalite@$(KINESALITE_VERSION) kinesis-local@$(KINESIS_LOCAL_VERSION)
	test -x $(PEERS)/venv/bin/moto_server || (python3 -m venv $(PEERS)/venv && $(PEERS)/venv/bin/pip install --quiet "moto[server]==$(MOTO_VERSION)" matplotlib)
	$(PEERS)/venv/bin/python -c "import matplotlib" 2>/dev/null || $(PEERS)/venv/bin/pip install --quiet matplotlib

## bench-compare: Brook side by side with ferrokinesis, kinesalite, kinesis-mock and moto.
bench-compare: build bench-peers
	$(BROOK) bench-compare --peers-dir $(PEERS) --runs 3 --seconds 2 --report docs/benchmarks.md --chart-data .bench/compare.jsonl
	$(PEERS)/venv/bin/python src/bench/chart.py .bench/compare.jsonl docs/benchmarks.png

## image: build $(IMAGE) with docker, podman or buildah (from the Dockerfile), or, with
## K8S_LAB=<k8s-lab folder> and no container engine, import the built binary into the lab.
image: debug-build
	bash tests/e2e/image.sh $(IMAGE)

## e2e: Brook's whole story on the cluster KUBECONFIG names (fails when none answers): the
## image, the CRDs, the operator in the cluster, Streams, Consumers, data, failures, deletion.
e2e: debug-build $(PYTHON_TOOLS) system-tools
	AWS=$(AWS_CLI) bash tests/e2e/run.sh

## bench: PutRecords/GetRecords throughput and PutRecord latency, fsync on and off; then
## delivery (stream to S3 with and without GZIP, a backlog, end-to-end latency).
bench: build
	$(BROOK) bench --seconds 5
	$(CARGO) test --release --locked --test bench_delivery -- --ignored --nocapture
