//! `brook operator` as a process: it reads a kubeconfig, takes the leader Lease, serves
//! `/healthz`, `/readyz` and `/metrics`, logs JSON lines that name the resource, reconciles a
//! Stream to Ready, and stops cleanly on SIGTERM.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::broker::http_request;
use support::eventually;
use support::operator::{Harness, STATEFULSETS, STREAMS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_leads_reconciles_reports_and_stops_cleanly() {
    let harness = Harness::with_broker("op-process", "orders");
    harness.seed_admin_secret("orders");
    let mut operator = harness.start_operator_process("operator-a").await;
    let base = operator.base.clone();
    let log_path = operator.log_path.clone();
    eventually("/readyz", || {
        http_request("GET", &format!("{base}/readyz")).0 == 200
    })
    .await;
    assert_eq!(http_request("GET", &format!("{base}/healthz")).0, 200);
    let mock = &harness.mock;
    eventually("the leader Lease", || {
        mock.get(
            "/apis/coordination.k8s.io/v1/namespaces/brook-system/leases",
            "brook-operator-leader",
        )
        .is_some_and(|l| l["spec"]["holderIdentity"] == "operator-a")
    })
    .await;

    harness.apply_stream("orders", json!({"shards": 2}));
    eventually("the StatefulSet", || {
        mock.get(STATEFULSETS, "orders").is_some()
    })
    .await;
    harness.brokers_ready("orders", 1);
    eventually("Stream orders Ready", || {
        mock.get(STREAMS, "orders").is_some_and(|s| {
            s["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    })
    .await;

    let (status, metrics) = http_request("GET", &format!("{base}/metrics"));
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"brook_operator_reconciles_total{controller="stream",outcome="ok"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("brook_operator_reconcile_duration_seconds_bucket"));

    let terminated = Command::new("kill")
        .args(["-TERM", &operator.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = operator.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "clean exit, got {exit:?}");
    // A clean stop hands the Lease over instead of letting it lapse.
    let lease = mock
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/brook-system/leases",
            "brook-operator-leader",
        )
        .expect("the Lease");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease was not released: {lease}"
    );

    let log = std::fs::read_to_string(&log_path).expect("log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "reconciled"
                && line["fields"]["resource"] == "shop/orders"
                && line["fields"]["controller"] == "stream"),
        "{log}"
    );
}
