//! What every reconcile shares: the Kubernetes client, the event recorder, where the brokers
//! are reached, the operator's metrics; and the error a reconcile can end with.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use k8s_openapi::api::core::v1::{Namespace, Secret};

use super::kinesis::{AdminError, BrokerAdmin};
use super::resources::{ADMIN_ACCESS_KEY_ID, BrokerDefaults, ChildNames, KINESIS_PORT, MANAGER};

/// Why a reconcile failed; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A broker admin call failed in a way a retry may fix.
    #[error(transparent)]
    Broker(#[from] AdminError),
    /// The resource has no namespace or name.
    #[error("the resource has no {0}")]
    Unnamed(&'static str),
    /// The system could not supply randomness for a new admin key.
    #[error("no randomness for a new admin key: {0}")]
    Randomness(String),
}

impl ReconcileError {
    /// A stable short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kubernetes_api",
            Self::Finalizer(_) => "finalizer",
            Self::Broker(AdminError::Unreachable { .. }) => "broker_unreachable",
            Self::Broker(_) => "broker_api",
            Self::Unnamed(_) => "unnamed",
            Self::Randomness(_) => "randomness",
        }
    }
}

/// How the operator reaches a stream's brokers.
#[derive(Clone, Debug)]
pub enum BrokerAddresses {
    /// The client Service's cluster DNS name (in a cluster).
    ClusterDns,
    /// One fixed `host:port` for every stream (tests, or an operator run outside the cluster
    /// through a port-forward).
    Fixed(String),
    /// The Service and pod 0 at `host:port`s of their own (an operator run outside the cluster
    /// through a port-forward to each).
    Forwarded {
        /// Where the client Service (any pod) is reached.
        service: String,
        /// Where pod 0 is reached.
        home: String,
    },
}

impl BrokerAddresses {
    /// `host:port` of the Kinesis API of the stream `name` in `namespace`.
    pub fn address(&self, namespace: &str, name: &str) -> String {
        match self {
            Self::ClusterDns => format!("{name}.{namespace}.svc:{KINESIS_PORT}"),
            Self::Fixed(address)
            | Self::Forwarded {
                service: address, ..
            } => address.clone(),
        }
    }

    /// `host:port` of the Kinesis API of pod 0 of stream `name`'s brokers, which holds the
    /// authoritative catalog: the operator's calls read and change it there, never through a
    /// replica that may lag (`docs/cluster.md`).
    pub fn admin_address(&self, namespace: &str, name: &str) -> String {
        match self {
            Self::ClusterDns => format!(
                "{name}-0.{}.{namespace}.svc:{KINESIS_PORT}",
                super::resources::ChildNames::for_stream(name).headless_service
            ),
            Self::Fixed(address) | Self::Forwarded { home: address, .. } => address.clone(),
        }
    }

    /// `host:port` of the worker of the DeliveryStream `name` in `namespace`.
    pub fn delivery_address(&self, namespace: &str, name: &str) -> String {
        use super::resources::delivery::{DeliveryChildNames, WORKER_PORT};
        match self {
            Self::ClusterDns => format!(
                "{}.{namespace}.svc:{WORKER_PORT}",
                DeliveryChildNames::for_delivery(name).service
            ),
            Self::Fixed(address)
            | Self::Forwarded {
                service: address, ..
            } => address.clone(),
        }
    }
}

/// Reconcile counts, durations and errors per controller.
#[derive(Clone)]
pub struct OperatorMetrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    durations: HistogramVec,
    applies: IntCounterVec,
    autoscaler_evaluations: IntCounterVec,
}

/// Outcomes of an autoscaler evaluation, as `brook_operator_autoscaler_evaluations_total`
/// labels them.
pub const AUTOSCALER_OUTCOMES: [&str; 4] = ["hold", "resized", "metrics_unavailable", "error"];

impl OperatorMetrics {
    /// Registers the operator's metrics in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "brook_operator_reconciles_total",
                "Reconciles run, by controller and outcome",
            ),
            &["controller", "outcome"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "brook_operator_reconcile_errors_total",
                "Reconciles that failed, by controller and error",
            ),
            &["controller", "error"],
        )
        .expect("valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "brook_operator_reconcile_duration_seconds",
                "Time one reconcile takes, by controller",
            )
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let applies = IntCounterVec::new(
            Opts::new(
                "brook_operator_applies_total",
                "Server-side applies sent, by kind (status writes as <Kind>/status); a steady state sends none",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let autoscaler_evaluations = IntCounterVec::new(
            Opts::new(
                "brook_operator_autoscaler_evaluations_total",
                "Autoscaler evaluations of a stream, by outcome: hold, resized, metrics_unavailable (nothing scaled down) or error (the brokers failed)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in AUTOSCALER_OUTCOMES {
            autoscaler_evaluations.with_label_values(&[outcome]);
        }
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(durations.clone()),
            Box::new(applies.clone()),
            Box::new(autoscaler_evaluations.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Self {
            registry,
            reconciles,
            failures,
            durations,
            applies,
            autoscaler_evaluations,
        }
    }

    /// Counts one autoscaler evaluation ending in `outcome` (one of [`AUTOSCALER_OUTCOMES`]).
    pub fn autoscaler_evaluated(&self, outcome: &str) {
        self.autoscaler_evaluations
            .with_label_values(&[outcome])
            .inc();
    }

    /// Autoscaler evaluations so far that ended in `outcome`.
    pub fn autoscaler_evaluations(&self, outcome: &str) -> u64 {
        self.autoscaler_evaluations
            .with_label_values(&[outcome])
            .get()
    }

    /// Counts one server-side apply of `kind` that was sent to the API server.
    pub fn applied(&self, kind: &str) {
        self.applies.with_label_values(&[kind]).inc();
    }

    /// Counts one reconcile of `controller` that took `seconds` and ended with `error`.
    pub fn observe(&self, controller: &str, seconds: f64, error: Option<&ReconcileError>) {
        let outcome = if error.is_some() { "error" } else { "ok" };
        self.reconciles
            .with_label_values(&[controller, outcome])
            .inc();
        self.durations
            .with_label_values(&[controller])
            .observe(seconds);
        if let Some(error) = error {
            self.failures
                .with_label_values(&[controller, error.label()])
                .inc();
        }
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-object failure counts, for exponential backoff in the error policy.
#[derive(Default)]
pub struct Backoff(std::sync::Mutex<std::collections::HashMap<String, u32>>);

impl Backoff {
    /// Counts a failure of `key` and returns how long to wait before the retry.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_delay(*count)
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// The retry delay after `failures` consecutive failures: 1 s doubling up to 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(9);
    Duration::from_secs((1u64 << exponent).min(300))
}

/// Everything a reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Image, region and account of the brokers.
    pub defaults: BrokerDefaults,
    /// Where the brokers are reached.
    pub brokers: BrokerAddresses,
    /// Whether the Prometheus Operator's ServiceMonitor kind is served.
    pub service_monitors: bool,
    /// How often a serving resource is re-checked against the brokers.
    pub recheck: Duration,
    /// Reconcile metrics.
    pub metrics: OperatorMetrics,
    /// Failure counts behind the error policy's backoff.
    pub backoff: Backoff,
    /// The demand histories of the autoscaled streams.
    pub autoscaler: crate::operator::autoscaler::Autoscaler,
    /// Where the DeliveryStream workers are reached (for their metrics).
    pub delivery_workers: BrokerAddresses,
    recorder: Recorder,
}

impl Context {
    /// A context for `client`; events are reported as `instance` (the pod name).
    pub fn new(
        client: Client,
        defaults: BrokerDefaults,
        brokers: BrokerAddresses,
        service_monitors: bool,
        instance: Option<String>,
    ) -> Arc<Self> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.to_owned(),
                instance,
            },
        );
        Arc::new(Self {
            client,
            defaults,
            brokers,
            service_monitors,
            recheck: Duration::from_secs(60),
            metrics: OperatorMetrics::new(),
            autoscaler: crate::operator::autoscaler::Autoscaler::default(),
            delivery_workers: BrokerAddresses::ClusterDns,
            backoff: Backoff::default(),
            recorder,
        })
    }

    /// An admin client for any pod of stream `name`'s brokers (through its Service), signing
    /// with `key`: it reads the pod's catalog replica, for when pod 0 does not answer.
    pub fn any_pod_admin(&self, namespace: &str, name: &str, key: &str) -> BrokerAdmin {
        BrokerAdmin::new(
            self.brokers.address(namespace, name),
            ADMIN_ACCESS_KEY_ID,
            key,
            &self.defaults.region,
        )
    }

    /// An admin client for the brokers of stream `name` in `namespace`, signing with `key`.
    pub fn admin_with_key(&self, namespace: &str, name: &str, key: &str) -> BrokerAdmin {
        BrokerAdmin::new(
            self.brokers.admin_address(namespace, name),
            ADMIN_ACCESS_KEY_ID,
            key,
            &self.defaults.region,
        )
    }

    /// An admin client for the brokers of `stream`, when its admin Secret exists; over TLS
    /// when the Stream asks for it.
    pub async fn broker_admin(
        &self,
        stream: &crate::api::Stream,
    ) -> Result<Option<BrokerAdmin>, kube::Error> {
        let namespace = stream.metadata.namespace.as_deref().unwrap_or("default");
        let name = stream.metadata.name.as_deref().unwrap_or_default();
        let secrets: kube::Api<Secret> = kube::Api::namespaced(self.client.clone(), namespace);
        let key = secrets
            .get_opt(&ChildNames::for_stream(name).admin_secret)
            .await?
            .and_then(|secret| secret.data)
            .and_then(|data| data.get(ADMIN_ACCESS_KEY_ID).cloned());
        let Some(key) = key else {
            return Ok(None);
        };
        let tls = self.broker_tls(stream).await?;
        Ok(Some(
            self.admin_with_key(namespace, name, String::from_utf8_lossy(&key.0).trim())
                .with_tls(tls),
        ))
    }

    /// Whom the brokers of `stream` are trusted by, when it asks for TLS: the `ca.crt` of
    /// its certificate Secret (the system's roots when the Secret or the key is missing or
    /// unreadable: the handshake then fails and says why).
    pub async fn broker_tls(
        &self,
        stream: &crate::api::Stream,
    ) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, kube::Error> {
        let Some(tls) = &stream.spec.tls else {
            return Ok(None);
        };
        let namespace = stream.metadata.namespace.as_deref().unwrap_or("default");
        let secrets: kube::Api<Secret> = kube::Api::namespaced(self.client.clone(), namespace);
        let ca = secrets
            .get_opt(&tls.secret_ref.name)
            .await?
            .and_then(|secret| secret.data)
            .and_then(|data| data.get("ca.crt").cloned());
        let config = ca
            .and_then(|pem| crate::http1::client_tls(Some(&pem.0)).ok())
            .or_else(|| crate::http1::client_tls(None).ok());
        Ok(config.map(std::sync::Arc::new))
    }

    /// Whether `namespace` is being deleted (a namespace that cannot be found is not).
    pub async fn namespace_terminating(&self, namespace: &str) -> Result<bool, kube::Error> {
        let namespaces: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        Ok(namespaces
            .get_opt(namespace)
            .await?
            .is_some_and(|live| is_terminating(&live)))
    }

    /// Publishes a Kubernetes Event about `object`; a failure is logged, never fatal.
    pub async fn event(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        // An Event is new content, which a namespace being deleted refuses.
        if let Some(namespace) = object.namespace.as_deref()
            && self.namespace_terminating(namespace).await.unwrap_or(false)
        {
            tracing::info!(reason, %namespace, "the namespace is being deleted: no Event");
            return;
        }
        match self.recorder.publish(&event, object).await {
            Err(error) if refused_by_terminating_namespace(&error) => {
                tracing::info!(reason, "the namespace is being deleted: no Event");
            }
            Err(error) => tracing::warn!(%error, reason, "could not publish an event"),
            Ok(()) => {}
        }
    }
}

/// Whether a namespace is being deleted: it has a deletion timestamp or reports Terminating.
pub fn is_terminating(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// Whether the API server refused a write because the namespace is being deleted: its
/// lifecycle admission refuses new content from the moment deletion begins, which can fall
/// between the operator's look at the namespace and its create.
pub fn refused_by_terminating_namespace(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    status.code == 403
        && status.details.as_ref().is_some_and(|details| {
            details
                .causes
                .iter()
                .any(|cause| cause.reason == "NamespaceTerminating")
        })
}

/// A reconcile of an object in `namespace` that the API server refused because the namespace
/// is being deleted is done, not failed: everything in it is about to be deleted, and a retry
/// would only be refused again.
pub fn settled_in_terminating_namespace(
    result: Result<kube::runtime::controller::Action, ReconcileError>,
    namespace: &str,
) -> Result<kube::runtime::controller::Action, ReconcileError> {
    match result {
        Err(ReconcileError::Kube(error)) if refused_by_terminating_namespace(&error) => {
            tracing::info!(%namespace, "the namespace is being deleted: nothing more is created");
            Ok(kube::runtime::controller::Action::await_change())
        }
        other => other,
    }
}

/// Runs `apply` or, once the object is being deleted, `cleanup`, behind the finalizer
/// `name`: the finalizer goes on before the first apply and comes off after a cleanup that
/// succeeded.
pub async fn finalized<K, A, C, FA, FC>(
    object: Arc<K>,
    ctx: &Context,
    name: &str,
    apply: A,
    cleanup: C,
) -> Result<kube::runtime::controller::Action, ReconcileError>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    A: FnOnce(Arc<K>) -> FA,
    C: FnOnce(Arc<K>) -> FC,
    FA: std::future::Future<Output = Result<kube::runtime::controller::Action, ReconcileError>>,
    FC: std::future::Future<Output = Result<kube::runtime::controller::Action, ReconcileError>>,
{
    use kube::runtime::finalizer::{Error, Event as FinalizerEvent, finalizer};
    let namespace = kube::ResourceExt::namespace(object.as_ref())
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    // Nothing may be created in a namespace that is being deleted: its objects are about to
    // be deleted too, and their cleanup runs then.
    if object.meta().deletion_timestamp.is_none() && ctx.namespace_terminating(&namespace).await? {
        tracing::info!(%namespace, "the namespace is being deleted: nothing is applied");
        return Ok(kube::runtime::controller::Action::await_change());
    }
    let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, name, object, |event| async move {
        match event {
            FinalizerEvent::Apply(object) => apply(object).await,
            FinalizerEvent::Cleanup(object) => cleanup(object).await,
        }
    })
    .await
    .or_else(|error| match error {
        Error::ApplyFailed(inner) | Error::CleanupFailed(inner) => Err(inner),
        // A reconcile queued before the object went away finds it gone: its cleanup is done.
        Error::RemoveFinalizer(kube::Error::Api(status)) if status.code == 404 => {
            Ok(kube::runtime::controller::Action::await_change())
        }
        other => Err(ReconcileError::Finalizer(other.to_string())),
    });
    settled_in_terminating_namespace(result, &namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_terminating_once_deleted_or_reported_so() {
        use k8s_openapi::api::core::v1::NamespaceStatus;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let mut namespace = Namespace::default();
        assert!(!is_terminating(&namespace));
        namespace.status = Some(NamespaceStatus {
            phase: Some("Active".to_owned()),
            ..NamespaceStatus::default()
        });
        assert!(!is_terminating(&namespace));
        namespace.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(is_terminating(&namespace));
        namespace.metadata.deletion_timestamp = None;
        namespace.status = Some(NamespaceStatus {
            phase: Some("Terminating".to_owned()),
            ..NamespaceStatus::default()
        });
        assert!(is_terminating(&namespace));
    }

    #[test]
    fn retries_back_off_from_one_second_to_five_minutes_and_reset_on_success() {
        let delays: Vec<u64> = (1..=11).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        let backoff = Backoff::default();
        assert_eq!(backoff.next("stream/shop/orders"), Duration::from_secs(1));
        assert_eq!(backoff.next("stream/shop/orders"), Duration::from_secs(2));
        assert_eq!(backoff.next("stream/shop/other"), Duration::from_secs(1));
        backoff.reset("stream/shop/orders");
        assert_eq!(backoff.next("stream/shop/orders"), Duration::from_secs(1));
    }

    #[test]
    fn reconcile_metrics_count_outcomes_errors_and_durations_per_controller() {
        let metrics = OperatorMetrics::new();
        metrics.observe("stream", 0.02, None);
        metrics.observe("stream", 0.5, Some(&ReconcileError::Unnamed("namespace")));
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&metrics.registry.gather(), &mut text)
            .expect("renders");
        assert!(
            text.contains(r#"brook_operator_reconciles_total{controller="stream",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"brook_operator_reconciles_total{controller="stream",outcome="error"} 1"#
            )
        );
        assert!(text.contains(
            r#"brook_operator_reconcile_errors_total{controller="stream",error="unnamed"} 1"#
        ));
        assert!(
            text.contains(
                r#"brook_operator_reconcile_duration_seconds_count{controller="stream"} 2"#
            )
        );
    }
}
