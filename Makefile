# Brook: the two commands a new machine needs are `make run` and `make test`.

CARGO ?= cargo
BROOK := target/release/brook

.PHONY: build run test unit lint fmt crds e2e bench

build:
	$(CARGO) build --release --locked

run: build
	@echo "The Kinesis broker (brook broker) lands with its issue; until then brook serves its CRDs:"
	$(BROOK) version
	$(BROOK) crd | head -n 20

## test: lint, then every unit and integration test.
test: lint unit

unit:
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

## crds: regenerate crds/ from the Rust types (a test fails while it is stale).
crds:
	$(CARGO) run --quiet --locked -- crd --out-dir crds

e2e:
	@echo "make e2e: the end-to-end flow arrives with the operator; nothing to run yet."

## bench: PutRecords/GetRecords throughput and PutRecord latency, fsync on and off.
bench: build
	$(BROOK) bench --seconds 5
