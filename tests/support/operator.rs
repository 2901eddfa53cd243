//! A harness for reconcile tests: a mocked API server, a real managed `brook broker` on
//! loopback reached through the operator's address override, and helpers to drive reconciles
//! the way the controller runtime would.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use brook::api::{Consumer, Queue, Stream};
use brook::operator::resources::BrokerDefaults;
use brook::operator::{BrokerAddresses, Context};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::broker::{Broker, BrokerBuilder, TempDir};
use super::mock_kube::MockKube;

/// The namespace every harness resource lives in.
pub const NAMESPACE: &str = "shop";
/// Collection path of the Streams.
pub const STREAMS: &str = "/apis/brook.dev/v1alpha1/namespaces/shop/streams";
/// Collection path of the Consumers.
pub const CONSUMERS: &str = "/apis/brook.dev/v1alpha1/namespaces/shop/consumers";
/// Collection path of the Queues.
pub const QUEUES: &str = "/apis/brook.dev/v1alpha1/namespaces/shop/queues";
/// Collection path of the StatefulSets.
pub const STATEFULSETS: &str = "/apis/apps/v1/namespaces/shop/statefulsets";
/// Collection path of the Secrets.
pub const SECRETS: &str = "/api/v1/namespaces/shop/secrets";
/// Collection path of the Services.
pub const SERVICES: &str = "/api/v1/namespaces/shop/services";
/// Collection path of the ConfigMaps.
pub const CONFIG_MAPS: &str = "/api/v1/namespaces/shop/configmaps";
/// Collection path of the PodDisruptionBudgets.
pub const PDBS: &str = "/apis/policy/v1/namespaces/shop/poddisruptionbudgets";
/// Collection path of the NetworkPolicies.
pub const NETWORK_POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";
/// Collection path of the PersistentVolumeClaims.
pub const CLAIMS: &str = "/api/v1/namespaces/shop/persistentvolumeclaims";
/// Collection path of the ServiceMonitors.
pub const SERVICE_MONITORS: &str = "/apis/monitoring.coreos.com/v1/namespaces/shop/servicemonitors";
/// The admin secret the tests seed, so the broker can start before the first reconcile.
pub const ADMIN_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

/// A mocked cluster with one real broker.
pub struct Harness {
    /// The mocked API server.
    pub mock: MockKube,
    /// The operator's context, its brokers overridden to the loopback broker.
    pub ctx: Arc<Context>,
    /// The broker process (None when the test wants unreachable brokers).
    pub broker: Option<Broker>,
    /// Where the broker keeps its data.
    pub dir: TempDir,
    /// `host:port` the operator reaches the brokers at.
    address: String,
}

/// The operator's context for the mocked cluster, its brokers at `address`.
fn context(client: kube::Client, address: &str, service_monitors: bool) -> Arc<Context> {
    Context::new(
        client,
        BrokerDefaults::for_this_version(),
        BrokerAddresses::Fixed(address.to_owned()),
        service_monitors,
        Some("test".to_owned()),
    )
}

impl Harness {
    /// A mocked cluster whose stream `stream` is served by a managed broker on loopback.
    pub fn with_broker(label: &str, stream: &str) -> Self {
        Self::with_broker_args(label, stream, &[])
    }

    /// The same, the broker started with extra `args`.
    pub fn with_broker_args(label: &str, stream: &str, args: &[&str]) -> Self {
        let dir = TempDir::new(label);
        let admin = Self::admin_credentials(&dir);
        let mut builder = BrokerBuilder::default();
        for arg in args {
            builder = builder.arg(*arg);
        }
        let broker = builder
            .arg("--managed-by")
            .arg(format!("Stream {NAMESPACE}/{stream}"))
            .arg("--admin-credentials")
            .arg(admin.display().to_string())
            .start(&dir.path().join("data"));
        let address = broker
            .endpoint
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_owned();
        Self::build(dir, Some(broker), address)
    }

    /// Writes the operator's admin key where `--admin-credentials` reads it, in `dir`.
    pub fn admin_credentials(dir: &TempDir) -> std::path::PathBuf {
        let admin = dir.path().join("admin");
        std::fs::create_dir_all(&admin).expect("admin folder");
        std::fs::write(admin.join("brook-operator"), ADMIN_SECRET).expect("admin key");
        admin
    }

    /// A mocked cluster whose brokers the test started itself, reached at `address`.
    pub fn with_brokers_at(dir: TempDir, address: &str) -> Self {
        Self::build(dir, None, address.to_owned())
    }

    /// A mocked cluster whose brokers never answer (a closed loopback port).
    pub fn without_broker(label: &str) -> Self {
        let address = super::unused_address().to_string();
        Self::build(TempDir::new(label), None, address)
    }

    /// The same, with the Prometheus Operator's ServiceMonitor kind served.
    pub fn with_service_monitors(mut self) -> Self {
        self.ctx = context(self.ctx.client.clone(), &self.address, true);
        self
    }

    fn build(dir: TempDir, broker: Option<Broker>, address: String) -> Self {
        let (mock, client) = MockKube::start();
        Self {
            mock,
            ctx: context(client, &address, false),
            broker,
            dir,
            address,
        }
    }

    /// Seeds the admin Secret of `stream` as an earlier reconcile would have created it.
    pub fn seed_admin_secret(&self, stream: &str) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(ADMIN_SECRET);
        self.mock.insert(
            SECRETS,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{stream}-broker-admin"), "namespace": NAMESPACE},
                "data": {"brook-operator": encoded}}),
        );
    }

    /// Applies a Stream as `kubectl apply` would. The harness's one broker plays every
    /// broker pod, so a spec that does not say how many pods gets one.
    pub fn apply_stream(&self, name: &str, mut spec: Value) {
        if spec["brokers"]["replicas"].is_null()
            && let Some(fields) = spec.as_object_mut()
        {
            let brokers = fields.entry("brokers").or_insert_with(|| json!({}));
            if let Some(brokers) = brokers.as_object_mut() {
                brokers.insert("replicas".to_owned(), json!(1));
            }
        }
        match self.mock.get(STREAMS, name) {
            Some(_) => {
                self.mock
                    .modify(STREAMS, name, |object| object["spec"] = spec);
            }
            None => {
                self.mock.insert(
                    STREAMS,
                    json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Stream",
                        "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}),
                );
            }
        }
    }

    /// The Stream as stored.
    pub fn stream(&self, name: &str) -> Option<Stream> {
        self.mock
            .get(STREAMS, name)
            .map(|v| serde_json::from_value(v).expect("a Stream"))
    }

    /// One reconcile of the stored Stream.
    pub async fn reconcile_stream(
        &self,
        name: &str,
    ) -> Result<Action, brook::operator::ReconcileError> {
        let stream = self.stream(name).expect("the Stream exists");
        brook::operator::stream::reconcile(Arc::new(stream), self.ctx.clone()).await
    }

    /// Marks the StatefulSet's pods ready, as the kubelet would.
    pub fn brokers_ready(&self, name: &str, ready: i32) {
        self.mock.modify(STATEFULSETS, name, |set| {
            set["status"] = json!({"replicas": ready, "readyReplicas": ready});
        });
    }

    /// Reconciles until the Stream's Ready condition is `True` for its current generation.
    pub async fn reconcile_until_ready(&self, name: &str) -> Stream {
        for _ in 0..100 {
            self.reconcile_stream(name).await.expect("reconcile");
            let stream = self.stream(name).expect("the Stream exists");
            if is_ready(
                stream.status.as_ref().map(|s| &s.conditions),
                stream.metadata.generation,
                stream.status.as_ref().and_then(|s| s.observed_generation),
            ) {
                return stream;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "Stream {name} never became Ready: {:?}",
            self.stream(name).and_then(|s| s.status)
        );
    }

    /// Seeds the admin key, applies the Stream, marks one broker ready and reconciles until
    /// the Stream serves, as a user would find it after `kubectl apply`.
    pub async fn serving_stream(&self, name: &str, spec: Value) -> Stream {
        self.seed_admin_secret(name);
        self.apply_stream(name, spec);
        self.reconcile_stream(name).await.expect("finalizer");
        self.reconcile_stream(name).await.expect("children");
        self.brokers_ready(name, 1);
        self.reconcile_until_ready(name).await
    }

    /// The Consumer as stored.
    pub fn consumer(&self, name: &str) -> Option<Consumer> {
        self.mock
            .get(CONSUMERS, name)
            .map(|v| serde_json::from_value(v).expect("a Consumer"))
    }

    /// One reconcile of the stored Consumer.
    pub async fn reconcile_consumer(
        &self,
        name: &str,
    ) -> Result<Action, brook::operator::ReconcileError> {
        let consumer = self.consumer(name).expect("the Consumer exists");
        brook::operator::consumer::reconcile(Arc::new(consumer), self.ctx.clone()).await
    }

    /// The Queue as stored.
    pub fn queue(&self, name: &str) -> Option<Queue> {
        self.mock
            .get(QUEUES, name)
            .map(|v| serde_json::from_value(v).expect("a Queue"))
    }

    /// One reconcile of the stored Queue.
    pub async fn reconcile_queue(
        &self,
        name: &str,
    ) -> Result<Action, brook::operator::ReconcileError> {
        let queue = self.queue(name).expect("the Queue exists");
        brook::operator::queue::reconcile(Arc::new(queue), self.ctx.clone()).await
    }

    /// The broker's Kinesis endpoint.
    pub fn endpoint(&self) -> String {
        self.broker.as_ref().expect("a broker").endpoint.clone()
    }

    /// An AWS SDK client for the broker, as a producer would use it.
    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        self.broker.as_ref().expect("a broker").client()
    }
}

/// Whether `conditions` hold Ready=True and the status describes `generation`.
pub fn is_ready(
    conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    generation: Option<i64>,
    observed: Option<i64>,
) -> bool {
    observed == generation
        && conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The (status, reason) of the condition `type_`.
pub fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (&'a str, &'a str) {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
}

/// Whether a stored object's status has the condition `type_` with `status` and `reason`.
pub fn has_condition(object: Option<Value>, type_: &str, status: &str, reason: &str) -> bool {
    object.is_some_and(|o| {
        o["status"]["conditions"]
            .as_array()
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c["type"] == type_ && c["status"] == status && c["reason"] == reason)
            })
    })
}

/// `brook operator` as a process against a harness's mocked API server.
pub struct OperatorProcess {
    /// The process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>` of its `/metrics`, `/healthz` and `/readyz`.
    pub base: String,
    /// Its log (stderr).
    pub log_path: std::path::PathBuf,
}

impl Harness {
    /// Starts `brook operator` on the mocked API server (through a kubeconfig), watching the
    /// harness namespace, reaching its broker, electing itself as `identity`; returns once its
    /// telemetry port listens.
    pub async fn start_operator_process(&self, identity: &str) -> OperatorProcess {
        let api = self.mock.serve_http().await;
        let kubeconfig = self.dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster: {{server: \"http://{api}\"}}\nusers:\n- name: mock\n  user: {{token: test}}\ncontexts:\n- name: mock\n  context: {{cluster: mock, user: mock, namespace: {NAMESPACE}}}\ncurrent-context: mock\n"
            ),
        )
        .expect("kubeconfig");
        let port = super::unused_address().port();
        let log_path = self.dir.path().join("operator.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_brook"))
            .args(["operator", "--metrics-listen", &format!("127.0.0.1:{port}")])
            .args([
                "--watch-namespace",
                NAMESPACE,
                "--broker-address",
                &self.address,
            ])
            .args(["--identity", identity, "--lease-namespace", "brook-system"])
            .args(["--log-format", "json"])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log_path).expect("log file"))
            .spawn()
            .expect("brook operator starts");
        // The first line on stdout comes once the telemetry port listens.
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("a line");
        assert!(
            line.starts_with("brook operator started"),
            "{line}: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        OperatorProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log_path,
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
