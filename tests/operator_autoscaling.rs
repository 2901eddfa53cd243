//! The Stream controller's autoscaling against a mocked API server and a real managed broker:
//! the autoscaler's decision reaches the brokers and `status.autoscaling` (written once per
//! change), an Event tells each change of the shard count, a lost Prometheus is reported and
//! never scales down, and nothing ever writes the Stream's spec.

mod support;

use serde_json::{Value, json};
use support::eventually;
use support::operator::{Harness, NAMESPACE, STREAMS};
use support::prometheus::Prometheus;

fn closed_port() -> String {
    support::unused_address().to_string()
}

fn autoscaled(min: i32, max: i32, prometheus: &str) -> Value {
    json!({"shards": 1, "autoscaling": {
        "enabled": true, "minShards": min, "maxShards": max, "periodSeconds": 1,
        "prometheus": {"url": format!("http://{prometheus}"), "timeoutSeconds": 1}}})
}

fn autoscaling_status(harness: &Harness) -> Value {
    harness.mock.get(STREAMS, "orders").expect("the Stream")["status"]["autoscaling"].clone()
}

/// Whether any write to the Stream touched its spec (status and finalizers are the operator's).
fn spec_writes(harness: &Harness) -> Vec<String> {
    harness
        .mock
        .log()
        .into_iter()
        .filter(|r| r.is_write() && r.path.starts_with(&format!("{STREAMS}/orders")))
        .filter(|r| !r.path.ends_with("/status") && r.body.get("spec").is_some())
        .map(|r| format!("{} {} {}", r.method, r.path, r.body))
        .collect()
}

#[tokio::test]
async fn autoscaling_reports_a_lost_prometheus_once_and_writes_nothing_while_nothing_changes() {
    let harness = Harness::with_broker("op-autoscale-lost", "orders");
    harness
        .serving_stream("orders", autoscaled(1, 4, &closed_port()))
        .await;
    eventually("an autoscaler evaluation", || {
        harness
            .ctx
            .metrics
            .autoscaler_evaluations("metrics_unavailable")
            > 0
    })
    .await;
    harness.reconcile_until_ready("orders").await;
    let status = autoscaling_status(&harness);
    assert_eq!(status["desiredShards"], 1, "{status}");
    let error = status["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("cannot be reached"), "{status}");
    let events = harness.mock.events(NAMESPACE);
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "AutoscalerError"),
        "{events:?}"
    );

    // Evaluations with nothing new write nothing: the same decision, the same error.
    harness.mock.clear_log();
    let before = harness
        .ctx
        .metrics
        .autoscaler_evaluations("metrics_unavailable");
    while harness
        .ctx
        .metrics
        .autoscaler_evaluations("metrics_unavailable")
        < before + 2
    {
        harness.reconcile_stream("orders").await.expect("reconcile");
        // The next evaluation is due a period (1 s) on; reconciles in between skip it.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        harness.mock.writes(),
        Vec::<String>::new(),
        "two evaluations that changed nothing wrote nothing"
    );
    let warnings = harness
        .mock
        .events(NAMESPACE)
        .iter()
        .filter(|(_, reason, _)| reason == "AutoscalerError")
        .count();
    assert_eq!(
        warnings, 1,
        "one Event per change of the error, not per evaluation"
    );
    assert_eq!(spec_writes(&harness), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_reshards_a_throttled_stream_with_an_event_and_a_status_never_its_spec() {
    // Shards of 50 records/s, a real Prometheus scraping the broker every second.
    let harness = Harness::with_broker_args(
        "op-autoscale",
        "orders",
        &["--write-records-per-second", "50"],
    );
    let broker = harness.broker.as_ref().expect("broker");
    let prometheus =
        Prometheus::scraping(&[broker.metrics.trim_start_matches("http://")], NAMESPACE).await;
    let mut spec = autoscaled(1, 4, prometheus.url.trim_start_matches("http://"));
    spec["limits"] = json!({"writeRecordsPerSecond": 50});
    spec["autoscaling"]["prometheus"]["windowSeconds"] = json!(5);
    harness.serving_stream("orders", spec).await;

    // Up to 500 records/s offered, the first call alone ten times one shard's quota: the
    // stream is throttled from the start however slowly a busy machine runs the producer.
    let client = support::broker::client_for(&broker.endpoint);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let count = if batch == 0 { 500 } else { 50 };
                let entries = (0..count)
                    .map(|i| {
                        aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                            .partition_key(format!("k-{batch}-{i}"))
                            .data(aws_sdk_kinesis::primitives::Blob::new("x"))
                            .build()
                            .expect("entry")
                    })
                    .collect();
                let _ = client
                    .put_records()
                    .stream_name("orders")
                    .set_records(Some(entries))
                    .send()
                    .await;
                batch += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while harness.ctx.metrics.autoscaler_evaluations("resized") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never resharded: {}\n{}",
            autoscaling_status(&harness),
            prometheus.log()
        );
        harness.reconcile_stream("orders").await.expect("reconcile");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.await.expect("producer");
    harness.reconcile_until_ready("orders").await;

    let status = autoscaling_status(&harness);
    let desired = status["desiredShards"].as_i64().expect("desiredShards");
    assert!(desired >= 2, "{status}");
    assert!(status["lastScaleTime"].is_string(), "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("throttled"),
        "{status}"
    );
    let open = harness
        .stream("orders")
        .and_then(|s| s.status)
        .and_then(|s| s.open_shards);
    assert_eq!(open, Some(i32::try_from(desired).expect("small")));
    let events = harness.mock.events(NAMESPACE);
    assert!(
        events.iter().any(|(kind, reason, note)| kind == "Normal"
            && reason == "Autoscaled"
            && note.contains(&format!("1 to {desired} open shards"))),
        "{events:?}"
    );
    assert_eq!(spec_writes(&harness), Vec::<String>::new());
    assert_eq!(harness.stream("orders").expect("stream").spec.shards, 1);
}

#[tokio::test]
async fn autoscaling_follows_the_autoscaler_not_the_spec_and_stops_when_turned_off() {
    let harness = Harness::with_broker("op-autoscale-off", "orders");
    harness
        .serving_stream("orders", autoscaled(3, 6, &closed_port()))
        .await;
    eventually("3 open shards", || {
        harness
            .stream("orders")
            .and_then(|s| s.status)
            .and_then(|s| s.open_shards)
            == Some(3)
    })
    .await;
    // A scale through the scale subresource does not fight the autoscaler: spec.shards is
    // not what the brokers follow while it is on.
    harness.apply_stream("orders", {
        let mut spec = autoscaled(3, 6, &closed_port());
        spec["shards"] = json!(5);
        spec
    });
    harness.reconcile_until_ready("orders").await;
    let stream = harness.stream("orders").expect("stream");
    assert_eq!(stream.status.and_then(|s| s.open_shards), Some(3));

    // Turned off: spec.shards rules again.
    harness.apply_stream("orders", json!({"shards": 5}));
    harness.reconcile_until_ready("orders").await;
    eventually("5 open shards", || {
        harness
            .stream("orders")
            .and_then(|s| s.status)
            .and_then(|s| s.open_shards)
            == Some(5)
    })
    .await;
}

#[tokio::test]
async fn autoscaling_reads_prometheus_credentials_from_secrets_and_names_a_missing_one() {
    let harness = Harness::with_broker("op-autoscale-secret", "orders");
    let mut spec = autoscaled(1, 4, &closed_port());
    spec["autoscaling"]["prometheus"]["bearerTokenSecretRef"] =
        json!({"name": "prometheus-token", "key": "token"});
    harness.serving_stream("orders", spec).await;
    reconcile_until_error(&harness, "Secret prometheus-token does not exist").await;
    // With the Secret there, the token is read and the next error is Prometheus' own.
    harness.mock.insert(
        support::operator::SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "prometheus-token", "namespace": NAMESPACE},
            "data": {"token": "c2VjcmV0LXRva2Vu"}}),
    );
    reconcile_until_error(&harness, "cannot be reached").await;
}

/// Reconciles (each one evaluates when a period is due) until `status.autoscaling.lastError`
/// says `words`.
async fn reconcile_until_error(harness: &Harness, words: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = autoscaling_status(harness);
        if status["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains(words)
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{words}: {status}");
        harness.reconcile_stream("orders").await.expect("reconcile");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
