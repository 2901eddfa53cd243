//! The DeliveryStream controller against a mocked API server, with a real broker for the
//! source Stream and a real `brook delivery` worker (and S3 server) for the status it reports:
//! it waits for the Stream, creates the worker's Deployment, claim and Service owned by the
//! DeliveryStream, reports delivered records from the worker, rejects what cannot run, and
//! writes nothing when nothing changed.

mod support;

use std::sync::Arc;

use brook::api::delivery::DeliveryStream;
use brook::operator::BrokerAddresses;
use serde_json::{Value, json};
use support::delivery::{Worker, s3_destination};
use support::operator::{ADMIN_SECRET, CLAIMS, Harness, NAMESPACE, SERVICES, condition};
use support::s3::S3Server;

const DELIVERIES: &str = "/apis/brook.dev/v1alpha1/namespaces/shop/deliverystreams";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";

fn apply_delivery(harness: &Harness, name: &str, spec: Value) {
    harness.mock.insert(
        DELIVERIES,
        json!({"apiVersion": "brook.dev/v1alpha1", "kind": "DeliveryStream",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}),
    );
}

fn delivery(harness: &Harness, name: &str) -> DeliveryStream {
    serde_json::from_value(harness.mock.get(DELIVERIES, name).expect("stored")).expect("typed")
}

async fn reconcile(harness: &Harness, name: &str) -> kube::runtime::controller::Action {
    brook::operator::delivery::reconcile(Arc::new(delivery(harness, name)), harness.ctx.clone())
        .await
        .expect("reconcile")
}

fn conditions(
    harness: &Harness,
    name: &str,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    delivery(harness, name)
        .status
        .map(|s| s.conditions)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_controller_waits_for_its_stream_runs_the_worker_and_reports_deliveries() {
    let mut harness = Harness::with_broker("op-delivery", "clicks");
    let s3 = S3Server::start(&harness.dir.path().join("s3"), &["archive"]).await;
    let spec = json!({
        "source": {"stream": {"name": "clicks", "startingPosition": "TRIM_HORIZON"}},
        "buffering": {"sizeMiB": 1, "intervalSeconds": 1},
        "processing": {"appendNewline": true},
        "destination": s3_destination(&s3, "archive", "clicks/", "GZIP"),
    });
    let mut spec = spec;
    spec["destination"]["s3"]["credentialsSecretRef"] = json!({"name": "archive-keys"});
    apply_delivery(&harness, "clicks-archive", spec.clone());

    // No Stream yet: waiting, and no worker.
    reconcile(&harness, "clicks-archive").await;
    let found = conditions(&harness, "clicks-archive");
    assert_eq!(condition(&found, "Ready"), ("False", "StreamNotFound"));
    assert_eq!(condition(&found, "Progressing"), ("True", "StreamNotFound"));
    assert!(
        harness
            .mock
            .get(DEPLOYMENTS, "clicks-archive-delivery")
            .is_none()
    );

    // The Stream serves: the worker's children appear, owned by the DeliveryStream.
    harness.serving_stream("clicks", json!({"shards": 2})).await;
    reconcile(&harness, "clicks-archive").await;
    let deployment = harness
        .mock
        .get(DEPLOYMENTS, "clicks-archive-delivery")
        .expect("the worker's Deployment");
    for child in [
        deployment.clone(),
        harness
            .mock
            .get(SERVICES, "clicks-archive-delivery")
            .expect("Service"),
        harness
            .mock
            .get(CLAIMS, "clicks-archive-delivery-data")
            .expect("claim"),
    ] {
        let owner = &child["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "DeliveryStream");
        assert_eq!(owner["name"], "clicks-archive");
        assert_eq!(owner["controller"], true);
    }
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        condition(&conditions(&harness, "clicks-archive"), "Ready"),
        ("False", "WaitingForWorker")
    );
    assert!(
        delivery(&harness, "clicks-archive")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty(),
        "no finalizer: deletion is Kubernetes' garbage collection"
    );

    // The worker runs (here as a process, as the pod would) and delivers.
    let broker = harness.broker.as_ref().expect("broker");
    let source = broker.endpoint.trim_start_matches("http://").to_owned();
    let mut worker = Worker::start(
        "clicks-archive",
        spec,
        &harness.dir.path().join("worker"),
        &[
            "--source-endpoint",
            &source,
            "--source-access-key-id",
            "brook-operator",
            "--source-secret-access-key",
            ADMIN_SECRET,
        ],
    );
    let worker_address = worker.endpoint.trim_start_matches("http://").to_owned();
    Arc::get_mut(&mut harness.ctx)
        .expect("the harness holds the only context")
        .delivery_workers = BrokerAddresses::Fixed(worker_address);
    harness
        .mock
        .modify(DEPLOYMENTS, "clicks-archive-delivery", |d| {
            d["status"] = json!({"replicas": 1, "availableReplicas": 1, "readyReplicas": 1});
        });
    let entries: Vec<_> = (0..40)
        .map(|i| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(aws_sdk_kinesis::primitives::Blob::new(format!("click-{i}")))
                .build()
                .expect("entry")
        })
        .collect();
    harness
        .kinesis()
        .put_records()
        .stream_name("clicks")
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 40.0)
        .await;
    reconcile(&harness, "clicks-archive").await;
    let stored = delivery(&harness, "clicks-archive");
    let status = stored.status.clone().expect("status");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("True", "Delivering")
    );
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("False", "AsExpected")
    );
    assert_eq!(status.delivered_records, Some(40));
    assert!(status.delivered_bytes.unwrap_or(0) > 0);
    assert!(status.last_delivery_time.is_some());
    assert_eq!(
        status.endpoint, None,
        "a stream source takes no direct puts"
    );
    assert_eq!(status.observed_generation, stored.metadata.generation);

    // Nothing changed: the next reconcile only reads.
    harness.mock.clear_log();
    reconcile(&harness, "clicks-archive").await;
    assert_eq!(harness.mock.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn delivery_controller_rejects_what_the_worker_could_not_run_and_names_the_direct_put_endpoint()
 {
    let harness = Harness::without_broker("op-delivery-invalid");
    apply_delivery(
        &harness,
        "bad-prefix",
        json!({"source": {"directPut": {}},
               "destination": {"s3": {"bucket": "archive", "prefix": "x/!{nonsense}/"}}}),
    );
    reconcile(&harness, "bad-prefix").await;
    let found = conditions(&harness, "bad-prefix");
    assert_eq!(condition(&found, "Ready"), ("False", "InvalidSpec"));
    assert_eq!(condition(&found, "Degraded"), ("True", "InvalidSpec"));
    let message = &found
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded")
        .message;
    assert!(message.contains("nonsense"), "{message}");
    assert!(
        harness
            .mock
            .get(DEPLOYMENTS, "bad-prefix-delivery")
            .is_none()
    );

    apply_delivery(
        &harness,
        "audit",
        json!({"source": {"directPut": {}},
               "destination": {"http": {"url": "https://collector.example/in"}}}),
    );
    reconcile(&harness, "audit").await;
    let status = delivery(&harness, "audit").status.expect("status");
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://audit-delivery.shop.svc:4573")
    );
    let deployment = harness
        .mock
        .get(DEPLOYMENTS, "audit-delivery")
        .expect("Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .clone();
    assert!(env.iter().all(|e| e["name"] != "BROOK_SOURCE_ENDPOINT"));

    // Being deleted (held by someone else's finalizer): nothing is applied any more.
    harness.mock.modify(DELIVERIES, "audit", |d| {
        d["metadata"]["finalizers"] = json!(["example.com/hold"]);
    });
    harness.mock.delete(DELIVERIES, "audit");
    harness.mock.clear_log();
    reconcile(&harness, "audit").await;
    assert_eq!(harness.mock.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn delivery_workers_get_a_service_monitor_when_the_prometheus_operator_is_there() {
    let harness = Harness::without_broker("op-delivery-monitor").with_service_monitors();
    apply_delivery(
        &harness,
        "audit",
        json!({"source": {"directPut": {}},
               "destination": {"http": {"url": "https://collector.example/in"}}}),
    );
    reconcile(&harness, "audit").await;
    let monitor = harness
        .mock
        .get(support::operator::SERVICE_MONITORS, "audit-delivery")
        .expect("a ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "firehose");
    assert_eq!(endpoint["relabelings"][0]["replacement"], "brook-delivery");
    assert_eq!(
        monitor["metadata"]["ownerReferences"][0]["kind"],
        "DeliveryStream"
    );
}
