//! The Grafana dashboard and the alert rules of the chart: the JSON parses, `promtool` accepts
//! every expression, and every metric and label they name is one a live broker and a live
//! operator really export (read from their `/metrics` after real traffic), or one Prometheus
//! adds to every target.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use regex::Regex;
use serde_json::{Value, json};
use support::broker::{client_for, http_request};
use support::eventually;
use support::operator::{Harness, STREAMS};

/// Labels Prometheus itself puts on scraped series (target labels) and on histogram buckets.
const TARGET_LABELS: [&str; 6] = ["job", "instance", "namespace", "pod", "service", "le"];
/// Series Prometheus makes for every target.
const TARGET_SERIES: [&str; 1] = ["up"];
const KEYWORDS: [&str; 12] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
];

fn chart_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/brook/files")
        .join(name)
}

/// Every `expr` of the dashboard's panels.
fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(chart_file("dashboard.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    panels
        .iter()
        .flat_map(|panel| {
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
            targets
        })
        .map(|target| target["expr"].as_str().expect("an expr").to_owned())
        .collect()
}

/// Every `expr` of the alert rules.
fn alert_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(chart_file("alerts.yaml")).expect("alerts");
    let rules: Value = serde_yaml::from_str(&text).expect("alerts YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|rule| rule["expr"].as_str().expect("an expr").to_owned())
        .collect()
}

/// The metric names and label names a PromQL expression reads.
fn names_in(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*""#).expect("regex");
    let ranges = Regex::new(r"\[[^\]]*\]").expect("regex");
    let matchers = Regex::new(r"\{([^}]*)\}").expect("regex");
    let matcher_label = Regex::new(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)").expect("regex");
    let groupings =
        Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
            .expect("regex");
    let identifier = Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").expect("regex");

    let mut labels = BTreeSet::new();
    let text = strings.replace_all(expr, "\"\"").into_owned();
    let text = ranges.replace_all(&text, "").into_owned();
    for caps in matchers.captures_iter(&text) {
        for label in matcher_label.captures_iter(&caps[1]) {
            labels.insert(label[1].to_owned());
        }
    }
    let text = matchers.replace_all(&text, " ").into_owned();
    for caps in groupings.captures_iter(&text) {
        for label in caps[1].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            labels.insert(label.to_owned());
        }
    }
    let text = groupings.replace_all(&text, " ").into_owned();
    let mut metrics = BTreeSet::new();
    for found in identifier.find_iter(&text) {
        let word = found.as_str();
        let before = text[..found.start()].chars().last();
        let after = text[found.end()..].trim_start().chars().next();
        let is_number_part = before.is_some_and(|c| c.is_ascii_digit() || c == '.');
        if after == Some('(') || KEYWORDS.contains(&word) || is_number_part {
            continue;
        }
        metrics.insert(word.to_owned());
    }
    (metrics, labels)
}

#[test]
fn the_name_reader_finds_metrics_and_labels_but_not_functions_or_variables() {
    let (metrics, labels) = names_in(
        r#"histogram_quantile(0.99, sum by (le, operation) (rate(brook_request_duration_seconds_bucket{namespace=~"$namespace", outcome!="ok"}[$__rate_interval]))) / 1000 > 3e2 and on(job) up"#,
    );
    assert_eq!(
        metrics,
        BTreeSet::from([
            "brook_request_duration_seconds_bucket".to_owned(),
            "up".to_owned()
        ])
    );
    assert_eq!(
        labels,
        ["job", "le", "namespace", "operation", "outcome"]
            .map(str::to_owned)
            .into()
    );
}

/// Metric and label names in a text exposition.
fn exported(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        metrics.insert(line[..name_end].to_owned());
        if let Some(inner) = line[name_end..]
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
        {
            for pair in inner.0.split("\",") {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim().to_owned());
                }
            }
        }
    }
    (metrics, labels)
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}); `make test` installs it"))
}

#[test]
fn promtool_accepts_the_alert_rules_and_every_dashboard_query() {
    let output = promtool(&[
        "check",
        "rules",
        &chart_file("alerts.yaml").display().to_string(),
    ]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The dashboard's queries as recording rules, Grafana's variables given values.
    let rules: Vec<Value> = dashboard_expressions()
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$namespace", ".*")
                .replace("$stream", ".*");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let file = std::env::temp_dir().join(format!("brook-dashboard-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        serde_yaml::to_string(&json!({"groups": [{"name": "dashboard", "rules": rules}]}))
            .expect("YAML"),
    )
    .expect("rules file");
    let output = promtool(&["check", "rules", &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_read_is_exported_by_a_live_broker_and_operator() {
    // One shard with small quotas, so real traffic meets them; checkpoints every second, so
    // the stored bytes are measured.
    let harness = Harness::with_broker_args(
        "dashboard",
        "orders",
        &[
            "--write-records-per-second",
            "20",
            "--read-calls-per-second",
            "1",
            "--checkpoint-seconds",
            "1",
        ],
    );
    harness.seed_admin_secret("orders");
    let operator = harness.start_operator_process("operator-a").await;
    harness.apply_stream("orders", json!({"shards": 1}));
    eventually("the StatefulSet", || {
        harness
            .mock
            .get(support::operator::STATEFULSETS, "orders")
            .is_some()
    })
    .await;
    harness.brokers_ready("orders", 1);
    eventually("Stream orders Ready", || {
        harness.mock.get(STREAMS, "orders").is_some_and(|s| {
            s["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    })
    .await;

    let broker = harness.broker.as_ref().expect("broker");
    let client = client_for(&broker.endpoint);
    // Writes beyond the quota: some records are refused (throttled writes).
    let mut throttled_writes = false;
    while !throttled_writes {
        let entries = (0..50)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{i}"))
                    .data(Blob::new(vec![b'x'; 100]))
                    .build()
                    .expect("entry")
            })
            .collect::<Vec<_>>();
        let put = client
            .put_records()
            .stream_name("orders")
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        throttled_writes = put.failed_record_count().unwrap_or(0) > 0;
    }
    // Reads beyond the quota: a GetRecords is refused (throttled reads); the others read.
    let iterator = client
        .get_shard_iterator()
        .stream_name("orders")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator
        .expect("iterator");
    let mut read = false;
    let mut throttled_reads = false;
    while !(read && throttled_reads) {
        match client.get_records().shard_iterator(&iterator).send().await {
            Ok(records) => read |= !records.records().is_empty(),
            Err(error) => {
                let code = aws_sdk_kinesis::error::ProvideErrorMetadata::code(&error);
                assert_eq!(
                    code,
                    Some("ProvisionedThroughputExceededException"),
                    "{error:?}"
                );
                throttled_reads = true;
            }
        }
    }

    let mut wanted_metrics = BTreeSet::new();
    let mut wanted_labels = BTreeSet::new();
    for expr in dashboard_expressions().iter().chain(&alert_expressions()) {
        let (metrics, labels) = names_in(expr);
        wanted_metrics.extend(metrics);
        wanted_labels.extend(labels);
    }
    let scrape = |base: &str| {
        let (status, text) = http_request("GET", &format!("{base}/metrics"));
        assert_eq!(status, 200);
        exported(&text)
    };
    let broker_base = broker.metrics.clone();
    let missing = |exported_metrics: &BTreeSet<String>| -> Vec<String> {
        wanted_metrics
            .iter()
            .filter(|m| !TARGET_SERIES.contains(&m.as_str()) && !exported_metrics.contains(*m))
            .cloned()
            .collect()
    };
    // The stored bytes appear with the first checkpoint after the writes.
    eventually("the broker's stored bytes", || {
        scrape(&broker_base).0.contains("brook_stored_bytes")
    })
    .await;
    let (broker_metrics, broker_labels) = scrape(&broker_base);
    let (operator_metrics, operator_labels) = scrape(&operator.base);
    let (worker, _bucket) = delivery_worker_after_traffic(&harness).await;
    let (worker_metrics, worker_labels) = scrape(&worker.endpoint);
    let all_metrics: BTreeSet<String> = broker_metrics
        .union(&operator_metrics)
        .chain(&worker_metrics)
        .cloned()
        .collect();
    assert_eq!(
        missing(&all_metrics),
        Vec::<String>::new(),
        "the dashboard or the alerts read metrics nobody exports"
    );
    let known_labels: BTreeSet<String> = broker_labels
        .union(&operator_labels)
        .chain(&worker_labels)
        .cloned()
        .chain(TARGET_LABELS.map(str::to_owned))
        .collect();
    let unknown: Vec<&String> = wanted_labels.difference(&known_labels).collect();
    assert!(unknown.is_empty(), "labels nobody exports: {unknown:?}");
    // Every part is read: the dashboard reads the operator and the delivery workers too.
    assert!(wanted_metrics.iter().any(|m| operator_metrics.contains(m)));
    assert!(wanted_metrics.iter().any(|m| broker_metrics.contains(m)));
    assert!(wanted_metrics.iter().any(|m| worker_metrics.contains(m)));
}

/// A direct-put delivery worker that delivered a record and set a malformed aggregate aside,
/// with the S3 server it writes to.
async fn delivery_worker_after_traffic(
    harness: &Harness,
) -> (support::delivery::Worker, support::s3::S3Server) {
    let s3 = support::s3::S3Server::start(&harness.dir.path().join("s3"), &["bucket"]).await;
    let spec = json!({
        "source": {"directPut": {}},
        "buffering": {"sizeMiB": 1, "intervalSeconds": 0},
        "processing": {"deaggregate": true},
        "destination": support::delivery::s3_destination(&s3, "bucket", "d/", "GZIP"),
    });
    let mut worker =
        support::delivery::Worker::start("metrics", spec, &harness.dir.path().join("worker"), &[]);
    let mut malformed = brook::delivery::kpl::MAGIC.to_vec();
    malformed.extend_from_slice(&[0u8; 32]);
    support::delivery::firehose_client(&worker.endpoint)
        .put_record_batch()
        .delivery_stream_name("metrics")
        .records(support::delivery::firehose_record("fine"))
        .records(support::delivery::firehose_record(malformed))
        .send()
        .await
        .expect("PutRecordBatch");
    worker
        .wait_for_metric("brook_delivery_failed_records_total", "", 1.0)
        .await;
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 1.0)
        .await;
    (worker, s3)
}
