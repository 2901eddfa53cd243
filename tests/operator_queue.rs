//! The Queue controller and a Stream's capacity mode, against a mocked API server and a real
//! managed broker: a Queue on a PROVISIONED Stream is refused with the brokers' reason, the
//! Stream switched to ON_DEMAND in its spec, the queue created and delivering records, its
//! attributes changed in place, and deleted with the resource.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::broker::post_json;
use support::operator::{Harness, NAMESPACE, QUEUES, condition};

fn apply_queue(harness: &Harness, name: &str, spec: Value) {
    match harness.mock.get(QUEUES, name) {
        Some(_) => {
            harness
                .mock
                .modify(QUEUES, name, |object| object["spec"] = spec);
        }
        None => {
            harness.mock.insert(
                QUEUES,
                json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Queue",
                    "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}),
            );
        }
    }
}

/// Reconciles the Queue until its Ready condition has `reason`; returns its status.
async fn reconcile_until(harness: &Harness, name: &str, reason: &str) -> brook::api::QueueStatus {
    let mut last = None;
    for _ in 0..100 {
        harness.reconcile_queue(name).await.expect("reconcile");
        let status = harness
            .queue(name)
            .and_then(|q| q.status)
            .expect("a status");
        if condition(&status.conditions, "Ready").1 == reason {
            return status;
        }
        last = Some(status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("Queue {name} never reached {reason}: {last:?}");
}

/// The message of the Ready condition.
fn ready_message(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> String {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The broker's answer to a Kinesis call, as JSON.
fn call(harness: &Harness, operation: &str, body: Value) -> (u16, Value) {
    let (status, text) = post_json(&harness.endpoint(), operation, &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_queue_is_refused_on_a_provisioned_stream_created_once_it_is_on_demand_updated_and_deleted()
 {
    let harness = Harness::with_broker("op-queue", "orders");
    apply_queue(
        &harness,
        "work",
        json!({"streamName": "orders", "startingPosition": {"type": "TRIM_HORIZON"}}),
    );
    harness.reconcile_queue("work").await.expect("finalizer");
    let status = reconcile_until(&harness, "work", "StreamNotFound").await;
    assert_eq!(status.queue_arn, None);

    // A PROVISIONED stream: the brokers refuse the queue, and the Queue says why.
    harness.serving_stream("orders", json!({"shards": 2})).await;
    let status = reconcile_until(&harness, "work", "QueueRefused").await;
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True", "QueueRefused")
    );
    let message = ready_message(&status.conditions);
    assert!(
        message.starts_with("InvalidArgumentException") && message.contains("ON_DEMAND"),
        "{message}"
    );

    // The Stream's spec switches it to ON_DEMAND; the operator calls UpdateStreamMode.
    harness.apply_stream("orders", json!({"shards": 2, "streamMode": "ON_DEMAND"}));
    let stream = harness.reconcile_until_ready("orders").await;
    let summary = call(
        &harness,
        "DescribeStreamSummary",
        json!({"StreamName": "orders"}),
    )
    .1;
    assert_eq!(
        summary["StreamDescriptionSummary"]["StreamModeDetails"]["StreamMode"],
        "ON_DEMAND"
    );
    assert!(
        harness
            .mock
            .events(NAMESPACE)
            .iter()
            .any(|(_, reason, _)| reason == "StreamModeChanged")
    );
    assert_eq!(
        stream.status.and_then(|s| s.open_shards),
        Some(2),
        "the shards the stream had stay"
    );

    let status = reconcile_until(&harness, "work", "Active").await;
    let arn = status.queue_arn.clone().expect("an ARN");
    assert!(arn.contains(":queue/orders/"), "{arn}");
    assert_eq!(
        serde_json::to_value(status.queue_status).expect("json"),
        json!("ACTIVE")
    );
    let described = call(&harness, "DescribeQueue", json!({"QueueARN": arn})).1;
    assert_eq!(described["QueueDescription"]["QueueName"], "work");
    assert_eq!(
        described["QueueDescription"]["QueueAttributes"],
        json!({"VisibilityTimeoutSeconds": 30,
               "DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 6}})
    );
    assert!(
        harness
            .mock
            .events(NAMESPACE)
            .iter()
            .any(|(_, reason, _)| reason == "QueueCreated")
    );

    // The queue the operator made delivers the stream's records.
    let (put, _) = call(
        &harness,
        "PutRecord",
        json!({"StreamName": "orders", "PartitionKey": "k", "Data": "aGVsbG8="}),
    );
    assert_eq!(put, 200);
    let (received, answer) = call(
        &harness,
        "ReceiveQueueRecords",
        json!({"QueueARN": arn, "WaitTimeSeconds": 5}),
    );
    assert_eq!(received, 200, "{answer}");
    let records = answer["QueueRecords"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), 1, "{answer}");
    assert_eq!(records[0]["Data"], "aGVsbG8=");

    // Steady: nothing written.
    harness.mock.clear_log();
    harness.reconcile_queue("work").await.expect("steady");
    assert_eq!(harness.mock.writes(), Vec::<String>::new());

    // New attributes are applied in place, the queue and its ARN kept.
    apply_queue(
        &harness,
        "work",
        json!({"streamName": "orders", "startingPosition": {"type": "TRIM_HORIZON"},
               "visibilityTimeoutSeconds": 120, "deadLetters": {"targetType": "NONE"}}),
    );
    harness.reconcile_queue("work").await.expect("update");
    let described = call(&harness, "DescribeQueue", json!({"QueueARN": arn})).1;
    assert_eq!(
        described["QueueDescription"]["QueueAttributes"],
        json!({"VisibilityTimeoutSeconds": 120,
               "DeadLetterConfiguration": {"TargetType": "NONE"}})
    );
    assert_eq!(
        harness
            .queue("work")
            .and_then(|q| q.status)
            .and_then(|s| s.queue_arn),
        Some(arn.clone())
    );
    assert!(
        harness
            .mock
            .events(NAMESPACE)
            .iter()
            .any(|(_, reason, _)| reason == "QueueUpdated")
    );

    // Deleted with the resource.
    harness.mock.delete(QUEUES, "work");
    harness.reconcile_queue("work").await.expect("cleanup");
    assert!(harness.queue("work").is_none(), "finalizer released");
    let (status, answer) = call(&harness, "DescribeQueue", json!({"QueueARN": arn}));
    let deleting = status == 200 && answer["QueueDescription"]["QueueStatus"] == "DELETING";
    assert!(deleting || status == 400, "{status} {answer}");
}

#[tokio::test]
async fn an_on_demand_stream_with_autoscaling_is_an_invalid_spec() {
    let harness = Harness::with_broker("op-queue-invalid", "orders");
    harness.seed_admin_secret("orders");
    harness.apply_stream(
        "orders",
        json!({"shards": 2, "streamMode": "ON_DEMAND",
               "autoscaling": {"prometheus": {"url": "http://prometheus:9090"}}}),
    );
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("reconcile");
    let status = harness
        .stream("orders")
        .and_then(|s| s.status)
        .expect("a status");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False", "InvalidSpec")
    );
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("ON_DEMAND stream scales itself"),
        "{message}"
    );
}
