//! The DeliveryStream controller: run one delivery worker per DeliveryStream (a Deployment,
//! its volume claim, a Service for direct put and metrics), wait for the source Stream before
//! starting it, and report what the worker delivers in the status, with Events when records
//! go to the error output. The children are owned by the DeliveryStream, so Kubernetes deletes
//! them with it; no finalizer is needed, and none can hold up a namespace.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::{apply, apply_status};
use super::context::{Context, ReconcileError, settled_in_terminating_namespace};
use super::resources::delivery::{
    SourceBrokers, delivery_claim, delivery_deployment, delivery_endpoint, delivery_service,
    delivery_service_monitor,
};
use super::status::{DeliveryPhase, WorkerFacts, delivery_status, is_behind};
use crate::api::Stream;
use crate::api::common::condition_types;
use crate::api::delivery::DeliveryStream;

const WAITING_REQUEUE: Duration = Duration::from_secs(10);
/// How often a running DeliveryStream's status is refreshed from its worker.
const STATUS_PERIOD: Duration = Duration::from_secs(30);
/// Freshness beyond the buffering interval that counts as behind.
const BEHIND_SLACK_SECONDS: i64 = 300;

/// Reads the worker's counters from its Prometheus text exposition.
pub fn worker_facts(exposition: &str) -> WorkerFacts {
    let value = |name: &str| -> f64 {
        exposition
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (series.split('{').next()? == name).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    };
    let last = value("brook_delivery_last_delivery_timestamp_seconds") as i64;
    WorkerFacts {
        delivered_records: value("brook_delivery_delivered_records_total") as i64,
        delivered_bytes: value("brook_delivery_delivered_bytes_total") as i64,
        failed_records: value("brook_delivery_failed_records_total") as i64,
        freshness_seconds: value("brook_delivery_data_freshness_seconds") as i64,
        last_delivery_seconds: (last > 0).then_some(last),
    }
}

/// Whether `spec` can be run: the checks the worker makes before it starts, and, in a
/// cluster, a Secret for every bucket (the worker's pod has no other S3 credentials).
pub fn spec_problem(delivery: &DeliveryStream) -> Option<String> {
    if let Err(error) = crate::delivery::check_spec(&delivery.spec) {
        return Some(error.to_string());
    }
    let destination = &delivery.spec.destination;
    let buckets = [
        ("destination.s3", destination.s3.as_ref()),
        (
            "destination.http.s3Backup",
            destination.http.as_ref().and_then(|h| h.s3_backup.as_ref()),
        ),
    ];
    buckets.iter().find_map(|(path, bucket)| {
        bucket
            .filter(|b| b.credentials_secret_ref.is_none())
            .map(|_| format!("{path}.credentialsSecretRef is required: the worker's pod has no other S3 credentials"))
    })
}

/// GETs the worker's metrics at `address` (`host:port`); `None` when it does not answer.
async fn scrape(address: &str) -> Option<WorkerFacts> {
    let (host, port) = address.rsplit_once(':')?;
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, address)
        .body(Empty::<bytes::Bytes>::new())
        .ok()?;
    let exchange = crate::http1::exchange(host, port.parse().ok()?, None, request);
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok((status, body))) if status.is_success() => {
            Some(worker_facts(&String::from_utf8_lossy(&body)))
        }
        _ => None,
    }
}

/// Whether the source Stream serves (and, when it does, its certificate Secret if it serves
/// TLS); otherwise the phase that says what is awaited.
async fn source_ready(
    ctx: &Context,
    delivery: &DeliveryStream,
    namespace: &str,
) -> Result<Result<Option<String>, DeliveryPhase>, ReconcileError> {
    let Some(source) = &delivery.spec.source.stream else {
        return Ok(Ok(None));
    };
    let streams: Api<Stream> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(stream) = streams.get_opt(&source.name).await? else {
        return Ok(Err(DeliveryPhase::WaitingForStream {
            reason: "StreamNotFound",
            message: format!(
                "waiting for Stream {} in namespace {namespace}",
                source.name
            ),
        }));
    };
    let ready = stream.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition_types::READY && c.status == "True")
    });
    if ready {
        Ok(Ok(stream.spec.tls.map(|tls| tls.secret_ref.name)))
    } else {
        Ok(Err(DeliveryPhase::WaitingForStream {
            reason: "StreamNotReady",
            message: format!("waiting for Stream {} to be Ready", source.name),
        }))
    }
}

async fn write_status(
    ctx: &Context,
    delivery: &DeliveryStream,
    phase: &DeliveryPhase,
    namespace: &str,
) -> Result<(), ReconcileError> {
    let name = delivery.name_any();
    let endpoint = delivery
        .spec
        .source
        .direct_put
        .as_ref()
        .map(|_| delivery_endpoint(&name, namespace));
    let behind = match phase {
        DeliveryPhase::Delivering(Some(facts)) => is_behind(
            facts,
            i64::from(delivery.spec.buffering.interval_seconds),
            BEHIND_SLACK_SECONDS,
        ),
        _ => false,
    };
    let previous = delivery.status.as_ref();
    let next = delivery_status(
        previous,
        delivery.metadata.generation,
        phase,
        endpoint,
        behind,
        Time(Timestamp::now()),
    );
    let reference = delivery.object_ref(&());
    let failed_before = previous.and_then(|s| s.failed_records).unwrap_or(0);
    if let Some(failed) = next.failed_records
        && failed > failed_before
    {
        ctx.event(
            &reference,
            true,
            "RecordsFailed",
            "Deliver",
            format!(
                "{} more records went to the error output ({failed} since the worker started)",
                failed - failed_before
            ),
        )
        .await;
    }
    let was_behind = previous.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition_types::DEGRADED && c.reason == "DeliveryBehind")
    });
    if behind && !was_behind {
        ctx.event(
            &reference,
            true,
            "DeliveryBehind",
            "Deliver",
            format!(
                "the oldest undelivered record is {} s old",
                next.data_freshness_seconds.unwrap_or(0)
            ),
        )
        .await;
    }
    if previous == Some(&next) {
        return Ok(());
    }
    let api: Api<DeliveryStream> = Api::namespaced(ctx.client.clone(), namespace);
    apply_status(&api, &name, &next, &ctx.metrics).await?;
    Ok(())
}

/// Reconciles one DeliveryStream, as the controller runtime calls it.
pub async fn reconcile(
    delivery: Arc<DeliveryStream>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = delivery
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let result = reconcile_in(delivery, ctx.as_ref(), namespace.clone()).await;
    settled_in_terminating_namespace(result, &namespace)
}

async fn reconcile_in(
    delivery: Arc<DeliveryStream>,
    ctx: &Context,
    namespace: String,
) -> Result<Action, ReconcileError> {
    // Deleted: Kubernetes removes the owned children. In a namespace being deleted nothing
    // new may be created.
    if delivery.metadata.deletion_timestamp.is_some()
        || ctx.namespace_terminating(&namespace).await?
    {
        return Ok(Action::await_change());
    }
    if let Some(problem) = spec_problem(&delivery) {
        write_status(
            ctx,
            &delivery,
            &DeliveryPhase::InvalidSpec(problem),
            &namespace,
        )
        .await?;
        return Ok(Action::await_change());
    }
    let source_tls = match source_ready(ctx, &delivery, &namespace).await? {
        Ok(tls) => tls,
        Err(waiting) => {
            write_status(ctx, &delivery, &waiting, &namespace).await?;
            return Ok(Action::requeue(WAITING_REQUEUE));
        }
    };
    let source_address = delivery
        .spec
        .source
        .stream
        .as_ref()
        .map(|s| ctx.brokers.address(&namespace, &s.name));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    // A claim's spec is immutable once bound: created once, never re-applied.
    let claim = delivery_claim(&delivery);
    if claims.get_opt(&claim.name_any()).await?.is_none() {
        apply(&claims, &claim, &ctx.metrics).await?;
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    apply(&services, &delivery_service(&delivery), &ctx.metrics).await?;
    if ctx.service_monitors {
        let monitors: Api<kube::api::DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            &namespace,
            &*super::resources::SERVICE_MONITOR_RESOURCE,
        );
        apply(
            &monitors,
            &delivery_service_monitor(&delivery),
            &ctx.metrics,
        )
        .await?;
    }
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = apply(
        &deployments,
        &delivery_deployment(
            &delivery,
            &ctx.defaults,
            source_address.as_deref().map(|address| SourceBrokers {
                address,
                tls_secret: source_tls.as_deref(),
            }),
        ),
        &ctx.metrics,
    )
    .await?;
    let available = live
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        > 0;
    let (phase, requeue) = if available {
        let address = ctx
            .delivery_workers
            .delivery_address(&namespace, &delivery.name_any());
        (
            DeliveryPhase::Delivering(scrape(&address).await),
            STATUS_PERIOD,
        )
    } else {
        (DeliveryPhase::WaitingForWorker, WAITING_REQUEUE)
    };
    write_status(ctx, &delivery, &phase, &namespace).await?;
    Ok(Action::requeue(requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_buckets_need_their_credentials_in_a_cluster() {
        let delivery = |destination: serde_json::Value| -> DeliveryStream {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "brook.dev/v1alpha1", "kind": "DeliveryStream",
                "metadata": {"name": "d", "namespace": "shop"},
                "spec": {"source": {"directPut": {}}, "destination": destination},
            }))
            .expect("a DeliveryStream")
        };
        let problem = spec_problem(&delivery(serde_json::json!({"s3": {"bucket": "archive"}})));
        assert!(problem.is_some_and(|p| p.contains("destination.s3.credentialsSecretRef")));
        let with_secret = delivery(serde_json::json!({"s3": {"bucket": "archive",
            "credentialsSecretRef": {"name": "keys"}}}));
        assert_eq!(spec_problem(&with_secret), None);
        let backup = delivery(serde_json::json!({"http": {"url": "http://x/",
            "s3Backup": {"bucket": "backup"}}}));
        assert!(spec_problem(&backup).is_some_and(|p| p.contains("s3Backup")));
        let plain_http = delivery(serde_json::json!({"http": {"url": "http://x/"}}));
        assert_eq!(spec_problem(&plain_http), None);
    }

    #[test]
    fn delivery_worker_metrics_are_read_into_facts() {
        let text = "# HELP x\n\
            brook_delivery_delivered_records_total 120\n\
            brook_delivery_delivered_bytes_total 4096\n\
            brook_delivery_failed_records_total{type=\"processing-failed\"} 2\n\
            brook_delivery_failed_records_total{type=\"http-endpoint-failed\"} 3\n\
            brook_delivery_data_freshness_seconds 7\n\
            brook_delivery_last_delivery_timestamp_seconds 1796000000\n";
        assert_eq!(
            worker_facts(text),
            WorkerFacts {
                delivered_records: 120,
                delivered_bytes: 4096,
                failed_records: 5,
                freshness_seconds: 7,
                last_delivery_seconds: Some(1_796_000_000),
            }
        );
        assert_eq!(worker_facts("").last_delivery_seconds, None);
    }
}
