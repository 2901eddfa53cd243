//! What an operator of the broker watches: Prometheus metrics per stream and shard, health
//! endpoints, JSON logs, and memory that stays small per idle shard.

mod support;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use support::broker::{BrokerBuilder, TempDir, create_active_stream};

fn metric(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix(labels)?;
        rest.trim().parse().ok()
    })
}

#[tokio::test]
async fn metrics_count_throughput_per_shard_and_latency_per_operation() {
    let dir = TempDir::new("metrics");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .arg("--log-format")
        .arg("json")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "watched", 1).await;
    for i in 0..10 {
        client
            .put_record()
            .stream_name("watched")
            .partition_key(format!("key{i}"))
            .data(Blob::new(vec![b'x'; 100]))
            .send()
            .await
            .expect("PutRecord");
    }
    let iterator = client
        .get_shard_iterator()
        .stream_name("watched")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator");
    let page = client
        .get_records()
        .shard_iterator(iterator.shard_iterator().expect("iterator"))
        .limit(4)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(page.records().len(), 4);

    let (status, metrics) = broker.observe("/metrics");
    assert_eq!(status, 200);
    let shard = "{shard=\"shardId-000000000000\",stream=\"watched\"}";
    assert_eq!(
        metric(&metrics, "brook_incoming_records_total", shard),
        Some(10.0)
    );
    assert_eq!(
        metric(&metrics, "brook_incoming_bytes_total", shard),
        Some(10.0 * 104.0)
    );
    assert_eq!(
        metric(&metrics, "brook_outgoing_records_total", shard),
        Some(4.0)
    );
    assert_eq!(
        metric(&metrics, "brook_outgoing_bytes_total", shard),
        Some(4.0 * 104.0)
    );
    assert!(metric(&metrics, "brook_iterator_age_milliseconds", shard).is_some());
    assert!(metric(&metrics, "brook_stored_bytes", shard).is_some_and(|b| b >= 1040.0));
    assert_eq!(
        metric(
            &metrics,
            "brook_request_duration_seconds_count",
            "{operation=\"PutRecord\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "brook_requests_total",
            "{operation=\"GetRecords\",outcome=\"ok\"}"
        ),
        Some(1.0)
    );

    assert_eq!(broker.observe("/healthz").0, 200);
    assert_eq!(broker.observe("/readyz").0, 200);
    assert_eq!(broker.observe("/nope").0, 404);

    let log = broker.log();
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["fields"].is_object(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn an_idle_shard_costs_a_few_kib() {
    let dir = TempDir::new("idle-memory");
    let broker = BrokerBuilder::default().start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "warmup", 1).await;
    let before = broker.rss_kib();
    create_active_stream(&client, "wide", 4000).await;
    client
        .list_shards()
        .stream_name("wide")
        .send()
        .await
        .expect("ListShards");
    let after = broker.rss_kib();
    let per_shard = (after.saturating_sub(before)) as f64 / 4000.0;
    assert!(per_shard < 4.0, "an idle shard costs {per_shard:.2} KiB");
}

#[test]
fn brook_probe_exits_zero_on_a_ready_answer_and_non_zero_otherwise() {
    let dir = TempDir::new("probe");
    let broker = BrokerBuilder::default().start(dir.path());
    let probe = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_brook"))
            .args(["probe", url, "--timeout-seconds", "5"])
            .output()
            .expect("brook probe runs")
    };
    let ready = probe(&format!("{}/readyz", broker.metrics));
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let missing = probe(&format!("{}/no-such-page", broker.metrics));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("answered 404"));
    let closed = support::unused_address();
    let refused = probe(&format!("http://{closed}/readyz"));
    assert!(!refused.status.success());
    let not_http = probe("ftp://example/readyz");
    assert!(!not_http.status.success());
    assert!(String::from_utf8_lossy(&not_http.stderr).contains("not an http:// URL"));
}
