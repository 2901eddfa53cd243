//! `brook operator`: turns `Stream`, `Consumer`, `Queue` and `DeliveryStream` resources into
//! running brokers, registrations and workers, and keeps them as declared. One controller per kind; a reconcile is a pipeline of pure decisions
//! (`resources`, `status`) with thin I/O around them (`apply`, `kinesis`).

pub mod apply;
pub mod argocd;
pub mod autoscaler;
pub mod broker_pods;
pub mod chart;
pub mod consumer;
pub mod context;
pub mod delivery;
pub mod install;
pub mod kinesis;
pub mod leader;
pub mod prometheus;
pub mod quantity;
pub mod queue;
pub mod resources;
pub mod runner;
pub mod status;
pub mod stream;
pub mod stream_autoscaling;
pub mod stream_change;
pub mod stream_pods;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::Instrument;

pub use context::{BrokerAddresses, Context, OperatorMetrics, ReconcileError};

use crate::api::delivery::DeliveryStream;
use crate::api::{Consumer, Queue, Stream};

/// Why the operator could not run.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No Kubernetes client could be configured (no in-cluster account, no kubeconfig).
    #[error("no Kubernetes configuration: {0}")]
    Config(String),
    /// The telemetry port could not be bound.
    #[error("cannot listen on {address}: {message}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// What failed.
        message: String,
    },
    /// Leadership was lost; the process exits so a restart starts clean.
    #[error("lost the leader lease")]
    LostLease,
}

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub metrics_listen: SocketAddr,
    /// Only this namespace's resources; every namespace when absent.
    pub watch_namespace: Option<String>,
    /// Leader election: the Lease's namespace and this replica's identity; off when absent.
    pub leader_election: Option<(String, String)>,
    /// Image, region and account of the brokers.
    pub defaults: resources::BrokerDefaults,
    /// Where the brokers are reached.
    pub brokers: BrokerAddresses,
    /// How often a serving resource is re-checked against its brokers.
    pub recheck: Duration,
}

fn object_key(object: &DynamicObject) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Reads a watched object as its typed resource; a malformed one is an error message.
pub fn parse_object<K: DeserializeOwned>(object: &DynamicObject) -> Result<K, String> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| e.to_string())
}

/// A resource the operator cannot read: its status says so and, if it is being deleted, the
/// finalizer is released so its namespace never hangs. The other resources carry on.
pub async fn handle_malformed(
    ctx: &Context,
    object: &DynamicObject,
    resource: &ApiResource,
    finalizer: &str,
    problem: &str,
) -> Result<Action, ReconcileError> {
    let namespace = object
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, resource);
    let name = object.name_any();
    let finalizers = object.finalizers();
    if object.metadata.deletion_timestamp.is_some() {
        if let Some(index) = finalizers.iter().position(|f| f == finalizer) {
            let patch = serde_json::json!([
                {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": finalizer},
                {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
            ]);
            let patch: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
            api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await?;
        }
        return Ok(Action::await_change());
    }
    let message = format!("the operator cannot read this resource: {problem}");
    let already = object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["message"] == message.as_str()));
    if !already {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let conditions: Vec<serde_json::Value> = [("Ready", "False"), ("Degraded", "True")]
            .iter()
            .map(|(type_, status)| {
                serde_json::json!({"type": type_, "status": status, "reason": "MalformedResource",
                    "message": message, "lastTransitionTime": now})
            })
            .collect();
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// Reconciles a watched object as its typed resource `K` with `reconcile`, or reports it
/// malformed; counts the outcome in the metrics under `controller`.
async fn reconcile_object<K, F, Fut>(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
    controller: &'static str,
    finalizer: &'static str,
    reconcile: F,
) -> Result<Action, ReconcileError>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>>,
{
    let started = Instant::now();
    let key = format!("{controller}/{}", object_key(&object));
    let span = tracing::info_span!("reconcile", controller, resource = %object_key(&object));
    let result = async {
        match parse_object::<K>(&object) {
            Ok(typed) => reconcile(Arc::new(typed), ctx.clone()).await,
            Err(problem) => {
                let resource = ApiResource::erase::<K>(&());
                handle_malformed(&ctx, &object, &resource, finalizer, &problem).await
            }
        }
    }
    .instrument(span)
    .await;
    ctx.metrics.observe(
        controller,
        started.elapsed().as_secs_f64(),
        result.as_ref().err(),
    );
    if let Ok(action) = &result {
        ctx.backoff.reset(&key);
        tracing::info!(
            controller,
            resource = %object_key(&object),
            duration_ms = started.elapsed().as_millis() as u64,
            next = ?action,
            "reconciled"
        );
    }
    result
}

/// The error policy of `controller`: log, then retry with a per-object exponential backoff.
fn error_policy(
    controller: &'static str,
) -> impl Fn(Arc<DynamicObject>, &ReconcileError, Arc<Context>) -> Action {
    move |object, error, ctx| {
        let resource = object_key(&object);
        let delay = ctx.backoff.next(&format!("{controller}/{resource}"));
        tracing::warn!(controller, %resource, %error, retry_in = ?delay, "reconcile failed");
        Action::requeue(delay)
    }
}

async fn reconcile_stream_object(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    reconcile_object::<Stream, _, _>(object, ctx, "stream", stream::FINALIZER, stream::reconcile)
        .await
}

async fn reconcile_consumer_object(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    reconcile_object::<Consumer, _, _>(
        object,
        ctx,
        "consumer",
        consumer::FINALIZER,
        consumer::reconcile,
    )
    .await
}

async fn reconcile_queue_object(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    reconcile_object::<Queue, _, _>(object, ctx, "queue", queue::FINALIZER, queue::reconcile).await
}

async fn reconcile_delivery_object(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // No finalizer: a DeliveryStream's children are owned and garbage-collected with it.
    reconcile_object::<DeliveryStream, _, _>(object, ctx, "delivery", "", delivery::reconcile).await
}

fn dynamic_api(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

fn typed_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Whether the API server serves the Prometheus Operator's ServiceMonitor kind.
pub async fn serves_service_monitors(client: &Client) -> bool {
    match kube::discovery::group(client, "monitoring.coreos.com").await {
        Ok(group) => group
            .versioned_resources("v1")
            .iter()
            .any(|(resource, _)| resource.kind == "ServiceMonitor"),
        Err(_) => false,
    }
}

/// Maps a Stream to the objects in `store` (of `resource`) whose `spec.streamName` names it, in
/// its namespace: the Consumers or Queues a change of the Stream wakes.
fn readers_of_stream(
    store: kube::runtime::reflector::Store<DynamicObject>,
    resource: ApiResource,
) -> impl Fn(DynamicObject) -> Vec<ObjectRef<DynamicObject>> + Send + Sync + 'static {
    move |stream: DynamicObject| {
        let namespace = stream.namespace();
        let name = stream.name_any();
        store
            .state()
            .into_iter()
            .filter(|o| o.namespace() == namespace && o.data["spec"]["streamName"] == name.as_str())
            .map(|o| ObjectRef::from_obj_with(o.as_ref(), resource.clone()))
            .collect()
    }
}

/// Runs the controllers (Stream, Consumer, Queue, DeliveryStream) until `shutdown` resolves.
pub async fn run_controllers(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let config = watcher::Config::default();
    // Only Brook's own children are watched (and cached), not every object of their kinds.
    let children = watcher::Config::default().labels(&resources::managed_children_selector());
    let stream_resource = ApiResource::erase::<Stream>(&());
    let consumer_resource = ApiResource::erase::<Consumer>(&());
    let streams = Controller::new_with(
        dynamic_api(&client, ns, &stream_resource),
        config.clone(),
        stream_resource.clone(),
    )
    .owns(typed_api::<StatefulSet>(&client, ns), children.clone())
    .owns(typed_api::<Service>(&client, ns), children.clone())
    .owns(typed_api::<ConfigMap>(&client, ns), children.clone())
    .owns(
        typed_api::<PodDisruptionBudget>(&client, ns),
        children.clone(),
    )
    .owns(typed_api::<NetworkPolicy>(&client, ns), children)
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile_stream_object, error_policy("stream"), ctx.clone())
    .for_each(|_| async {});

    let consumers_controller = Controller::new_with(
        dynamic_api(&client, ns, &consumer_resource),
        config.clone(),
        consumer_resource.clone(),
    );
    let readers = readers_of_stream(consumers_controller.store(), consumer_resource.clone());
    let consumers = consumers_controller
        // A Stream that changes (becomes Ready, goes away) wakes the Consumers that read it.
        .watches_with(
            dynamic_api(&client, ns, &stream_resource),
            stream_resource.clone(),
            config.clone(),
            readers,
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile_consumer_object,
            error_policy("consumer"),
            ctx.clone(),
        )
        .for_each(|_| async {});

    let queue_resource = ApiResource::erase::<Queue>(&());
    let queues_controller = Controller::new_with(
        dynamic_api(&client, ns, &queue_resource),
        config.clone(),
        queue_resource.clone(),
    );
    let readers = readers_of_stream(queues_controller.store(), queue_resource);
    let queues = queues_controller
        // A Stream that changes (becomes Ready, goes away) wakes the Queues on it.
        .watches_with(
            dynamic_api(&client, ns, &stream_resource),
            stream_resource.clone(),
            config.clone(),
            readers,
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_queue_object, error_policy("queue"), ctx.clone())
        .for_each(|_| async {});

    let delivery_resource = ApiResource::erase::<DeliveryStream>(&());
    let delivery_controller = Controller::new_with(
        dynamic_api(&client, ns, &delivery_resource),
        config.clone(),
        delivery_resource.clone(),
    );
    let delivery_store = delivery_controller.store();
    let children = watcher::Config::default().labels(&resources::managed_children_selector());
    let deliveries = delivery_controller
        .owns(typed_api::<Deployment>(&client, ns), children.clone())
        .owns(typed_api::<Service>(&client, ns), children.clone())
        .owns(typed_api::<PersistentVolumeClaim>(&client, ns), children)
        // A source Stream that becomes Ready starts the DeliveryStreams that wait for it.
        .watches_with(
            dynamic_api(&client, ns, &stream_resource),
            stream_resource,
            config,
            move |stream: DynamicObject| {
                let namespace = stream.namespace();
                let name = stream.name_any();
                delivery_store
                    .state()
                    .into_iter()
                    .filter(|d| {
                        d.namespace() == namespace
                            && d.data["spec"]["source"]["stream"]["name"] == name.as_str()
                    })
                    .map(|d| ObjectRef::from_obj_with(d.as_ref(), delivery_resource.clone()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_delivery_object, error_policy("delivery"), ctx)
        .for_each(|_| async {});
    futures::join!(streams, consumers, queues, deliveries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_that_does_not_fit_its_type_is_reported_not_panicked_on() {
        let resource = ApiResource::erase::<Stream>(&());
        let mut object = DynamicObject::new("orders", &resource).within("shop");
        object.data = serde_json::json!({"spec": {"shards": "many"}});
        let problem = parse_object::<Stream>(&object).expect_err("shards must be a number");
        assert!(problem.contains("invalid type"), "{problem}");
        object.data = serde_json::json!({"spec": {"shards": 3}});
        let stream = parse_object::<Stream>(&object).expect("a well-formed Stream");
        assert_eq!(stream.spec.shards, 3);
    }
}
