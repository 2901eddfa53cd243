//! The controllers as they run in the operator, with their watches, against a mocked API
//! server that streams changes: a Stream becomes Ready on its own, a deleted or hand-edited
//! child is put back, a malformed Stream is reported without stalling the others, and a
//! Consumer registers once its Stream serves.

mod support;

use std::time::Duration;

use futures::FutureExt;
use serde_json::json;
use support::eventually;
use support::operator::{
    CONFIG_MAPS, CONSUMERS, Harness, NAMESPACE, SERVICES, STATEFULSETS, STREAMS, has_condition,
};

/// The operator's controllers running against the harness's mocked API server.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(harness: &Harness) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        }
        .shared();
        let task = tokio::spawn(brook::operator::run_controllers(
            harness.ctx.clone(),
            Some(NAMESPACE.to_owned()),
            shutdown,
        ));
        Self { stop, task }
    }

    /// Shuts them down and checks they stop cleanly.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the controllers stop on shutdown")
            .expect("no panic");
    }
}

#[tokio::test]
async fn the_controllers_converge_on_their_own_and_put_back_what_was_changed_by_hand() {
    let harness = Harness::with_broker("op-controllers", "orders");
    harness.seed_admin_secret("orders");
    let controllers = Running::start(&harness);

    // A malformed Stream first: it must not keep the good one from being served.
    harness.mock.insert(
        STREAMS,
        json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "broken", "namespace": NAMESPACE}, "spec": {"shards": "many"}}),
    );
    harness.apply_stream("orders", json!({"shards": 2}));
    let mock = &harness.mock;
    eventually("the StatefulSet", || {
        mock.get(STATEFULSETS, "orders").is_some()
    })
    .await;
    harness.brokers_ready("orders", 1);
    eventually("Stream orders Ready", || {
        has_condition(mock.get(STREAMS, "orders"), "Ready", "True", "Serving")
    })
    .await;
    eventually("Stream broken reported", || {
        has_condition(
            mock.get(STREAMS, "broken"),
            "Degraded",
            "True",
            "MalformedResource",
        )
    })
    .await;
    let summary = harness
        .kinesis()
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("the stream exists in the brokers");
    assert_eq!(
        summary
            .stream_description_summary()
            .map(|s| s.open_shard_count()),
        Some(2)
    );

    // Someone deletes the client Service and edits the broker configuration by hand.
    mock.remove_now(SERVICES, "orders");
    mock.modify(CONFIG_MAPS, "orders-broker-config", |config| {
        config["data"]["BROOK_DURABILITY"] = json!("async");
    });
    eventually("the Service put back", || {
        mock.get(SERVICES, "orders").is_some()
    })
    .await;
    eventually("the configuration put back", || {
        mock.get(CONFIG_MAPS, "orders-broker-config")
            .is_some_and(|c| c["data"]["BROOK_DURABILITY"] == "fsync")
    })
    .await;

    // A Consumer of the serving stream registers without further prompting.
    mock.insert(
        CONSUMERS,
        json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Consumer",
            "metadata": {"name": "billing", "namespace": NAMESPACE},
            "spec": {"streamName": "orders"}}),
    );
    eventually("Consumer billing Ready", || {
        has_condition(mock.get(CONSUMERS, "billing"), "Ready", "True", "Active")
    })
    .await;

    // The reconcile metrics counted both controllers.
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&harness.ctx.metrics.registry.gather(), &mut text)
        .expect("metrics render");
    assert!(
        text.contains(r#"brook_operator_reconciles_total{controller="stream",outcome="ok"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"brook_operator_reconciles_total{controller="consumer",outcome="ok"}"#)
    );
    // Applies are counted by kind: the Service and ConfigMap put back were written again.
    assert!(
        text.contains(r#"brook_operator_applies_total{kind="Service"}"#),
        "{text}"
    );

    controllers.stop().await;
}

#[tokio::test]
async fn hardening_the_operator_lists_and_watches_only_brooks_children() {
    let harness = Harness::with_broker("op-label-watch", "orders");
    harness.seed_admin_secret("orders");
    let controllers = Running::start(&harness);
    harness.apply_stream("orders", json!({"shards": 1}));
    let mock = &harness.mock;
    eventually("the StatefulSet", || {
        mock.get(STATEFULSETS, "orders").is_some()
    })
    .await;
    // The children's kinds are listed and watched through Brook's label only, so the operator
    // never caches the cluster's other ConfigMaps, Services, StatefulSets and PDBs.
    const KINDS: [&str; 4] = [
        "/configmaps",
        "/services",
        "/statefulsets",
        "/poddisruptionbudgets",
    ];
    let child_reads = || -> Vec<_> {
        mock.log()
            .into_iter()
            .filter(|request| {
                request.method == "GET"
                    && KINDS
                        .iter()
                        .any(|kind| request.path.trim_end_matches("?watch").ends_with(kind))
            })
            .collect()
    };
    eventually("every kind of child listed or watched", || {
        KINDS.iter().all(|kind| {
            child_reads()
                .iter()
                .any(|r| r.path.trim_end_matches("?watch").ends_with(kind))
        })
    })
    .await;
    let child_reads = child_reads();
    for request in &child_reads {
        assert_eq!(
            request.label_selector, "app.kubernetes.io/managed-by=brook-operator",
            "{} {}",
            request.method, request.path
        );
    }

    controllers.stop().await;
}
