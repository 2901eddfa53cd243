#!/usr/bin/env bash
# make e2e: the operator's whole flow against a real API server.
#
# Default: the cluster KUBECONFIG names (kind, k3d, any). Installs the CRDs and the operator
# (image E2E_IMAGE), applies examples/, waits for Ready, puts and gets records through the
# Stream's Service, scales, deletes. Skips with a message when no cluster answers.
#
# E2E_NO_NODES=1: an API server without nodes (kube-apiserver and etcd from
# KUBEBUILDER_ASSETS or PATH, as envtest uses them). Checks CRD installation, schema
# validation of good and bad manifests, the objects the operator creates, status conditions,
# owner references, finalizers and deletion; skips the data path.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
KUBECTL="${KUBECTL:-kubectl}"
BROOK="${BROOK:-$ROOT/target/debug/brook}"
AWS="${AWS:-$ROOT/.tools/venv/bin/aws}"
NAMESPACE="${E2E_NAMESPACE:-brook-e2e}"
VERSION="$("$BROOK" version | awk '{print $2}')"
IMAGE="${E2E_IMAGE:-ghcr.io/brook-dev/brook:$VERSION}"
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Waits until `$@` succeeds, for up to $TIMEOUT seconds (default 120).
eventually() {
  local deadline=$((SECONDS + ${TIMEOUT:-120}))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for: $*"
    sleep 1
  done
}

jsonpath() { "$KUBECTL" -n "$NAMESPACE" get "$1" -o "jsonpath=$2"; }

condition_is() { # resource type status [reason]
  local got
  got="$(jsonpath "$1" "{.status.conditions[?(@.type==\"$2\")].status}/{.status.conditions[?(@.type==\"$2\")].reason}")"
  [[ "$got" == "$3/${4:-}"* ]]
}

wait_established() {
  for crd in streams.brook.dev deliverystreams.brook.dev consumers.brook.dev; do
    "$KUBECTL" wait --for condition=established --timeout=60s "crd/$crd"
  done
}

# Manifests the schema must refuse, each with a phrase of the message a user sees.
check_schema_validation() {
  step "schema validation: examples pass, bad manifests are refused with a clear message"
  "$KUBECTL" -n "$NAMESPACE" apply --dry-run=server -f examples/ >/dev/null
  local bad
  while IFS='|' read -r spec expected; do
    bad="apiVersion: brook.dev/v1alpha1
kind: Stream
metadata: {name: bad}
spec: $spec"
    if out="$(printf '%s\n' "$bad" | "$KUBECTL" -n "$NAMESPACE" apply --dry-run=server -f - 2>&1)"; then
      fail "accepted spec $spec"
    fi
    grep -q "$expected" <<<"$out" || fail "spec $spec refused without '$expected': $out"
    echo "refused as expected: $spec"
  done <<'EOF'
{shards: 0}|spec.shards
{retentionHours: 10}|spec.retentionHours
{durability: Sometimes}|spec.durability
{autoscaling: {enabled: true, minShards: 9, maxShards: 2, prometheus: {url: "http://p:9090"}}}|minShards must not exceed maxShards
{autoscaling: {enabled: true}}|autoscaling needs a prometheus source
EOF
}

start_api_server() {
  local assets="${KUBEBUILDER_ASSETS:-}"
  APISERVER="$(command -v "${assets:+$assets/}kube-apiserver" || true)"
  ETCD="$(command -v "${assets:+$assets/}etcd" || true)"
  if [ -z "$APISERVER" ] || [ -z "$ETCD" ]; then
    echo "SKIP: E2E_NO_NODES=1 needs kube-apiserver and etcd (set KUBEBUILDER_ASSETS to a folder with both, as setup-envtest installs them)."
    exit 0
  fi
  local etcd_port=23790 api_port=26443
  "$ETCD" --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls http://127.0.0.1:23800 \
    >"$WORK/etcd.log" 2>&1 &
  PIDS+=($!)
  openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null
  echo "e2e-token,e2e-admin,e2e-admin,system:masters" >"$WORK/tokens.csv"
  "$APISERVER" --etcd-servers "http://127.0.0.1:$etcd_port" --bind-address 127.0.0.1 \
    --secure-port "$api_port" --cert-dir "$WORK/certs" --token-auth-file "$WORK/tokens.csv" \
    --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/24 \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$WORK/sa.key" \
    --service-account-signing-key-file "$WORK/sa.key" --disable-admission-plugins ServiceAccount \
    >"$WORK/apiserver.log" 2>&1 &
  PIDS+=($!)
  export KUBECONFIG="$WORK/kubeconfig"
  "$KUBECTL" config set-cluster e2e --server "https://127.0.0.1:$api_port" --insecure-skip-tls-verify=true >/dev/null
  "$KUBECTL" config set-credentials e2e --token e2e-token >/dev/null
  "$KUBECTL" config set-context e2e --cluster e2e --user e2e >/dev/null
  "$KUBECTL" config use-context e2e >/dev/null
  TIMEOUT=60 eventually "$KUBECTL" get --raw /readyz
}

run_without_nodes() {
  start_api_server
  step "CRDs install and become established"
  "$KUBECTL" apply -f crds/
  wait_established
  "$KUBECTL" create namespace "$NAMESPACE"
  check_schema_validation

  step "the operator, run against the API server from outside, builds a Stream's objects"
  "$BROOK" operator --metrics-listen 127.0.0.1:0 --watch-namespace "$NAMESPACE" \
    --recheck-seconds 5 >"$WORK/operator.log" 2>&1 &
  PIDS+=($!)
  "$KUBECTL" -n "$NAMESPACE" apply -f examples/stream.yaml -f examples/consumer.yaml
  eventually jsonpath statefulset/clicks '{.metadata.name}'
  for object in statefulset/clicks service/clicks service/clicks-brokers \
    configmap/clicks-broker-config poddisruptionbudget/clicks secret/clicks-broker-admin; do
    eventually jsonpath "$object" '{.metadata.name}'
    [ "$(jsonpath "$object" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" = "Stream/clicks" ] \
      || fail "$object is not owned by Stream clicks"
  done
  [ "$(jsonpath stream/clicks '{.metadata.finalizers[0]}')" = "brook.dev/stream-cleanup" ] || fail "no finalizer"
  eventually condition_is stream/clicks Progressing True WaitingForBrokers
  eventually condition_is stream/clicks Ready False WaitingForBrokers
  eventually condition_is consumer/clicks-dashboard Ready False StreamNotReady
  [ "$(jsonpath statefulset/clicks '{.spec.replicas}')" = 3 ] || fail "replicas"
  [ "$(jsonpath stream/clicks '{.status.observedGeneration}')" = "$(jsonpath stream/clicks '{.metadata.generation}')" ] \
    || fail "observedGeneration"

  step "deletion: no brokers answer, the finalizers are released and the objects go"
  "$KUBECTL" -n "$NAMESPACE" delete consumer/clicks-dashboard stream/clicks --timeout=60s
  "$KUBECTL" -n "$NAMESPACE" get statefulset/clicks >/dev/null 2>&1 && fail "StatefulSet left behind"
  "$KUBECTL" delete namespace "$NAMESPACE" --timeout=60s
  echo "PASS: e2e without nodes"
}

run_on_cluster() {
  if ! "$KUBECTL" cluster-info --request-timeout=5s >/dev/null 2>&1; then
    echo "SKIP: no Kubernetes cluster answers through KUBECONFIG=${KUBECONFIG:-~/.kube/config}; start kind or k3d (or run E2E_NO_NODES=1 make e2e)."
    exit 0
  fi
  step "install the CRDs and the operator (image $IMAGE)"
  "$KUBECTL" apply -f crds/
  wait_established
  "$BROOK" install --image "$IMAGE" | "$KUBECTL" apply -f -
  "$KUBECTL" -n brook-system rollout status deployment/brook-operator --timeout=180s
  "$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f -
  check_schema_validation

  step "apply examples/ and wait for Ready"
  "$KUBECTL" -n "$NAMESPACE" apply -f examples/stream.yaml -f examples/consumer.yaml
  "$KUBECTL" -n "$NAMESPACE" wait --for=condition=Ready stream/clicks --timeout=300s
  "$KUBECTL" -n "$NAMESPACE" wait --for=condition=Ready consumer/clicks-dashboard --timeout=120s
  [ "$(jsonpath stream/clicks '{.status.openShards}')" = 4 ] || fail "open shards"

  step "put and get records through the Stream's Service"
  "$KUBECTL" -n "$NAMESPACE" port-forward service/clicks 24567:4567 >"$WORK/port-forward.log" 2>&1 &
  PIDS+=($!)
  export AWS_ACCESS_KEY_ID=AKIACLICKSPRODUCER1 AWS_SECRET_ACCESS_KEY=replace-with-a-long-random-secret AWS_DEFAULT_REGION=us-east-1
  local endpoint=http://127.0.0.1:24567
  eventually "$AWS" --endpoint-url "$endpoint" kinesis list-streams
  "$AWS" --endpoint-url "$endpoint" kinesis put-record --stream-name clicks --partition-key user-1 --data aGVsbG8= >/dev/null
  local shard iterator
  shard="$("$AWS" --endpoint-url "$endpoint" kinesis put-record --stream-name clicks --partition-key user-1 --data d29ybGQ= --query ShardId --output text)"
  iterator="$("$AWS" --endpoint-url "$endpoint" kinesis get-shard-iterator --stream-name clicks --shard-id "$shard" --shard-iterator-type TRIM_HORIZON --query ShardIterator --output text)"
  [ "$("$AWS" --endpoint-url "$endpoint" kinesis get-records --shard-iterator "$iterator" --query 'length(Records)' --output text)" = 2 ] \
    || fail "records read back"
  if "$AWS" --endpoint-url "$endpoint" kinesis update-shard-count --stream-name clicks --target-shard-count 8 --scaling-type UNIFORM_SCALING 2>"$WORK/refused"; then
    fail "a managed broker accepted UpdateShardCount from a client"
  fi
  grep -q "kubectl -n $NAMESPACE edit stream clicks" "$WORK/refused" || fail "refusal does not name the resource"

  step "scale through the Stream resource"
  "$KUBECTL" -n "$NAMESPACE" patch stream/clicks --type merge -p '{"spec":{"shards":6}}'
  TIMEOUT=180 eventually sh -c "[ \"\$($KUBECTL -n $NAMESPACE get stream/clicks -o jsonpath='{.status.openShards}')\" = 6 ]"

  step "delete"
  "$KUBECTL" -n "$NAMESPACE" delete -f examples/consumer.yaml -f examples/stream.yaml --timeout=180s
  "$KUBECTL" delete namespace "$NAMESPACE" --timeout=180s
  echo "PASS: e2e on the cluster"
}

if [ "${E2E_NO_NODES:-}" = 1 ]; then
  run_without_nodes
else
  run_on_cluster
fi
