#!/usr/bin/env bash
# make e2e: Brook's whole story on the Kubernetes cluster KUBECONFIG names (kind, k3d, the lab
# cluster, any). The operator runs in the cluster as a Deployment under its own ServiceAccount,
# installed with the Helm chart through Helm's own library (helm-python-sdk): an install of the
# previous chart, an upgrade that changes a CRD, `helm test`, and `helm uninstall` at the end;
# the brokers are the same image.
#
# Without a cluster that answers it fails: a skipped e2e is never reported as a passed one.
# Variables: E2E_IMAGE (default localhost/brook:<version>-<hash of the binary>), E2E_IMAGE_READY=1 (the image is
# already on the nodes; otherwise tests/e2e/image.sh makes it), E2E_DEBUG_IMAGE (an image with
# a shell, for the node debug pod that SIGKILLs a broker; default busybox:1.36), K8S_LAB (see
# image.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export KUBECTL="${KUBECTL:-kubectl}"
BROOK="${BROOK:-$ROOT/target/debug/brook}"
AWS="${AWS:-$ROOT/.tools/venv/bin/aws}"
PYTHON="${PYTHON:-$ROOT/.tools/venv/bin/python}"
VERSION="$("$BROOK" version | awk '{print $2}')"
# A tag per build, so a rebuilt binary reaches pods that ran an earlier build of this version.
IMAGE="${E2E_IMAGE:-localhost/brook:$VERSION-$(sha256sum "$BROOK" | cut -c1-12)}"
DEBUG_IMAGE="${E2E_DEBUG_IMAGE:-busybox:1.36}"
NS=brook-e2e
NS_GONE=brook-e2e-gone
OPERATOR_NS=brook-system
RECHECK=10
WORK="$(mktemp -d)"
PIDS=()
STARTED=$SECONDS

export AWS_ACCESS_KEY_ID=AKIACLICKSPRODUCER1 AWS_SECRET_ACCESS_KEY=replace-with-a-long-random-secret
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== [%4ss] %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  echo "--- operator warnings (leader, last 20)" >&2
  "$KUBECTL" -n "$OPERATOR_NS" logs "$(leader 2>/dev/null || echo deploy/brook-operator)" 2>/dev/null \
    | grep -v '"level":"INFO"' | tail -20 | cut -c1-400 >&2 || true
  echo "--- pods and events of $NS" >&2
  "$KUBECTL" -n "$NS" get pods,statefulsets,streams,consumers,deliverystreams -o wide >&2 2>/dev/null || true
  "$KUBECTL" -n "$NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -15 >&2 || true
  exit 1
}
k() { "$KUBECTL" "$@"; }
# Whether the output of `$2...` contains $1 (read whole: `| grep -q` under pipefail can fail
# the writer with SIGPIPE).
says() { local out; out="$("${@:2}" 2>&1)" && [[ "$out" == *"$1"* ]]; }
kn() { "$KUBECTL" -n "$NS" "$@"; }

# Waits until `$@` succeeds, for up to $TIMEOUT seconds (default 180); polls once a second.
eventually() {
  local deadline=$((SECONDS + ${TIMEOUT:-180}))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${TIMEOUT:-180}s waiting for: $*"
    sleep 1
  done
}
jsonpath() { "$KUBECTL" -n "${JSONPATH_NS:-$NS}" get "$1" -o "jsonpath=$2"; }
equals() { [ "$(jsonpath "$1" "$2")" = "$3" ]; }
leader() { "$KUBECTL" -n "$OPERATOR_NS" get lease brook-operator-leader -o 'jsonpath={.spec.holderIdentity}'; }
# A released Lease (an operator that stopped cleanly) has no holder until a replica takes it.
has_leader() { [ -n "$(leader 2>/dev/null)" ]; }
operator_metrics() { "$KUBECTL" get --raw "/api/v1/namespaces/$OPERATOR_NS/pods/$(leader):9090/proxy/metrics"; }
# The sum of a metric family's samples in the leader's /metrics.
metric_sum() { operator_metrics | awk -v name="$1" '$1 ~ "^"name"({|$)" {sum += $2} END {printf "%d\n", sum}'; }

# An endpoint for the API of a Service or pod (the Kinesis port 4567 unless a third argument
# names another): its cluster IP straight from this host where the cluster routes it there
# (kind does not), else a port-forward to the local port.
endpoint_of() { # kind/name local-port [port]
  local ip port="${3:-4567}"
  case "$1" in
    service/*) ip="$(jsonpath "$1" '{.spec.clusterIP}')" ;;
    pod/*) ip="$(jsonpath "$1" '{.status.podIP}')" ;;
  esac
  if curl -s -o /dev/null --max-time 3 "http://$ip:$port/"; then
    echo "http://$ip:$port"
    return
  fi
  "$KUBECTL" -n "$NS" port-forward "$1" "$2:$port" >"$WORK/port-forward-$2.log" 2>&1 &
  PIDS+=($!)
  TIMEOUT=30 eventually curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$2/"
  echo "http://127.0.0.1:$2"
}
aws_kinesis() { "$AWS" --endpoint-url "$ENDPOINT" kinesis "$@"; }
open_shards() { equals stream/"$1" '{.status.openShards}' "$2"; }
ready_generation() { # stream: Ready=True for its current generation
  [ "$(jsonpath "stream/$1" '{.status.conditions[?(@.type=="Ready")].status}/{.status.observedGeneration}')" = "True/$(jsonpath "stream/$1" '{.metadata.generation}')" ]
}

preflight() {
  if ! "$KUBECTL" version --request-timeout=5s >/dev/null 2>&1; then
    echo "FAIL: no Kubernetes cluster answers through KUBECONFIG=${KUBECONFIG:-~/.kube/config}." >&2
    echo "      Start one (kind, k3d, or the lab cluster) and point KUBECONFIG at it; make e2e never skips." >&2
    exit 1
  fi
  [ -x "$AWS" ] && [ -x "$PYTHON" ] || fail "the AWS CLI and boto3 are missing under .tools/ (make e2e installs them)"
  command -v curl >/dev/null || fail "curl is needed"
}

install() {
  step "image $IMAGE on the nodes"
  if [ "${E2E_IMAGE_READY:-}" != 1 ]; then
    bash tests/e2e/image.sh "$IMAGE" "$BROOK"
  fi

  step "1. helm install of the previous chart, then helm upgrade: the CRD change is applied"
  adopt_earlier_install
  # The operator's pods (and the helm test pod) must pass the restricted Pod Security Standard.
  k create namespace "$OPERATOR_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label --overwrite namespace "$OPERATOR_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
  # `brook install`'s plain manifests are admitted too (deploy/operator.yaml is its output).
  k apply --dry-run=server -f deploy/operator.yaml >/dev/null || fail "the API server refuses deploy/operator.yaml"
  # The previous chart: this one with a Stream CRD that lacks the Open printer column.
  local previous="$WORK/chart-previous"
  cp -r charts/brook "$previous"
  "$PYTHON" - "$previous/templates/crds/streams.brook.dev.yaml" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().split("\n")
start = lines.index("    - jsonPath: .status.openShards")
del lines[start:start + 3]
open(path, "w").write("\n".join(lines))
PY
  local values
  values="$(printf '{"image": {"repository": "%s", "tag": "%s"}, "replicaCount": 2, "operator": {"recheckSeconds": %s}}' \
    "${IMAGE%:*}" "${IMAGE##*:}" "$RECHECK")"
  helm_py install "$previous" brook "$OPERATOR_NS" "$values" --take-ownership >/dev/null || fail "helm install of the previous chart"
  [[ "$(printer_columns)" != *Open* ]] || fail "the previous chart's Stream CRD has the Open column"
  echo "previous chart installed: Stream columns $(printer_columns)"
  helm_py upgrade charts/brook brook "$OPERATOR_NS" "$values" >/dev/null || fail "helm upgrade"
  [[ "$(printer_columns)" == *Open* ]] || fail "helm upgrade did not apply the CRD change: $(printer_columns)"
  echo "upgraded: Stream columns $(printer_columns)"
  for crd in streams.brook.dev deliverystreams.brook.dev consumers.brook.dev; do
    k wait --for condition=established --timeout=60s "crd/$crd" >/dev/null
  done
  says "Open shards" k explain stream.spec.shards || fail "kubectl explain stream.spec.shards lacks the field's documentation"
  says streamName k explain consumer.spec || fail "kubectl explain consumer.spec"
  for kind in stream consumer deliverystream; do
    k get "$kind" -A >/dev/null 2>&1 || fail "kubectl get $kind"
  done

  step "the operator from the chart, under its own ServiceAccount; helm test"
  k -n "$OPERATOR_NS" rollout status deployment/brook-operator --timeout=300s >/dev/null || fail "the operator Deployment did not roll out"
  local account
  account="$(JSONPATH_NS=$OPERATOR_NS jsonpath deployment/brook-operator '{.spec.template.spec.serviceAccountName}')"
  [ "$account" = brook-operator ] || fail "the operator runs as '$account'"
  local as=system:serviceaccount:$OPERATOR_NS:brook-operator
  [ "$(k auth can-i list secrets --as "$as" -A)" = no ] || fail "the operator may list Secrets"
  [ "$(k auth can-i delete pods --as "$as" -A)" = no ] || fail "the operator may delete pods"
  [ "$(k auth can-i patch statefulsets --as "$as" -A)" = yes ] || fail "the operator may not patch StatefulSets"
  TIMEOUT=120 eventually has_leader
  helm_py test brook "$OPERATOR_NS" >/dev/null || fail "helm test: the operator does not answer /readyz through its Service"
  echo "operator Ready, leader $(leader); helm test passed"
}

helm_py() { "$PYTHON" tests/chart/helm.py "$@"; }
printer_columns() { k get crd streams.brook.dev -o 'jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}'; }

# A cluster that ran an earlier e2e (or a plain `brook install`) holds Brook's CRDs and maybe a
# plain operator install; the release is installed with --take-ownership (as docs/install.md
# tells users in that case) after the plain operator install is removed.
adopt_earlier_install() {
  helm_py uninstall brook "$OPERATOR_NS" >/dev/null 2>&1 || true
  if k -n "$OPERATOR_NS" get deployment brook-operator >/dev/null 2>&1; then
    "$BROOK" install --image "$IMAGE" | "$PYTHON" -c 'import sys; print("---".join(d for d in sys.stdin.read().split("---") if "kind: Namespace" not in d))' \
      | k delete --ignore-not-found -f - >/dev/null
  fi
}

autoscale() {
  step "9. autoscaling: a throttled Stream gets shards from a Prometheus scraping its broker, and gives them back"
  if ! node_is_this_host; then
    echo "SKIPPED: the node ($NODE_IP) is not this host, so a Prometheus here cannot be reached by the operator"
    return
  fi
  local node_ip="$NODE_IP"
  command -v prometheus >/dev/null || fail "prometheus is needed (make e2e installs it)"
  fresh_namespace "$NS"
  local port=19090
  kn apply -f - >/dev/null <<EOF
apiVersion: brook.dev/v1alpha1
kind: Stream
metadata: {name: elastic}
spec:
  shards: 1
  limits: {writeRecordsPerSecond: 50}
  brokers: {replicas: 1, storage: {size: 64Mi}}
  autoscaling:
    enabled: true
    minShards: 1
    maxShards: 4
    periodSeconds: 5
    scaleDownStabilizationSeconds: 20
    prometheus: {url: "http://$node_ip:$port", windowSeconds: 10}
EOF
  kn wait --for=condition=Ready stream/elastic --timeout=300s >/dev/null || fail "Stream elastic not Ready"
  local pod_ip
  pod_ip="$(jsonpath pod/elastic-0 '{.status.podIP}')"
  cat >"$WORK/prometheus.yml" <<EOF
global: {scrape_interval: 2s, evaluation_interval: 2s}
scrape_configs:
  - job_name: brook-broker
    static_configs:
      - targets: ["$pod_ip:9100"]
        labels: {namespace: $NS, pod: elastic-0}
EOF
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
    --web.listen-address="0.0.0.0:$port" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
  PIDS+=($!)
  TIMEOUT=60 eventually curl -sf "http://127.0.0.1:$port/-/ready"
  ENDPOINT="$(endpoint_of service/elastic 24569)"
  # About 150 records/s on one shard of 50/s.
  "$PYTHON" tests/e2e/e2e.py load "$ENDPOINT" elastic 150 "$WORK/stop-load" &
  PIDS+=($!)
  local begun=$SECONDS
  TIMEOUT=240 eventually sh -c "[ \"\$($KUBECTL -n $NS get stream elastic -o jsonpath='{.status.openShards}')\" -ge 2 ]"
  echo "scaled up to $(jsonpath stream/elastic '{.status.openShards}') shards $((SECONDS - begun)) s after the load began: $(jsonpath stream/elastic '{.status.autoscaling.reason}')"
  says event/ kn get events --field-selector reason=Autoscaled,involvedObject.name=elastic -o name || fail "no Autoscaled Event"
  equals stream/elastic '{.spec.shards}' 1 || fail "the autoscaler wrote spec.shards"
  [ "$(jsonpath stream/elastic '{.status.autoscaling.desiredShards}')" -ge 2 ] || fail "status.autoscaling.desiredShards"
  says elastic kn get stream elastic || fail "kubectl get stream"
  kn get stream elastic
  touch "$WORK/stop-load"
  begun=$SECONDS
  TIMEOUT=240 eventually open_shards elastic 1
  echo "back to 1 shard $((SECONDS - begun)) s after the load stopped (scale-down window 20 s): $(jsonpath stream/elastic '{.status.autoscaling.reason}')"
  kn delete stream/elastic --timeout=180s >/dev/null || fail "Stream elastic not deleted"
}

uninstall() {
  step "10. helm uninstall: the operator and its RBAC go, the CRDs (and so every Stream) stay"
  helm_py uninstall brook "$OPERATOR_NS" >/dev/null || fail "helm uninstall"
  TIMEOUT=120 eventually sh -c "! $KUBECTL -n $OPERATOR_NS get deployment brook-operator"
  ! k get clusterrole "brook-operator-$OPERATOR_NS" >/dev/null 2>&1 || fail "the ClusterRole outlived the release"
  ! k -n "$OPERATOR_NS" get serviceaccount brook-operator >/dev/null 2>&1 || fail "the ServiceAccount outlived the release"
  for crd in streams.brook.dev deliverystreams.brook.dev consumers.brook.dev; do
    k get crd "$crd" >/dev/null 2>&1 || fail "helm uninstall deleted CRD $crd (and with it every $crd object)"
  done
  echo "release gone; CRDs kept"
}

fresh_namespace() {
  if k get namespace "$1" >/dev/null 2>&1; then
    echo "removing $1 left by an earlier run"
    k delete namespace "$1" --timeout=300s >/dev/null || fail "namespace $1 from an earlier run is stuck"
  fi
  k create namespace "$1" >/dev/null
}

schema() {
  step "1. the real API server refuses every broken manifest with the message a user sees"
  fresh_namespace "$NS"
  "$PYTHON" tests/e2e/e2e.py breakages "$NS" | tail -1
  [ "${PIPESTATUS[0]}" = 0 ] || fail "a broken manifest was admitted or refused with another message"
  k -n "$NS" create --dry-run=server -f examples/ >/dev/null || fail "an example is refused"
  echo "every example admitted"
}

serve() {
  step "2. a Stream with 3 brokers and a Consumer become Ready"
  local begun=$SECONDS
  kn apply -f examples/stream.yaml -f examples/consumer.yaml >/dev/null
  kn wait --for=condition=Ready stream/clicks --timeout=300s >/dev/null || fail "Stream clicks not Ready"
  kn wait --for=condition=Ready consumer/clicks-dashboard --timeout=180s >/dev/null || fail "Consumer not Ready"
  echo "Stream and Consumer Ready $((SECONDS - begun)) s after kubectl apply"
  open_shards clicks 4 || fail "open shards $(jsonpath stream/clicks '{.status.openShards}'), want 4"
  # Ready means the stream was created on every pod; a pod may still be catching up with pod 0.
  TIMEOUT=180 eventually equals statefulset/clicks '{.status.readyReplicas}' 3
  equals stream/clicks '{.status.endpoint}' "http://clicks.$NS.svc:4567" || fail "status.endpoint"
  [[ "$(jsonpath stream/clicks '{.status.streamARN}')" == arn:aws:kinesis:*:stream/clicks ]] || fail "status.streamARN"
  [[ "$(jsonpath consumer/clicks-dashboard '{.status.consumerARN}')" == *stream/clicks/consumer/clicks-dashboard:* ]] || fail "status.consumerARN"
  local listing
  listing="$(kn get brook)"
  echo "$listing"
  grep -Eq 'stream.brook.dev/clicks +4 +4 +48 +Serving' <<<"$listing" || fail "kubectl get brook does not show the serving stream"
  grep -Eq 'consumer.brook.dev/clicks-dashboard +clicks +ACTIVE' <<<"$listing" || fail "kubectl get brook does not show the active consumer"
  says event/ kn get events --field-selector reason=StreamCreated,involvedObject.name=clicks -o name || fail "no StreamCreated Event"
  for object in statefulset/clicks service/clicks service/clicks-brokers configmap/clicks-broker-config \
    poddisruptionbudget/clicks networkpolicy/clicks secret/clicks-broker-admin; do
    equals "$object" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}' Stream/clicks \
      || fail "$object is not owned by Stream clicks"
  done
  # GitOps: what the operator did (finalizer, status, defaults) is no difference from Git for
  # a client-side diff (the steady Stream below checks the server-side one).
  kn diff -f examples/stream.yaml -f examples/consumer.yaml >"$WORK/diff" 2>&1 \
    || fail "kubectl diff reports a difference from the applied files: $(cat "$WORK/diff")"
  echo "kubectl diff: no difference from the applied files after reconcile"
}

data_path() {
  step "3. records in and out through the Service and through every broker pod (SigV4)"
  ENDPOINT="$(endpoint_of service/clicks 24567)"
  echo "Service endpoint $ENDPOINT"
  # AWS CLI v1 sends --data as raw bytes and prints blobs in base64.
  aws_kinesis put-record --stream-name clicks --partition-key user-1 --data hello >/dev/null || fail "put-record"
  local shard iterator
  shard="$(aws_kinesis put-record --stream-name clicks --partition-key user-1 --data world --query ShardId --output text)"
  iterator="$(aws_kinesis get-shard-iterator --stream-name clicks --shard-id "$shard" --shard-iterator-type TRIM_HORIZON --query ShardIterator --output text)"
  [ "$(aws_kinesis get-records --shard-iterator "$iterator" --query 'Records[].Data' --output text)" = "aGVsbG8=	d29ybGQ=" ] \
    || fail "get-records did not return the two records in order"
  [ "$(aws_kinesis list-shards --stream-name clicks --query 'length(Shards)' --output text)" = 4 ] || fail "list-shards"
  if AWS_SECRET_ACCESS_KEY=wrong aws_kinesis list-shards --stream-name clicks >/dev/null 2>"$WORK/forged"; then
    fail "a wrong secret was accepted"
  fi
  grep -q SignatureDoesNotMatch "$WORK/forged" || grep -q InvalidSignature "$WORK/forged" || fail "wrong secret refused with: $(cat "$WORK/forged")"
  "$PYTHON" tests/e2e/e2e.py put "$ENDPOINT" clicks 300 "$WORK/acked-1.json" || fail "puts through the Service"
  local port=24570 pod
  for pod in clicks-0 clicks-1 clicks-2; do
    local pod_endpoint
    pod_endpoint="$(endpoint_of "pod/$pod" "$port")"
    port=$((port + 1))
    "$PYTHON" tests/e2e/e2e.py put "$pod_endpoint" clicks 20 "$WORK/acked-$pod.json" >/dev/null || fail "puts through $pod"
    "$PYTHON" tests/e2e/e2e.py verify "$pod_endpoint" clicks "$WORK"/acked-*.json || fail "reading through $pod"
  done
  spread_over_pods
  if aws_kinesis update-shard-count --stream-name clicks --target-shard-count 8 --scaling-type UNIFORM_SCALING 2>"$WORK/refused" >/dev/null; then
    fail "a managed broker accepted UpdateShardCount from a client"
  fi
  grep -q "kubectl -n $NS edit stream clicks" "$WORK/refused" || fail "the refusal does not name the resource: $(cat "$WORK/refused")"
  echo "a client's UpdateShardCount is refused: $(grep -o 'AccessDenied[^:]*' "$WORK/refused" | head -1)"
}

# The shards each broker pod stores, from its own /metrics (a shard's series come from its
# owner only): one line per pod, `pod shard shard ...`.
shards_by_pod() {
  local pod
  for pod in clicks-0 clicks-1 clicks-2; do
    printf '%s' "$pod"
    k get --raw "/api/v1/namespaces/$NS/pods/$pod:9100/proxy/metrics" \
      | awk '/^brook_incoming_records_total\{/ && $2 > 0 {match($0, /shard="[^"]*"/); print substr($0, RSTART + 7, RLENGTH - 8)}' \
      | sort -u | tr '\n' ' ' | sed 's/^/ /'
    echo
  done
}

# Records stored by one broker pod since it started.
pod_incoming() {
  k get --raw "/api/v1/namespaces/$NS/pods/$1:9100/proxy/metrics" \
    | awk '/^brook_incoming_records_total\{/ {sum += $2} END {printf "%d\n", sum}'
}

spread_over_pods() {
  local spread
  spread="$(shards_by_pod)"
  echo "shards written, by the pod that stores them:"
  echo "$spread"
  # Every pod stores some of the 4 shards, and no shard is stored by two pods.
  [ "$(awk 'NF < 2' <<<"$spread" | wc -l)" = 0 ] || fail "a broker pod stores no shard: $spread"
  [ "$(awk '{for (i = 2; i <= NF; i++) print $i}' <<<"$spread" | sort | uniq -d | wc -l)" = 0 ] \
    || fail "a shard is stored by two pods: $spread"
  [ "$(awk '{for (i = 2; i <= NF; i++) print $i}' <<<"$spread" | sort -u | wc -l)" = 4 ] \
    || fail "the records did not reach all 4 shards: $spread"
}

# A CA and a certificate for Stream $1's Service, its pods (by their stable names) and this
# host's port-forwards, in the layout cert-manager writes (tls.crt, tls.key, ca.crt).
stream_certificate() { # stream dir
  local stream="$1" dir="$2"
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=e2e test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$stream.$NS.svc" \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s.%s.svc,DNS:*.%s-brokers.%s.svc,DNS:localhost,IP:127.0.0.1\n' \
    "$stream" "$NS" "$stream" "$NS" >"$dir/san.ext"
  openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/san.ext" -out "$dir/tls.crt" 2>/dev/null
}

tls_stream() {
  step "3d. a Stream with TLS: HTTPS to clients, TLS between its pods, the operator and a Consumer over TLS"
  local dir="$WORK/secure-tls" begun=$SECONDS
  stream_certificate secure "$dir"
  kn create secret generic secure-cert --from-file="$dir/tls.crt" --from-file="$dir/tls.key" \
    --from-file="$dir/ca.crt" >/dev/null
  kn apply -f - >/dev/null <<EOF
apiVersion: brook.dev/v1alpha1
kind: Stream
metadata:
  name: secure
spec:
  shards: 4
  brokers:
    replicas: 2
    resources:
      requests: {cpu: 50m, memory: 64Mi}
    storage:
      size: 1Gi
  tls:
    secretRef:
      name: secure-cert
---
apiVersion: brook.dev/v1alpha1
kind: Consumer
metadata:
  name: secure-reader
spec:
  streamName: secure
EOF
  # Ready means the operator created the stream through pod 0 over TLS, trusting ca.crt.
  kn wait --for=condition=Ready stream/secure --timeout=300s >/dev/null \
    || fail "Stream secure not Ready: $(kn get stream secure -o jsonpath='{.status.conditions}')"
  kn wait --for=condition=Ready consumer/secure-reader --timeout=180s >/dev/null || fail "Consumer secure-reader not Ready"
  echo "TLS Stream and its Consumer Ready $((SECONDS - begun)) s after kubectl apply"
  equals stream/secure '{.status.endpoint}' "https://secure.$NS.svc:4567" \
    || fail "status.endpoint: $(jsonpath stream/secure '{.status.endpoint}')"
  TIMEOUT=180 eventually equals statefulset/secure '{.status.readyReplicas}' 2
  "$KUBECTL" -n "$NS" port-forward service/secure 24590:4567 >"$WORK/port-forward-24590.log" 2>&1 &
  PIDS+=($!)
  TIMEOUT=30 eventually curl -s -o /dev/null --max-time 2 --cacert "$dir/ca.crt" "https://127.0.0.1:24590/"
  if curl -s -o /dev/null --max-time 3 "http://127.0.0.1:24590/"; then
    fail "the TLS Stream answered plain HTTP"
  fi
  # Records for all 4 shards: the pod the Service picked relays the other pod's share over TLS.
  AWS_CA_BUNDLE="$dir/ca.crt" "$PYTHON" tests/e2e/e2e.py put https://127.0.0.1:24590 secure 200 "$WORK/secure-acked.json" \
    || fail "puts over HTTPS"
  AWS_CA_BUNDLE="$dir/ca.crt" "$PYTHON" tests/e2e/e2e.py verify https://127.0.0.1:24590 secure "$WORK/secure-acked.json" \
    || fail "reading back over HTTPS"
  stored_on_every_pod "the pods did not relay to each other" secure-0 secure-1
  kn delete stream secure --timeout=120s >/dev/null || fail "deleting the TLS Stream"
}

# Fails with $1 unless every pod named after it stored records (its own /metrics).
stored_on_every_pod() { # why pod...
  local why="$1" pod stored
  shift
  for pod in "$@"; do
    stored="$(k get --raw "/api/v1/namespaces/$NS/pods/$pod:9100/proxy/metrics" \
      | awk '/^brook_incoming_records_total\{/ {sum += $2} END {printf "%d\n", sum}')"
    [ "$stored" -gt 0 ] || fail "$pod stored no record: $why"
    echo "$pod stored $stored records"
  done
}

queue_stream() {
  step "3e. an ON_DEMAND Stream over two broker pods and a Queue (examples/queue.yaml): consumers on both pods"
  local begun=$SECONDS
  kn apply -f examples/queue.yaml >/dev/null
  kn wait --for=condition=Ready stream/jobs --timeout=300s >/dev/null \
    || fail "Stream jobs not Ready: $(kn get stream jobs -o jsonpath='{.status.conditions}')"
  kn wait --for=condition=Ready queue/jobs-workers --timeout=180s >/dev/null \
    || fail "Queue jobs-workers not Ready: $(kn get queue jobs-workers -o jsonpath='{.status.conditions}')"
  echo "ON_DEMAND Stream and its Queue Ready $((SECONDS - begun)) s after kubectl apply"
  TIMEOUT=180 eventually equals statefulset/jobs '{.status.readyReplicas}' 2
  local arn first second
  arn="$(jsonpath queue/jobs-workers '{.status.queueARN}')"
  [[ "$arn" == *":queue/jobs/"* ]] || fail "status.queueARN: $arn"
  first="$(endpoint_of pod/jobs-0 24591)"
  second="$(endpoint_of pod/jobs-1 24592)"
  "$PYTHON" tests/e2e/e2e.py put "$second" jobs 200 "$WORK/jobs-acked.json" || fail "puts to the ON_DEMAND stream"
  # Pod 0 keeps the queue; a consumer on pod 1 is relayed there, and the records of pod 1's
  # shards are read from pod 1.
  "$PYTHON" tests/e2e/e2e.py queue "$arn" "$WORK/jobs-acked.json" "$first" "$second" \
    || fail "the queue did not deliver every record once"
  stored_on_every_pod "the queue's records were not spread over the pods" jobs-0 jobs-1
  kn delete queue jobs-workers --timeout=120s >/dev/null || fail "deleting the Queue"
  kn delete stream jobs --timeout=120s >/dev/null || fail "deleting the ON_DEMAND Stream"
}

gateway() {
  step "3c. one endpoint for every stream: the chart's gateway routes by stream name, with read-only RBAC"
  local values
  values="$(printf '{"image": {"repository": "%s", "tag": "%s"}, "replicaCount": 2, "operator": {"recheckSeconds": %s}, "gateway": {"enabled": true, "namespace": "%s", "replicas": 1}}' \
    "${IMAGE%:*}" "${IMAGE##*:}" "$RECHECK" "$NS")"
  helm_py upgrade charts/brook brook "$OPERATOR_NS" "$values" >/dev/null || fail "helm upgrade with the gateway"
  k -n "$NS" rollout status deployment/brook-gateway --timeout=180s >/dev/null || fail "the gateway did not roll out"
  local gateway_endpoint
  gateway_endpoint="$(endpoint_of service/brook-gateway 24580)"
  echo "gateway endpoint $gateway_endpoint"
  "$PYTHON" tests/e2e/e2e.py put "$gateway_endpoint" clicks 50 "$WORK/acked-gateway.json" || fail "puts through the gateway"
  "$PYTHON" tests/e2e/e2e.py verify "$gateway_endpoint" clicks "$WORK"/acked-*.json || fail "reading through the gateway"
  local listed
  listed="$("$AWS" --endpoint-url "$gateway_endpoint" kinesis list-streams --query 'StreamNames' --output text)" || fail "list-streams through the gateway"
  [[ " $listed " == *" clicks "* ]] || [[ "$listed" == *clicks* ]] || fail "the gateway lists '$listed'"
  echo "through the gateway: 50 puts, every acknowledged record read back, list-streams: $listed"
}

# Whether the node is this host, so a server here is reachable from pods at the node's IP.
node_is_this_host() {
  NODE_IP="$(k get node -o 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}')"
  ip -4 addr 2>/dev/null | grep -q "inet $NODE_IP/"
}

delivery() {
  step "3b. DeliveryStreams: the stream to an HTTP endpoint on this host, and direct puts"
  if ! node_is_this_host; then
    echo "SKIPPED: the node ($NODE_IP) is not this host, so an endpoint here cannot be reached by the workers"
    return
  fi
  local port=18080 begun=$SECONDS
  "$PYTHON" tests/e2e/e2e.py receive "$port" "$WORK/received.jsonl" &
  PIDS+=($!)
  TIMEOUT=30 eventually curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"
  kn apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata: {name: collector-key}
stringData: {token: e2e-collector-token}
---
apiVersion: brook.dev/v1alpha1
kind: DeliveryStream
metadata: {name: clicks-out}
spec:
  source: {stream: {name: clicks, startingPosition: TRIM_HORIZON}}
  buffering: {sizeMiB: 1, intervalSeconds: 1}
  destination:
    http:
      url: http://$NODE_IP:$port/clicks
      accessKeySecretRef: {name: collector-key, key: token}
      contentEncoding: GZIP
  worker: {storage: 64Mi}
---
apiVersion: brook.dev/v1alpha1
kind: DeliveryStream
metadata: {name: audit}
spec:
  source: {directPut: {}}
  buffering: {sizeMiB: 1, intervalSeconds: 1}
  destination:
    http:
      url: http://$NODE_IP:$port/audit
      accessKeySecretRef: {name: collector-key, key: token}
  worker: {storage: 64Mi}
EOF
  kn wait --for=condition=Ready deliverystream/clicks-out deliverystream/audit --timeout=300s >/dev/null \
    || fail "DeliveryStreams not Ready: $(kn get deliverystreams -o wide 2>&1)"
  echo "DeliveryStreams Ready $((SECONDS - begun)) s after kubectl apply"
  TIMEOUT=120 eventually "$PYTHON" tests/e2e/e2e.py delivered "$WORK/received.jsonl" /clicks e2e-collector-token "$WORK"/acked-*.json
  "$PYTHON" tests/e2e/e2e.py delivered "$WORK/received.jsonl" /clicks e2e-collector-token "$WORK"/acked-*.json
  # The status is refreshed from the worker's metrics every 30 s.
  TIMEOUT=120 eventually sh -c "[ \"\$($KUBECTL -n $NS get deliverystream clicks-out -o jsonpath='{.status.deliveredRecords}')\" -ge 360 ]"
  [ -n "$(jsonpath deliverystream/clicks-out '{.status.lastDeliveryTime}')" ] || fail "status.lastDeliveryTime"
  for object in deployment/clicks-out-delivery service/clicks-out-delivery persistentvolumeclaim/clicks-out-delivery-data; do
    equals "$object" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}' DeliveryStream/clicks-out \
      || fail "$object is not owned by DeliveryStream clicks-out"
  done
  equals deliverystream/audit '{.status.endpoint}' "http://audit-delivery.$NS.svc:4573" || fail "status.endpoint of audit"
  local firehose
  firehose="$(endpoint_of service/audit-delivery 24580 4573)"
  "$AWS" --endpoint-url "$firehose" firehose put-record-batch --delivery-stream-name audit \
    --records '[{"Data": "audit-1"}, {"Data": "audit-2"}]' --query FailedPutCount --output text >"$WORK/audit-put" \
    || fail "aws firehose put-record-batch"
  [ "$(cat "$WORK/audit-put")" = 0 ] || fail "put-record-batch FailedPutCount $(cat "$WORK/audit-put")"
  echo '[{"data": "audit-1"}, {"data": "audit-2"}]' >"$WORK/audit-acked.json"
  TIMEOUT=60 eventually "$PYTHON" tests/e2e/e2e.py delivered "$WORK/received.jsonl" /audit e2e-collector-token "$WORK/audit-acked.json"
  kn get deliverystreams -o wide
  # Deleting a DeliveryStream takes its worker (owned objects, garbage-collected).
  kn delete deliverystream/audit deliverystream/clicks-out --timeout=120s >/dev/null || fail "DeliveryStreams not deleted"
  TIMEOUT=120 eventually sh -c "! $KUBECTL -n $NS get deployment audit-delivery >/dev/null 2>&1 && ! $KUBECTL -n $NS get deployment clicks-out-delivery >/dev/null 2>&1"
  echo "deleted: their Deployments, Services and volumes went with them"
}

reshard() {
  step "4. kubectl scale (the scale subresource) and a spec edit reshard"
  kn scale stream/clicks --replicas=6 >/dev/null
  TIMEOUT=240 eventually open_shards clicks 6
  TIMEOUT=60 eventually ready_generation clicks
  kn patch stream/clicks --type merge -p '{"spec":{"shards":3}}' >/dev/null
  TIMEOUT=240 eventually open_shards clicks 3
  TIMEOUT=60 eventually ready_generation clicks
  [ "$(aws_kinesis list-shards --stream-name clicks --shard-filter Type=AT_LATEST --query 'length(Shards)' --output text)" = 3 ] \
    || fail "the brokers do not report 3 open shards"
  says event/ kn get events --field-selector reason=Resharding,involvedObject.name=clicks -o name || fail "no Resharding Event"
  "$PYTHON" tests/e2e/e2e.py verify "$ENDPOINT" clicks "$WORK"/acked-*.json || fail "records lost across resharding"

  step "4. fewer broker pods: the shards are moved off the leaving pod, which stays until retention passes"
  # examples/stream.yaml drains; this step checks the default, waiting for retention.
  kn patch stream/clicks --type merge -p '{"spec":{"brokers":{"replicas":2,"shrinkPolicy":"WaitForRetention"}}}' >/dev/null
  TIMEOUT=240 eventually equals stream/clicks '{.status.conditions[?(@.type=="Ready")].reason}' WaitingForRetention
  equals statefulset/clicks '{.spec.replicas}' 3 || fail "the StatefulSet shrank before the leaving pod's shards passed retention"
  open_shards clicks 3 || fail "moving the shards changed the shard count: $(jsonpath stream/clicks '{.status.openShards}')"
  says event/ kn get events --field-selector reason=MovingShard,involvedObject.name=clicks -o name || fail "no MovingShard Event"
  kn get stream clicks
  [ "$(jsonpath stream/clicks '{.status.conditions[?(@.type=="Ready")].message}')" != "" ] || fail "the wait is not explained"
  local before
  before="$(pod_incoming clicks-2)"
  "$PYTHON" tests/e2e/e2e.py put "$ENDPOINT" clicks 60 "$WORK/acked-moved.json" >/dev/null || fail "puts after the move"
  [ "$(pod_incoming clicks-2)" = "$before" ] || fail "records landed on the leaving pod after the move ($before, then $(pod_incoming clicks-2))"
  "$PYTHON" tests/e2e/e2e.py verify "$ENDPOINT" clicks "$WORK"/acked-*.json || fail "records lost moving shards off a pod"
  echo "the leaving pod clicks-2 took no record after the move; every record reads back"

  step "4. draining instead: the leaving pod's closed shards are copied to the pods that stay, then it goes"
  kn patch stream/clicks --type merge -p '{"spec":{"brokers":{"replicas":2,"shrinkPolicy":"Drain"}}}' >/dev/null
  TIMEOUT=240 eventually equals statefulset/clicks '{.spec.replicas}' 2
  says event/ kn get events --field-selector reason=DrainingShard,involvedObject.name=clicks -o name || fail "no DrainingShard Event"
  TIMEOUT=120 eventually sh -c "! $KUBECTL -n $NS get pod clicks-2 >/dev/null 2>&1"
  TIMEOUT=60 eventually equals stream/clicks '{.status.conditions[?(@.type=="Ready")].reason}' Serving
  "$PYTHON" tests/e2e/e2e.py verify "$ENDPOINT" clicks "$WORK"/acked-*.json || fail "records lost draining the leaving pod"
  echo "clicks-2 is gone before retention passed; every acknowledged record reads back from the two pods left"
  kn patch stream/clicks --type merge -p '{"spec":{"brokers":{"replicas":3}}}' >/dev/null
  TIMEOUT=120 eventually equals statefulset/clicks '{.status.readyReplicas}' 3
  TIMEOUT=60 eventually equals stream/clicks '{.status.conditions[?(@.type=="Ready")].reason}' Serving
}

restarted() { # pod, restart count before
  [ "$(jsonpath "pod/$1" '{.status.containerStatuses[0].restartCount}')" -gt "$2" ] && equals "pod/$1" '{.status.containerStatuses[0].ready}' true
}

kill_broker() {
  step "5. the pod holding the data is force-deleted, then its process SIGKILLed: every acknowledged record comes back"
  local uid
  uid="$(jsonpath pod/clicks-0 '{.metadata.uid}')"
  kn delete pod clicks-0 --force --grace-period=0 >/dev/null 2>&1
  TIMEOUT=240 eventually sh -c "[ \"\$($KUBECTL -n $NS get pod clicks-0 -o jsonpath='{.metadata.uid}')\" != '$uid' ]"
  TIMEOUT=240 eventually equals pod/clicks-0 '{.status.containerStatuses[0].ready}' true
  "$PYTHON" tests/e2e/e2e.py put "$ENDPOINT" clicks 100 "$WORK/acked-2.json" || fail "puts after the pod came back"
  "$PYTHON" tests/e2e/e2e.py verify "$ENDPOINT" clicks "$WORK"/acked-*.json || fail "records lost with the force-deleted pod"

  # SIGKILL from the node: a debug pod in the host's PID namespace finds the broker container's
  # process by its cgroup and kills it; the kubelet restarts the container on the same volume.
  local node container restarts
  node="$(jsonpath pod/clicks-0 '{.spec.nodeName}')"
  container="$(jsonpath pod/clicks-0 '{.status.containerStatuses[0].containerID}')"
  container="${container#*://}"
  restarts="$(jsonpath pod/clicks-0 '{.status.containerStatuses[0].restartCount}')"
  cat >"$WORK/killer.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: broker-killer, namespace: $NS}
spec:
  nodeName: $node
  hostPID: true
  restartPolicy: Never
  containers:
  - name: kill
    image: $DEBUG_IMAGE
    imagePullPolicy: IfNotPresent
    securityContext: {privileged: true}
    command: [sh, -c]
    args:
    - |
      for cgroup in /proc/[0-9]*/cgroup; do
        if grep -q "$container" "\$cgroup" 2>/dev/null; then
          pid="\${cgroup#/proc/}"; pid="\${pid%/cgroup}"
          if grep -q brook "/proc/\$pid/cmdline" 2>/dev/null; then kill -9 "\$pid" && echo "killed \$pid"; fi
        fi
      done
EOF
  kn apply -f "$WORK/killer.yaml" >/dev/null
  TIMEOUT=120 eventually equals pod/broker-killer '{.status.phase}' Succeeded
  says killed kn logs broker-killer || fail "the debug pod found no broker process of container $container"
  kn delete pod broker-killer --wait=false >/dev/null
  TIMEOUT=240 eventually restarted clicks-0 "$restarts"
  [ "$(jsonpath pod/clicks-0 '{.status.containerStatuses[0].lastState.terminated.exitCode}')" = 137 ] \
    || fail "the broker did not end by SIGKILL"
  "$PYTHON" tests/e2e/e2e.py verify "$ENDPOINT" clicks "$WORK"/acked-*.json || fail "records lost with the SIGKILLed broker"

  step "5. a change of the broker configuration rolls the pods and keeps the data (puts keep going)"
  local hash revision
  hash="$(jsonpath statefulset/clicks '{.spec.template.metadata.annotations.brook\.dev/config-hash}')"
  revision="$(jsonpath statefulset/clicks '{.status.updateRevision}')"
  rm -f "$WORK/stop"
  "$PYTHON" tests/e2e/e2e.py put-until "$ENDPOINT" clicks "$WORK/stop" "$WORK/acked-roll.json" &
  local writer=$!
  PIDS+=("$writer")
  kn patch stream/clicks --type merge -p '{"spec":{"limits":{"writeRecordsPerSecond":2000}}}' >/dev/null
  TIMEOUT=60 eventually sh -c "[ \"\$($KUBECTL -n $NS get configmap clicks-broker-config -o jsonpath='{.data.BROOK_WRITE_RECORDS_PER_SECOND}')\" = 2000 ]"
  TIMEOUT=60 eventually sh -c "[ \"\$($KUBECTL -n $NS get statefulset clicks -o jsonpath='{.status.updateRevision}')\" != '$revision' ]"
  kn rollout status statefulset/clicks --timeout=400s >/dev/null || fail "the brokers did not roll"
  TIMEOUT=60 eventually ready_generation clicks
  touch "$WORK/stop"
  wait "$writer" || fail "the writer during the roll crashed"
  [ "$(jsonpath statefulset/clicks '{.spec.template.metadata.annotations.brook\.dev/config-hash}')" != "$hash" ] || fail "config hash unchanged"
  "$PYTHON" - "$WORK/acked-roll.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
ok, failed = len(report["acknowledged"]), len(report["failures"])
print(f"during the roll: {ok} puts acknowledged, {failed} failed ({sorted(set(report['failures']))})")
EOF
  "$PYTHON" tests/e2e/e2e.py verify "$ENDPOINT" clicks "$WORK"/acked-*.json || fail "records lost in the roll"
}

# The operator's record of the objects a Stream owns: every resourceVersion.
versions() {
  local stream="$1"
  echo "stream $(jsonpath "stream/$stream" '{.metadata.resourceVersion}')"
  for object in statefulset/$stream service/$stream service/$stream-brokers configmap/$stream-broker-config \
    poddisruptionbudget/$stream secret/$stream-broker-admin; do
    echo "$object $(jsonpath "$object" '{.metadata.resourceVersion}')"
  done
}
reconciled_count() { # stream: the leader's 'reconciled' log lines for it
  k -n "$OPERATOR_NS" logs "$(leader)" 2>/dev/null | grep '"reconciled"' | grep -c "\"$NS/$1\"" || true
}
reconciled_since() { [ "$(reconciled_count "$1")" -ge "$2" ]; }

steady() {
  step "6. steady state: no writes over two re-checks, with quantities the API server normalizes"
  cat >"$WORK/steady.yaml" <<'EOF'
apiVersion: brook.dev/v1alpha1
kind: Stream
metadata:
  name: steady
  # As Argo CD marks what it syncs (label tracking, and annotation tracking since v2.2).
  labels: {app.kubernetes.io/instance: steady}
  annotations: {argocd.argoproj.io/tracking-id: "steady:brook.dev/Stream:brook-e2e/steady"}
spec:
  shards: 2
  brokers:
    replicas: 1
    resources:
      requests: {cpu: "0.05", memory: "0.125Gi"}
      limits: {cpu: "1000m", memory: "1073741824"}
    storage: {size: "0.5Gi"}
EOF
  # Server-side, as Argo CD applies with ServerSideApply=true.
  kn apply --server-side -f "$WORK/steady.yaml" >/dev/null
  kn wait --for=condition=Ready stream/steady --timeout=300s >/dev/null || fail "Stream steady not Ready"
  equals statefulset/steady '{.spec.template.spec.containers[0].resources.requests.cpu}' 50m \
    || fail "the API server did not normalize cpu 0.05 (got $(jsonpath statefulset/steady '{.spec.template.spec.containers[0].resources.requests.cpu}'))"
  TIMEOUT=60 eventually equals statefulset/steady '{.status.readyReplicas}' 1
  local children="statefulsets,services,configmaps,poddisruptionbudgets,secrets,pods,persistentvolumeclaims"
  [ -z "$(kn get "$children" -l app.kubernetes.io/instance=steady -o name)" ] \
    || fail "children carry Argo CD's tracking label: $(kn get "$children" -l app.kubernetes.io/instance=steady -o name)"
  ! says tracking-id kn get "$children" -l brook.dev/stream=steady -o 'jsonpath={.items[*].metadata.annotations}' \
    || fail "children carry Argo CD's tracking annotation"
  [ -n "$(kn get "$children" -l brook.dev/stream=steady -o name)" ] || fail "no children of steady found by brook.dev/stream"
  echo "no child of a Stream carries Argo CD's tracking label or annotation"
  kn diff --server-side -f "$WORK/steady.yaml" >"$WORK/diff" 2>&1 \
    || fail "kubectl diff --server-side reports a difference: $(cat "$WORK/diff")"
  echo "kubectl diff --server-side: no difference from the applied file after reconcile"
  versions steady >"$WORK/versions-before"
  local applies reconciles
  applies="$(metric_sum brook_operator_applies_total)"
  reconciles="$(reconciled_count steady)"
  # Two re-checks of this Stream by the leader, observed in its log, not waited for by a clock.
  TIMEOUT=$((RECHECK * 6)) eventually reconciled_since steady $((reconciles + 2))
  versions steady >"$WORK/versions-after"
  diff "$WORK/versions-before" "$WORK/versions-after" || fail "the operator changed objects of a steady Stream"
  [ "$(metric_sum brook_operator_applies_total)" = "$applies" ] \
    || fail "the operator sent applies in a steady state ($applies before, $(metric_sum brook_operator_applies_total) after)"
  echo "two re-checks, $(wc -l <"$WORK/versions-after") objects unchanged, applies_total stayed $applies"
}

failover() {
  step "7. two operator replicas: the leader's pod is deleted, the other takes over"
  local old begun
  old="$(leader)"
  [ "$(JSONPATH_NS=$OPERATOR_NS jsonpath deployment/brook-operator '{.status.readyReplicas}')" = 2 ] || fail "want 2 operator replicas"
  begun=$SECONDS
  k -n "$OPERATOR_NS" delete pod "$old" --wait=false >/dev/null
  TIMEOUT=60 eventually sh -c "h=\$($KUBECTL -n $OPERATOR_NS get lease brook-operator-leader -o jsonpath='{.spec.holderIdentity}'); [ -n \"\$h\" ] && [ \"\$h\" != '$old' ] && $KUBECTL -n $OPERATOR_NS get pod \"\$h\" >/dev/null"
  local took=$((SECONDS - begun))
  echo "leader $old -> $(leader) in $took s (lease 15 s; a leader stopping cleanly releases it)"
  [ "$took" -le 15 ] || fail "the takeover took $took s, longer than the 15 s lease"
  kn scale stream/clicks --replicas=4 >/dev/null
  TIMEOUT=240 eventually open_shards clicks 4
  TIMEOUT=60 eventually ready_generation clicks
  echo "the new leader resharded clicks to 4"
}

deletion() {
  step "8. deletion: deletionPolicy Delete removes the volumes, Retain keeps them and the data"
  kn delete stream/steady --timeout=180s >/dev/null || fail "Stream steady not deleted"
  TIMEOUT=120 eventually sh -c "[ -z \"\$($KUBECTL -n $NS get statefulset,pvc -l brook.dev/stream=steady -o name)\" ]"
  echo "Delete: StatefulSet and claims of steady gone"

  local claims
  claims="$(kn get pvc -l brook.dev/stream=clicks -o name | sort)"
  [ "$(wc -l <<<"$claims")" = 3 ] || fail "clicks has claims: $claims"
  kn delete stream/clicks --timeout=180s >/dev/null || fail "Stream clicks not deleted"
  TIMEOUT=120 eventually sh -c "! $KUBECTL -n $NS get statefulset clicks"
  [ "$(kn get pvc -l brook.dev/stream=clicks -o name | sort)" = "$claims" ] || fail "Retain lost claims"
  says event/ kn get events --field-selector reason=VolumesRetained,involvedObject.name=clicks -o name || fail "no VolumesRetained Event"
  kn apply -f examples/stream.yaml >/dev/null
  kn wait --for=condition=Ready stream/clicks --timeout=300s >/dev/null || fail "the re-created Stream clicks is not Ready"
  TIMEOUT=120 eventually equals statefulset/clicks '{.status.readyReplicas}' 3
  # The Service was made anew, with a new cluster IP.
  ENDPOINT="$(endpoint_of service/clicks 24568)"
  "$PYTHON" tests/e2e/e2e.py verify "$ENDPOINT" clicks "$WORK"/acked-*.json || fail "a re-created Stream did not get its retained data"
  echo "Retain: claims kept and the re-created Stream serves the old records"

  step "8. deleting namespaces that hold Streams and Consumers finishes, also after their brokers went first"
  fresh_namespace "$NS_GONE"
  # Broker pods pass the restricted Pod Security Standard too.
  k label namespace "$NS_GONE" pod-security.kubernetes.io/enforce=restricted >/dev/null
  k -n "$NS_GONE" apply -f - >/dev/null <<'EOF'
apiVersion: brook.dev/v1alpha1
kind: Stream
metadata: {name: doomed}
spec: {shards: 1, brokers: {replicas: 1, storage: {size: 64Mi}}}
---
apiVersion: brook.dev/v1alpha1
kind: Consumer
metadata: {name: reader}
spec: {streamName: doomed}
EOF
  k -n "$NS_GONE" wait --for=condition=Ready consumer/reader --timeout=300s >/dev/null || fail "Consumer reader not Ready"
  k -n "$NS_GONE" delete statefulset doomed --wait=true >/dev/null
  local begun=$SECONDS since
  since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  k delete namespace "$NS_GONE" --timeout=180s >/dev/null || fail "namespace $NS_GONE stuck in Terminating"
  echo "$NS_GONE (brokers deleted first) gone in $((SECONDS - begun)) s"
  begun=$SECONDS
  k delete namespace "$NS" --timeout=180s >/dev/null || fail "namespace $NS stuck in Terminating"
  echo "$NS (3 brokers, a Stream and a Consumer) gone in $((SECONDS - begun)) s"
  # A create can race the namespace's deletion (the API server then refuses it); the operator
  # must take that refusal as the end of the object, not report a failure and retry.
  local refusals
  refusals="$(k -n "$OPERATOR_NS" logs "$(leader)" --since-time="$since" \
    | grep "being terminated" | grep -E '"level":"(WARN|ERROR)"' || true)"
  if [ -n "$refusals" ]; then
    head -3 <<<"$refusals" >&2
    fail "the operator reported a terminating namespace's refusal as a failure"
  fi
}

preflight
install
schema
serve
data_path
delivery
gateway
tls_stream
queue_stream
reshard
kill_broker
steady
failover
deletion
autoscale
uninstall
echo
echo "PASS: e2e on the cluster in $((SECONDS - STARTED)) s"
