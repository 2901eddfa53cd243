//! The Consumer controller, leader election and malformed resources against a mocked API
//! server (and, for consumers, a real managed broker).

mod support;

use std::sync::Arc;
use std::time::Duration;

use brook::operator::leader::Elector;
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;
use support::mock_kube::MockKube;
use support::operator::{CONSUMERS, Harness, NAMESPACE, STREAMS, condition};

async fn ready_stream(harness: &Harness) {
    harness.serving_stream("orders", json!({"shards": 2})).await;
}

fn apply_consumer(harness: &Harness, name: &str, spec: serde_json::Value) {
    harness.mock.insert(
        CONSUMERS,
        json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Consumer",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}),
    );
}

async fn registered_names(harness: &Harness) -> Vec<String> {
    let arn = harness
        .kinesis()
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("summary")
        .stream_description_summary()
        .expect("summary")
        .stream_arn()
        .to_owned();
    harness
        .kinesis()
        .list_stream_consumers()
        .stream_arn(arn)
        .send()
        .await
        .expect("list consumers")
        .consumers()
        .iter()
        .map(|c| c.consumer_name().to_owned())
        .collect()
}

#[tokio::test]
async fn a_consumer_waits_for_its_stream_registers_and_deregisters_on_delete() {
    let harness = Harness::with_broker("op-consumer", "orders");
    apply_consumer(&harness, "billing", json!({"streamName": "orders"}));
    harness
        .reconcile_consumer("billing")
        .await
        .expect("finalizer");
    harness
        .reconcile_consumer("billing")
        .await
        .expect("reconcile");
    let status = harness
        .consumer("billing")
        .and_then(|c| c.status)
        .expect("status");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False", "StreamNotFound")
    );
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone());
    assert_eq!(
        message.as_deref(),
        Some("waiting for Stream orders in namespace shop")
    );

    ready_stream(&harness).await;
    let mut active = None;
    for _ in 0..100 {
        harness
            .reconcile_consumer("billing")
            .await
            .expect("reconcile");
        let status = harness
            .consumer("billing")
            .and_then(|c| c.status)
            .expect("status");
        if condition(&status.conditions, "Ready").0 == "True" {
            active = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = active.expect("the consumer becomes Ready");
    assert_eq!(
        status
            .consumer_arn
            .as_deref()
            .map(|a| a.contains("/consumer/billing:")),
        Some(true),
        "{:?}",
        status.consumer_arn
    );
    assert_eq!(
        serde_json::to_value(status.consumer_status).expect("json"),
        json!("ACTIVE")
    );
    assert_eq!(registered_names(&harness).await, ["billing"]);
    assert!(
        harness
            .mock
            .events(NAMESPACE)
            .iter()
            .any(|(_, reason, _)| reason == "ConsumerRegistered")
    );

    harness.mock.clear_log();
    harness.reconcile_consumer("billing").await.expect("steady");
    assert_eq!(harness.mock.writes(), Vec::<String>::new());

    harness.mock.delete(CONSUMERS, "billing");
    harness
        .reconcile_consumer("billing")
        .await
        .expect("cleanup");
    assert!(harness.consumer("billing").is_none(), "finalizer released");
    // Deregistration passes through DELETING, as in Kinesis.
    let mut remaining = registered_names(&harness).await;
    for _ in 0..100 {
        if remaining.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        remaining = registered_names(&harness).await;
    }
    assert_eq!(remaining, Vec::<String>::new());
}

#[tokio::test]
async fn a_consumer_name_other_than_the_resource_name_is_registered_as_declared() {
    let harness = Harness::with_broker("op-consumer-name", "orders");
    ready_stream(&harness).await;
    apply_consumer(
        &harness,
        "billing",
        json!({"streamName": "orders", "consumerName": "billing-v2"}),
    );
    harness
        .reconcile_consumer("billing")
        .await
        .expect("finalizer");
    harness
        .reconcile_consumer("billing")
        .await
        .expect("register");
    assert_eq!(registered_names(&harness).await, ["billing-v2"]);
}

#[tokio::test]
async fn a_consumer_whose_stream_was_deleted_is_released() {
    let harness = Harness::without_broker("op-consumer-orphan");
    apply_consumer(&harness, "billing", json!({"streamName": "orders"}));
    harness
        .reconcile_consumer("billing")
        .await
        .expect("finalizer");
    harness.mock.delete(CONSUMERS, "billing");
    harness
        .reconcile_consumer("billing")
        .await
        .expect("cleanup");
    assert!(harness.consumer("billing").is_none());
}

#[tokio::test]
async fn a_malformed_stream_is_reported_and_released_without_stalling_others() {
    let (mock, client) = MockKube::start();
    let ctx = brook::operator::Context::new(
        client,
        brook::operator::resources::BrokerDefaults::for_this_version(),
        brook::operator::BrokerAddresses::Fixed("127.0.0.1:1".to_owned()),
        false,
        None,
    );
    let stored = mock.insert(
        STREAMS,
        json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "broken", "namespace": NAMESPACE,
                "finalizers": ["brook.dev/stream-cleanup"]},
            "spec": {"shards": "many"}}),
    );
    let object: DynamicObject = serde_json::from_value(stored).expect("dynamic object");
    let resource = ApiResource::erase::<brook::api::Stream>(&());
    let problem = brook::operator::parse_object::<brook::api::Stream>(&object)
        .expect_err("shards is not a number");
    brook::operator::handle_malformed(
        &ctx,
        &object,
        &resource,
        "brook.dev/stream-cleanup",
        &problem,
    )
    .await
    .expect("reported");
    let reported = mock.get(STREAMS, "broken").expect("still there");
    let conditions = reported["status"]["conditions"]
        .as_array()
        .expect("conditions");
    assert!(conditions.iter().any(|c| {
        c["type"] == "Degraded"
            && c["status"] == "True"
            && c["reason"] == "MalformedResource"
            && c["message"]
                .as_str()
                .is_some_and(|m| m.contains("invalid type"))
    }));

    mock.delete(STREAMS, "broken");
    let deleting: DynamicObject =
        serde_json::from_value(mock.get(STREAMS, "broken").expect("marked")).expect("object");
    brook::operator::handle_malformed(
        &ctx,
        &deleting,
        &resource,
        "brook.dev/stream-cleanup",
        &problem,
    )
    .await
    .expect("released");
    assert!(
        mock.get(STREAMS, "broken").is_none(),
        "the namespace is not held"
    );
}

#[tokio::test]
async fn one_of_two_operator_replicas_leads_and_the_other_takes_over_when_it_stops() {
    let (mock, client) = MockKube::start();
    let lease = Duration::from_secs(1);
    let first = Arc::new(Elector::new(
        client.clone(),
        "brook-system",
        "leader",
        "operator-a",
        lease,
    ));
    let second = Elector::new(client, "brook-system", "leader", "operator-b", lease);
    assert!(
        first.try_lead().await.expect("round"),
        "the first candidate takes the lease"
    );
    assert!(!second.try_lead().await.expect("round"), "the second waits");
    assert!(first.try_lead().await.expect("round"), "the leader renews");
    let stored = mock
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/brook-system/leases",
            "leader",
        )
        .expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "operator-a");

    // The leader stops renewing (its pod died); once the lease lapses the other takes it.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert!(
        second.try_lead().await.expect("round"),
        "the follower takes over"
    );
    assert!(
        !first.try_lead().await.expect("round"),
        "the old leader now follows"
    );
    let stored = mock
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/brook-system/leases",
            "leader",
        )
        .expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "operator-b");
    assert_eq!(stored["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_leader_that_stops_cleanly_hands_the_lease_over_at_once() {
    let (_mock, client) = MockKube::start();
    // A lease long enough that a takeover before it lapses can only come from a release.
    let lease = Duration::from_secs(3600);
    let first = Elector::new(
        client.clone(),
        "brook-system",
        "leader",
        "operator-a",
        lease,
    );
    let second = Elector::new(client, "brook-system", "leader", "operator-b", lease);
    assert!(first.try_lead().await.expect("round"));
    assert!(!second.try_lead().await.expect("round"), "the second waits");
    assert!(
        !second.release().await.expect("release"),
        "a follower has nothing to release"
    );
    assert!(
        first.release().await.expect("release"),
        "the leader lets go"
    );
    assert!(
        second.try_lead().await.expect("round"),
        "the follower takes the released lease at its next round"
    );
    assert!(!first.try_lead().await.expect("round"));
}

#[tokio::test]
async fn service_monitors_are_detected_from_discovery_not_assumed() {
    let (mock, client) = MockKube::start();
    assert!(
        !brook::operator::serves_service_monitors(&client).await,
        "no Prometheus Operator, no ServiceMonitors"
    );
    mock.serve_group("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors");
    assert!(!brook::operator::serves_service_monitors(&client).await);
    mock.serve_group(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
        "servicemonitors",
    );
    assert!(brook::operator::serves_service_monitors(&client).await);
}
