//! The Stream controller against a mocked API server and a real managed broker: create,
//! a steady reconcile that writes nothing, scaling, retention, drift repair, unreachable
//! brokers, and deletion with each deletion policy.

mod support;

use serde_json::json;
use support::broker::error_code;
use support::operator::{
    CLAIMS, CONFIG_MAPS, Harness, NAMESPACE, NETWORK_POLICIES, PDBS, SECRETS, SERVICE_MONITORS,
    SERVICES, STATEFULSETS, STREAMS, condition,
};

async fn describe(harness: &Harness, name: &str) -> (i32, i32) {
    let summary = harness
        .kinesis()
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .expect("the brokers have the stream");
    let summary = summary.stream_description_summary().expect("a summary");
    (summary.open_shard_count(), summary.retention_period_hours())
}

fn owned_by_stream(object: &serde_json::Value, name: &str) -> bool {
    object["metadata"]["ownerReferences"][0]["kind"] == "Stream"
        && object["metadata"]["ownerReferences"][0]["name"] == name
        && object["metadata"]["ownerReferences"][0]["controller"] == true
}

#[tokio::test]
async fn a_new_stream_gets_its_brokers_then_its_stream_and_a_steady_reconcile_writes_nothing() {
    let harness = Harness::with_broker("op-create", "orders");
    harness.seed_admin_secret("orders");
    harness.apply_stream("orders", json!({"shards": 2}));

    // First reconcile: the finalizer goes on, nothing else.
    harness.reconcile_stream("orders").await.expect("reconcile");
    let stream = harness.stream("orders").expect("stream");
    assert_eq!(
        stream.metadata.finalizers,
        Some(vec!["brook.dev/stream-cleanup".to_owned()])
    );

    // Second: every child, each owned by the Stream; no broker is ready yet.
    harness.reconcile_stream("orders").await.expect("reconcile");
    for (collection, name) in [
        (CONFIG_MAPS, "orders-broker-config"),
        (SERVICES, "orders-brokers"),
        (SERVICES, "orders"),
        (STATEFULSETS, "orders"),
        (PDBS, "orders"),
        (NETWORK_POLICIES, "orders"),
    ] {
        let child = harness
            .mock
            .get(collection, name)
            .unwrap_or_else(|| panic!("{name} in {collection}"));
        assert!(owned_by_stream(&child, "orders"), "{name} is owned");
    }
    assert!(
        harness.mock.list(SERVICE_MONITORS).is_empty(),
        "no ServiceMonitor without the Prometheus Operator"
    );
    let status = harness
        .stream("orders")
        .and_then(|s| s.status)
        .expect("status");
    assert_eq!(
        condition(&status.conditions, "Progressing"),
        ("True", "WaitingForBrokers")
    );
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False", "WaitingForBrokers")
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://orders.shop.svc:4567")
    );
    let waiting = harness
        .kinesis()
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect_err("the stream waits for ready brokers");
    assert_eq!(error_code(&waiting), "ResourceNotFoundException");

    harness.brokers_ready("orders", 3);
    let ready = harness.reconcile_until_ready("orders").await;
    assert_eq!(describe(&harness, "orders").await, (2, 24));
    let status = ready.status.expect("status");
    assert_eq!(status.open_shards, Some(2));
    assert_eq!(
        status.stream_arn.as_deref(),
        Some("arn:aws:kinesis:us-east-1:000000000000:stream/orders")
    );
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("False", "AsExpected")
    );
    let events = harness.mock.events(NAMESPACE);
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Normal" && reason == "StreamCreated"),
        "{events:?}"
    );

    harness.mock.clear_log();
    harness.reconcile_stream("orders").await.expect("reconcile");
    assert_eq!(
        harness.mock.writes(),
        Vec::<String>::new(),
        "a steady reconcile only reads"
    );
}

#[tokio::test]
async fn declared_shards_retention_and_record_size_reach_the_brokers() {
    let harness = Harness::with_broker("op-scale", "orders");
    harness.serving_stream("orders", json!({"shards": 1})).await;
    assert_eq!(describe(&harness, "orders").await, (1, 24));

    // From 1 to 5 takes three doubling-limited steps: 2, 4, 5.
    harness.apply_stream(
        "orders",
        json!({"shards": 5, "retentionHours": 72, "maxRecordSizeKiB": 2048}),
    );
    let stream = harness.reconcile_until_ready("orders").await;
    assert_eq!(describe(&harness, "orders").await, (5, 72));
    let summary = harness
        .kinesis()
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("summary");
    assert_eq!(
        summary
            .stream_description_summary()
            .and_then(|s| s.max_record_size_in_kib()),
        Some(2048)
    );
    let status = stream.status.expect("status");
    assert_eq!(status.open_shards, Some(5));
    assert_eq!(status.observed_generation, Some(2));
    let reasons: Vec<String> = harness
        .mock
        .events(NAMESPACE)
        .into_iter()
        .map(|(_, reason, _)| reason)
        .collect();
    for expected in ["Resharding", "RetentionChanged", "MaxRecordSizeChanged"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} in {reasons:?}"
        );
    }

    // And back down, with a retention decrease.
    harness.apply_stream("orders", json!({"shards": 2, "retentionHours": 24}));
    harness.reconcile_until_ready("orders").await;
    assert_eq!(describe(&harness, "orders").await, (2, 24));

    // A config change (durability) changes the ConfigMap and rolls the pods through the
    // pod template's hash.
    let hash = |harness: &Harness| {
        harness.mock.get(STATEFULSETS, "orders").expect("set")["spec"]["template"]["metadata"]
            ["annotations"]["brook.dev/config-hash"]
            .clone()
    };
    let before = hash(&harness);
    harness.apply_stream("orders", json!({"shards": 2, "durability": "Async"}));
    harness.reconcile_until_ready("orders").await;
    let config = harness
        .mock
        .get(CONFIG_MAPS, "orders-broker-config")
        .expect("config");
    assert_eq!(config["data"]["BROOK_DURABILITY"], "async");
    assert_ne!(before, hash(&harness));
}

#[tokio::test]
async fn a_stream_deleted_behind_the_operators_back_is_recreated_with_a_warning() {
    let harness = Harness::with_broker("op-drift", "orders");
    harness.serving_stream("orders", json!({"shards": 2})).await;

    // Someone with the admin key deletes the stream through the Kinesis API.
    let admin = admin_client(&harness);
    admin
        .delete_stream()
        .stream_name("orders")
        .send()
        .await
        .expect("admin delete");
    support::broker::wait_for_absent(&admin, "orders").await;

    harness.reconcile_until_ready("orders").await;
    assert_eq!(describe(&harness, "orders").await, (2, 24));
    let events = harness.mock.events(NAMESPACE);
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "StreamRecreated"),
        "{events:?}"
    );
}

fn admin_client(harness: &Harness) -> aws_sdk_kinesis::Client {
    let endpoint = &harness.broker.as_ref().expect("broker").endpoint;
    support::broker::signed_client(endpoint, "brook-operator", support::operator::ADMIN_SECRET)
}

#[tokio::test]
async fn unreachable_brokers_make_the_stream_degraded_and_it_is_retried() {
    let harness = Harness::without_broker("op-unreachable");
    harness.apply_stream("orders", json!({"shards": 1}));
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("children");
    harness.brokers_ready("orders", 1);
    let action = harness.reconcile_stream("orders").await.expect("reconcile");
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(10))
        ),
        "retried in ten seconds"
    );
    let status = harness
        .stream("orders")
        .and_then(|s| s.status)
        .expect("status");
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True", "BrokersUnreachable")
    );
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False", "BrokersUnreachable")
    );
    // The admin Secret was generated: a random key in the Secret the pods mount.
    let secret = harness
        .mock
        .get(SECRETS, "orders-broker-admin")
        .expect("admin secret");
    let key = secret["data"]["brook-operator"].as_str().expect("key");
    assert!(key.len() >= 40, "{key}");
    let events = harness.mock.events(NAMESPACE);
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "BrokersUnreachable"),
        "{events:?}"
    );
    // A second failing round does not rewrite an identical status.
    harness.mock.clear_log();
    harness.reconcile_stream("orders").await.expect("reconcile");
    assert!(
        harness
            .mock
            .writes()
            .iter()
            .all(|w| !w.contains("/status") && !w.contains("/events")),
        "{:?}",
        harness.mock.writes()
    );
}

/// A certificate Secret as cert-manager writes it, from the test PKI `pki`.
fn seed_certificate(harness: &Harness, name: &str, pki: &support::pki::TestPki) {
    use base64::Engine;
    let encoded = |path: &std::path::Path| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("PEM"))
    };
    harness.mock.insert(
        SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {"tls.crt": encoded(&pki.cert), "tls.key": encoded(&pki.key),
                "ca.crt": encoded(&pki.ca_pem)}}),
    );
}

#[tokio::test]
async fn a_tls_stream_is_served_over_tls_and_the_operator_trusts_its_secrets_ca() {
    let pki_dir = support::broker::TempDir::new("op-tls-pki");
    let pki = support::pki::make(pki_dir.path(), "brokers");
    let cert = pki.cert.display().to_string();
    let key = pki.key.display().to_string();
    let harness = Harness::with_broker_args(
        "op-tls",
        "orders",
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    harness.seed_admin_secret("orders");
    seed_certificate(&harness, "orders-cert", &pki);
    harness.apply_stream(
        "orders",
        json!({"shards": 2, "tls": {"secretRef": {"name": "orders-cert"}}}),
    );
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("children");
    let config = harness
        .mock
        .get(CONFIG_MAPS, "orders-broker-config")
        .expect("config");
    assert_eq!(config["data"]["BROOK_TLS_CERT"], "/etc/brook/tls/tls.crt");
    assert_eq!(
        config["data"]["BROOK_CLUSTER_PEERS"],
        "https://orders-{ordinal}.orders-brokers.shop.svc:4568"
    );
    let set = harness
        .mock
        .get(STATEFULSETS, "orders")
        .expect("statefulset");
    let volumes = set["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "tls" && v["secret"]["secretName"] == "orders-cert"),
        "{volumes:?}"
    );
    harness.brokers_ready("orders", 1);
    // Ready: the operator created the stream over TLS, trusting the Secret's ca.crt.
    let ready = harness.reconcile_until_ready("orders").await;
    let status = ready.status.expect("status");
    assert_eq!(status.open_shards, Some(2));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("https://orders.shop.svc:4567")
    );

    // A Secret whose CA did not sign the brokers' certificate: the operator refuses to talk
    // to them and says why.
    let other_dir = support::broker::TempDir::new("op-tls-other");
    let other = support::pki::make(other_dir.path(), "other");
    let wrong = support::pki::TestPki {
        ca_pem: other.ca_pem.clone(),
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    };
    seed_certificate(&harness, "orders-cert", &wrong);
    harness.reconcile_stream("orders").await.expect("reconcile");
    let status = harness
        .stream("orders")
        .and_then(|s| s.status)
        .expect("status");
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True", "BrokersUnreachable")
    );
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("certificate"), "{message}");
}

fn seed_claims(harness: &Harness, stream: &str, count: usize) {
    for index in 0..count {
        harness.mock.insert(
            CLAIMS,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": format!("data-{stream}-{index}"), "namespace": NAMESPACE,
                    "labels": {"brook.dev/stream": stream}},
                "spec": {"accessModes": ["ReadWriteOnce"]}}),
        );
    }
}

#[tokio::test]
async fn deleting_a_stream_deletes_it_in_the_brokers_then_its_children_and_volumes() {
    let harness = Harness::with_broker("op-delete", "orders").with_service_monitors();
    harness.seed_admin_secret("orders");
    harness.apply_stream("orders", json!({"shards": 1}));
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("children");
    assert!(
        harness.mock.get(SERVICE_MONITORS, "orders").is_some(),
        "a ServiceMonitor where the Prometheus Operator is installed"
    );
    harness.brokers_ready("orders", 1);
    harness.reconcile_until_ready("orders").await;
    seed_claims(&harness, "orders", 3);

    harness.mock.delete(STREAMS, "orders");
    harness.reconcile_stream("orders").await.expect("cleanup");

    let gone = harness
        .kinesis()
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await;
    // Deleted in the brokers: gone already, or still DELETING.
    match gone {
        Err(error) => assert_eq!(error_code(&error), "ResourceNotFoundException"),
        Ok(summary) => assert_eq!(
            summary
                .stream_description_summary()
                .map(|s| s.stream_status().as_str()),
            Some("DELETING")
        ),
    }
    for (collection, name) in [
        (STATEFULSETS, "orders"),
        (SERVICES, "orders"),
        (SERVICES, "orders-brokers"),
        (CONFIG_MAPS, "orders-broker-config"),
        (PDBS, "orders"),
        (NETWORK_POLICIES, "orders"),
        (SECRETS, "orders-broker-admin"),
        (SERVICE_MONITORS, "orders"),
    ] {
        assert!(
            harness.mock.get(collection, name).is_none(),
            "{name} deleted"
        );
    }
    assert!(harness.mock.list(CLAIMS).is_empty(), "volumes deleted");
    assert!(
        harness.stream("orders").is_none(),
        "the finalizer was released and the Stream is gone"
    );
}

#[tokio::test]
async fn retain_keeps_the_volumes_and_says_so() {
    let harness = Harness::with_broker("op-retain", "orders");
    harness
        .serving_stream("orders", json!({"shards": 1, "deletionPolicy": "Retain"}))
        .await;
    seed_claims(&harness, "orders", 2);

    harness.mock.delete(STREAMS, "orders");
    harness.reconcile_stream("orders").await.expect("cleanup");
    assert_eq!(harness.mock.list(CLAIMS).len(), 2, "volumes kept");
    assert!(harness.mock.get(STATEFULSETS, "orders").is_none());
    assert!(harness.stream("orders").is_none());
    let events = harness.mock.events(NAMESPACE);
    let retained = events
        .iter()
        .find(|(_, reason, _)| reason == "VolumesRetained")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(retained.2.contains("data-orders-0"), "{}", retained.2);
    // The stream's data stays with the volumes: the brokers were not told to delete it.
    assert_eq!(describe(&harness, "orders").await, (1, 24));
}

#[tokio::test]
async fn brokers_that_are_gone_never_hold_a_stream_in_terminating() {
    let harness = Harness::without_broker("op-gone");
    harness.apply_stream("orders", json!({"shards": 1}));
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("children");
    harness.mock.delete(STREAMS, "orders");
    harness.reconcile_stream("orders").await.expect("cleanup");
    assert!(harness.stream("orders").is_none(), "finalizer released");
    let events = harness.mock.events(NAMESPACE);
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "BrokersGone"),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_and_builds_nothing() {
    let harness = Harness::without_broker("op-invalid");
    // The schema would refuse this; a resource stored before the rule existed still arrives.
    harness.apply_stream(
        "orders",
        json!({"shards": 1, "autoscaling": {"enabled": true, "minShards": 8, "maxShards": 2,
            "prometheus": {"url": "http://prometheus:9090"}}}),
    );
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("reconcile");
    assert!(harness.mock.get(STATEFULSETS, "orders").is_none());
    let status = harness
        .stream("orders")
        .and_then(|s| s.status)
        .expect("status");
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True", "InvalidSpec")
    );
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("minShards"), "{message}");
}

#[tokio::test]
async fn nothing_is_reapplied_in_a_namespace_that_is_being_deleted() {
    let harness = Harness::without_broker("op-ns-terminating");
    harness.apply_stream("orders", json!({"shards": 1}));
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("children");
    // The namespace controller has started: it deleted the StatefulSet first.
    harness.mock.insert(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "deletionTimestamp": "2026-11-29T00:00:00Z",
                "finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating"}}),
    );
    harness.mock.remove_now(STATEFULSETS, "orders");
    harness.mock.clear_log();
    harness.reconcile_stream("orders").await.expect("reconcile");
    assert_eq!(
        harness.mock.writes(),
        Vec::<String>::new(),
        "no child is re-created and no Event written while the namespace terminates"
    );
    assert!(harness.mock.get(STATEFULSETS, "orders").is_none());
    // Then the Stream itself is deleted: its cleanup runs and releases it.
    harness.mock.delete(STREAMS, "orders");
    harness.reconcile_stream("orders").await.expect("cleanup");
    assert!(harness.stream("orders").is_none(), "finalizer released");
    let events = harness.mock.events(NAMESPACE);
    assert!(
        events.iter().all(|(_, reason, _)| reason != "BrokersGone"),
        "an Event is new content a terminating namespace refuses: {events:?}"
    );
}

#[tokio::test]
async fn a_create_refused_because_the_namespace_began_deleting_ends_the_reconcile_quietly() {
    let harness = Harness::without_broker("op-ns-closing");
    harness.apply_stream("orders", json!({"shards": 1}));
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("children");
    // The namespace's deletion begins after the operator looked at it (it still reads as
    // active): the API server refuses new content, and the StatefulSet is already gone.
    harness.mock.close_namespace(NAMESPACE);
    harness.mock.remove_now(STATEFULSETS, "orders");
    let events_before = harness.mock.events(NAMESPACE).len();
    let refused = harness.reconcile_stream("orders").await;
    assert_eq!(
        refused.expect("a refusal for a terminating namespace is not a failure to retry"),
        kube::runtime::controller::Action::await_change()
    );
    assert!(
        harness.mock.get(STATEFULSETS, "orders").is_none(),
        "the API server refused the StatefulSet"
    );
    assert_eq!(harness.mock.events(NAMESPACE).len(), events_before);
    // Then the namespace controller deletes the Stream: its cleanup runs and releases it.
    harness.mock.delete(STREAMS, "orders");
    harness.reconcile_stream("orders").await.expect("cleanup");
    assert!(harness.stream("orders").is_none(), "finalizer released");
}

#[tokio::test]
async fn a_reconcile_queued_before_the_stream_went_finds_its_cleanup_done() {
    let harness = Harness::without_broker("op-stale-cleanup");
    harness.apply_stream("orders", json!({"shards": 1}));
    harness.reconcile_stream("orders").await.expect("finalizer");
    harness.reconcile_stream("orders").await.expect("children");
    harness.mock.delete(STREAMS, "orders");
    // The controller's cache still holds the Stream as it was when deletion began.
    let stale = harness.stream("orders").expect("marked for deletion");
    harness.reconcile_stream("orders").await.expect("cleanup");
    assert!(harness.stream("orders").is_none(), "finalizer released");
    let again =
        brook::operator::stream::reconcile(std::sync::Arc::new(stale), harness.ctx.clone()).await;
    assert!(
        again.is_ok(),
        "a second cleanup of a Stream already gone is done, not an error: {again:?}"
    );
}

#[tokio::test]
async fn a_statefulset_selecting_by_an_earlier_builds_labels_is_replaced_keeping_its_pods() {
    let harness = Harness::with_broker("op-selector", "orders");
    harness.serving_stream("orders", json!({"shards": 1})).await;
    // An earlier build selected the pods by app.kubernetes.io/instance, which Argo CD reads
    // as its own tracking label; a selector cannot be changed in place.
    let old_selector = json!({"matchLabels": {
        "app.kubernetes.io/name": "brook-broker",
        "app.kubernetes.io/instance": "orders",
        "app.kubernetes.io/component": "broker"}});
    harness.mock.modify(STATEFULSETS, "orders", |set| {
        set["spec"]["selector"] = old_selector.clone();
    });
    harness.mock.clear_log();

    harness.reconcile_stream("orders").await.expect("reconcile");
    let deletes: Vec<_> = harness
        .mock
        .log()
        .into_iter()
        .filter(|r| r.method == http::Method::DELETE)
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, format!("{STATEFULSETS}/orders"));
    assert_eq!(
        deletes[0].body["propagationPolicy"], "Orphan",
        "the pods and their volumes are kept"
    );
    assert!(
        harness
            .mock
            .events(NAMESPACE)
            .iter()
            .any(|(_, reason, _)| reason == "ReplacingStatefulSet"),
        "{:?}",
        harness.mock.events(NAMESPACE)
    );

    // The next reconcile makes the new set, which selects by brook.dev/stream.
    harness.reconcile_stream("orders").await.expect("reconcile");
    let set = harness.mock.get(STATEFULSETS, "orders").expect("a new set");
    assert_eq!(
        set["spec"]["selector"]["matchLabels"]["brook.dev/stream"],
        "orders"
    );
    assert!(set["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"].is_null());
    assert!(
        set["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"].is_null(),
        "no child carries Argo CD's tracking label"
    );
    harness.brokers_ready("orders", 1);
    harness.reconcile_until_ready("orders").await;
}
