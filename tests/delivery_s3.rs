//! Delivery from a Brook stream to a real S3-compatible server (`s3s-fs`, from crates.io, on
//! loopback): object keys as Firehose names them, every compression read back by Python's own
//! readers, the size and interval triggers, multipart uploads, resharded streams read parents
//! first, KPL de-aggregation with bad aggregates in the error output, `kill -9` mid-flight,
//! and an S3 outage.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use regex::Regex;
use serde_json::json;
use support::broker::{BrokerBuilder, TempDir, create_active_stream};
use support::delivery::{Worker, delivered_lines, s3_destination};
use support::s3::S3Server;

const BUCKET: &str = "archive";

fn broker(dir: &TempDir) -> support::broker::Broker {
    BrokerBuilder::default()
        .arg("--no-quotas")
        .start(&dir.path().join("broker"))
}

fn stream_spec(
    broker: &support::broker::Broker,
    stream: &str,
    destination: serde_json::Value,
    size_mib: u32,
    interval_seconds: u32,
) -> serde_json::Value {
    let _ = broker;
    json!({
        "source": {"stream": {"name": stream, "startingPosition": "TRIM_HORIZON"}},
        "buffering": {"sizeMiB": size_mib, "intervalSeconds": interval_seconds},
        "processing": {"appendNewline": true},
        "destination": destination,
    })
}

fn source_endpoint(broker: &support::broker::Broker) -> String {
    broker.endpoint.trim_start_matches("http://").to_owned()
}

/// Puts `records` into `stream`, up to 500 or 4 MiB to a call, keyed so they spread over
/// shards.
async fn put_all(client: &aws_sdk_kinesis::Client, stream: &str, records: &[String]) {
    let per_call =
        (4 * 1024 * 1024 / records.iter().map(String::len).max().unwrap_or(1).max(1)).clamp(1, 500);
    for chunk in records.chunks(per_call) {
        let entries = chunk
            .iter()
            .map(|r| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(r.chars().take(24).collect::<String>())
                    .data(Blob::new(r.as_bytes()))
                    .build()
                    .expect("entry")
            })
            .collect::<Vec<_>>();
        let answer = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(answer.failed_record_count(), Some(0));
    }
}

/// Every delivered line with the objects it is in.
fn where_delivered(objects: &[(String, Vec<String>)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, lines) in objects {
        for line in lines {
            found.entry(line.clone()).or_default().insert(key.clone());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_writes_every_compression_with_firehose_keys() {
    let dir = TempDir::new("delivery-keys");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "clicks", 2).await;
    let records: Vec<String> = (0..3000).map(|i| format!("{{\"click\":{i}}}")).collect();
    put_all(&client, "clicks", &records).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;

    let compressions = [
        ("GZIP", ".gz"),
        ("UNCOMPRESSED", ""),
        ("ZIP", ".zip"),
        ("Snappy", ".snappy"),
        ("HADOOP_SNAPPY", ".snappy"),
    ];
    let mut workers = Vec::new();
    for (compression, _) in compressions {
        let name = format!("clicks-{}", compression.to_lowercase().replace('_', "-"));
        let prefix = format!("{name}/");
        let spec = stream_spec(
            &broker,
            "clicks",
            s3_destination(&s3, BUCKET, &prefix, compression),
            1,
            1,
        );
        let data = dir.path().join(&name);
        workers.push(Worker::start(
            &name,
            spec,
            &data,
            &["--source-endpoint", &source_endpoint(&broker)],
        ));
    }
    for worker in &mut workers {
        worker
            .wait_for_metric(
                "brook_delivery_delivered_records_total",
                "",
                records.len() as f64,
            )
            .await;
    }
    let expected: BTreeSet<String> = records.iter().cloned().collect();
    for (compression, extension) in compressions {
        let name = format!("clicks-{}", compression.to_lowercase().replace('_', "-"));
        let pattern = Regex::new(&format!(
            r"^{name}/\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/{name}-1-\d{{4}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-[a-z0-9]{{11}}{}$",
            regex::escape(extension)
        ))
        .expect("pattern");
        let objects = delivered_lines(&s3, BUCKET, &format!("{name}/"), compression);
        assert!(
            objects.len() >= 2,
            "{compression}: one object per shard at least: {objects:?}"
        );
        for (key, _) in &objects {
            assert!(
                pattern.is_match(key),
                "{compression}: key {key:?} is not Firehose's"
            );
        }
        let found = where_delivered(&objects);
        let delivered: BTreeSet<String> = found.keys().cloned().collect();
        assert_eq!(
            delivered, expected,
            "{compression}: every record, nothing else"
        );
        let total: usize = objects.iter().map(|(_, lines)| lines.len()).sum();
        assert_eq!(
            total,
            records.len(),
            "{compression}: each record exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_reads_a_stream_served_over_tls_trusting_its_ca() {
    let dir = TempDir::new("delivery-tls");
    let pki = support::pki::make(&dir.path().join("pki"), "delivery");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .arg("--tls-cert")
        .arg(pki.cert.display().to_string())
        .arg("--tls-key")
        .arg(pki.key.display().to_string())
        .start(&dir.path().join("broker"));
    let client = support::broker::https_client(&broker.endpoint, &pki.ca_pem);
    create_active_stream(&client, "sealed", 2).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let spec = stream_spec(
        &broker,
        "sealed",
        s3_destination(&s3, BUCKET, "s/", "GZIP"),
        128,
        1,
    );
    let address = broker.endpoint.trim_start_matches("https://").to_owned();
    let ca = pki.ca_pem.display().to_string();
    let mut worker = Worker::start(
        "sealed",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &address, "--source-ca", &ca],
    );
    let sent: Vec<String> = (0..20).map(|i| format!("sealed-{i}")).collect();
    put_all(&client, "sealed", &sent).await;
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 20.0)
        .await;
    let mut got: Vec<String> = delivered_lines(&s3, BUCKET, "s/", "GZIP")
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .collect();
    got.sort();
    let mut want = sent;
    want.sort();
    assert_eq!(got, want, "every record read over TLS and delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_size_hint_fires_before_a_long_interval_and_large_objects_go_in_parts() {
    let dir = TempDir::new("delivery-size");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "bulk", 1).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    // 900 s interval: only the size hint (17 MiB, above the multipart threshold) can fire.
    let spec = stream_spec(
        &broker,
        "bulk",
        s3_destination(&s3, BUCKET, "bulk/", "UNCOMPRESSED"),
        17,
        900,
    );
    let mut worker = Worker::start(
        "bulk",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &source_endpoint(&broker)],
    );
    // 40 MiB of 100 KiB records: two full batches, the rest waits for the interval.
    let records: Vec<String> = (0..410)
        .map(|i| format!("{i:06}{}", "x".repeat(100 * 1024 - 6)))
        .collect();
    put_all(&client, "bulk", &records).await;
    worker
        .wait_for_metric("brook_delivery_batches_total", "reason=\"size\"", 2.0)
        .await;
    assert_eq!(
        worker.metric("brook_delivery_batches_total", "reason=\"interval\""),
        0.0
    );
    let objects = s3.objects(BUCKET);
    assert_eq!(objects.len(), 2, "{objects:?}");
    let mut next = 0;
    for (_, file) in &objects {
        let content = std::fs::read_to_string(file).expect("object");
        assert!(
            content.len() as u64 >= 17 * 1024 * 1024,
            "{} bytes",
            content.len()
        );
        for line in content.lines() {
            assert_eq!(line, records[next], "records in order, each once");
            next += 1;
        }
    }
    assert_eq!(
        next,
        2 * 175,
        "a batch is due at the record that reaches 17 MiB: the 175th"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_interval_fires_for_a_small_batch() {
    let dir = TempDir::new("delivery-interval");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "trickle", 1).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let spec = stream_spec(
        &broker,
        "trickle",
        s3_destination(&s3, BUCKET, "t/", "GZIP"),
        128,
        1,
    );
    let mut worker = Worker::start(
        "trickle",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &source_endpoint(&broker)],
    );
    put_all(&client, "trickle", &["one".into(), "two".into()]).await;
    worker
        .wait_for_metric("brook_delivery_batches_total", "reason=\"interval\"", 1.0)
        .await;
    assert_eq!(
        worker.metric("brook_delivery_batches_total", "reason=\"size\""),
        0.0
    );
    let objects = delivered_lines(&s3, BUCKET, "t/", "GZIP");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].1, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_reads_parent_shards_before_their_children() {
    let dir = TempDir::new("delivery-lineage");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "growing", 1).await;
    let before: Vec<String> = (0..200).map(|i| format!("before-{i}")).collect();
    put_all(&client, "growing", &before).await;
    client
        .update_shard_count()
        .stream_name("growing")
        .target_shard_count(2)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    support::broker::wait_for_status(&client, "growing", "ACTIVE").await;
    let after: Vec<String> = (0..200).map(|i| format!("after-{i}")).collect();
    put_all(&client, "growing", &after).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let spec = stream_spec(
        &broker,
        "growing",
        s3_destination(&s3, BUCKET, "g/", "UNCOMPRESSED"),
        128,
        1,
    );
    let mut worker = Worker::start(
        "growing",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &source_endpoint(&broker)],
    );
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 400.0)
        .await;
    let objects = s3.objects(BUCKET);
    let modified = |(_, file): &(String, std::path::PathBuf)| {
        std::fs::metadata(file)
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    let mut parent_last = None;
    let mut child_first = None;
    for object in &objects {
        let content = std::fs::read_to_string(&object.1).expect("object");
        let time = modified(object);
        if content.starts_with("before-") {
            assert!(
                !content.contains("after-"),
                "a batch holds one shard's records"
            );
            parent_last = parent_last.max(Some(time));
        } else {
            child_first = Some(child_first.map_or(time, |t: std::time::SystemTime| t.min(time)));
        }
    }
    let (Some(parent_last), Some(child_first)) = (parent_last, child_first) else {
        panic!("objects of the parent and of the children: {objects:?}");
    };
    assert!(
        parent_last <= child_first,
        "the parent was delivered before any child"
    );
    let lines: Vec<String> = objects
        .iter()
        .flat_map(|(_, f)| {
            std::fs::read_to_string(f)
                .expect("object")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), 400, "each record once");
    let progress: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("worker/progress.json")).expect("progress"),
    )
    .expect("json");
    assert_eq!(
        progress["partitions"]["shardId-000000000000"]["finished"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_survives_kill_9_without_losing_or_renaming_a_batch() {
    let dir = TempDir::new("delivery-kill");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "steady", 2).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    // Small batches (1 MiB of 8 KiB records) so a kill lands inside one.
    let spec = stream_spec(
        &broker,
        "steady",
        s3_destination(&s3, BUCKET, "k/", "GZIP"),
        1,
        1,
    );
    let mut worker = Worker::start(
        "steady",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &source_endpoint(&broker)],
    );
    let records: Vec<String> = (0..2400)
        .map(|i| format!("{i:05}-{}", "r".repeat(8 * 1024)))
        .collect();
    let mut s3 = s3;
    for (round, chunk) in records.chunks(600).enumerate() {
        put_all(&client, "steady", chunk).await;
        if round == 0 {
            // A kill certainly mid-batch: the batch's range is saved and its upload retried
            // while the bucket is down.
            s3.stop();
            worker
                .wait_for_metric("brook_delivery_retries_total", "", 1.0)
                .await;
            worker.kill();
            s3.resume().await;
        } else {
            // A kill wherever the worker is, once it has read some of this round.
            worker
                .wait_for_metric("brook_delivery_incoming_records_total", "", 1.0)
                .await;
            worker.kill();
        }
        worker.restart();
        assert!(worker.is_running(), "round {round}: {}", worker.log());
    }
    let expected: BTreeSet<String> = records.iter().cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let found = where_delivered(&delivered_lines(&s3, BUCKET, "k/", "GZIP"));
        if found.keys().cloned().collect::<BTreeSet<_>>() == expected {
            for (record, objects) in &found {
                assert_eq!(objects.len(), 1, "{} is in {objects:?}", &record[..5]);
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every record was delivered: {}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worker.log().contains("redelivering the batch in flight"),
        "at least one kill landed mid-batch: {}",
        worker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_retries_through_an_s3_outage() {
    let dir = TempDir::new("delivery-outage");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "patient", 1).await;
    let mut s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let spec = stream_spec(
        &broker,
        "patient",
        s3_destination(&s3, BUCKET, "p/", "GZIP"),
        1,
        1,
    );
    let mut worker = Worker::start(
        "patient",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &source_endpoint(&broker)],
    );
    s3.stop();
    let records: Vec<String> = (0..500).map(|i| format!("patient-{i}")).collect();
    put_all(&client, "patient", &records).await;
    worker
        .wait_for_metric("brook_delivery_retries_total", "", 2.0)
        .await;
    assert_eq!(
        worker.metric("brook_delivery_delivered_records_total", ""),
        0.0
    );
    s3.resume().await;
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 500.0)
        .await;
    let lines: Vec<String> = delivered_lines(&s3, BUCKET, "p/", "GZIP")
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .collect();
    assert_eq!(lines, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_starts_at_a_timestamp() {
    let dir = TempDir::new("delivery-at-timestamp");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "history", 1).await;
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    put_all(&client, "history", &before).await;
    // The broker's clock moves an hour on: what follows arrived after the starting time.
    broker.advance_clock(3_600_000);
    let after: Vec<String> = (0..50).map(|i| format!("after-{i}")).collect();
    put_all(&client, "history", &after).await;
    let start = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_mins(30))
        .expect("a time");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let mut spec = stream_spec(
        &broker,
        "history",
        s3_destination(&s3, BUCKET, "h/", "UNCOMPRESSED"),
        1,
        1,
    );
    spec["source"]["stream"] = json!({"name": "history", "startingPosition": "AT_TIMESTAMP", "timestamp": start.to_string()});
    let mut worker = Worker::start(
        "history",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &source_endpoint(&broker)],
    );
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 50.0)
        .await;
    let lines: Vec<String> = delivered_lines(&s3, BUCKET, "h/", "UNCOMPRESSED")
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .collect();
    assert_eq!(
        lines, after,
        "only the records that arrived at or after the timestamp"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_from_latest_skips_what_came_before() {
    let dir = TempDir::new("delivery-latest");
    let broker = broker(&dir);
    let client = broker.client();
    create_active_stream(&client, "news", 2).await;
    let old: Vec<String> = (0..40).map(|i| format!("old-{i}")).collect();
    put_all(&client, "news", &old).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let mut spec = stream_spec(
        &broker,
        "news",
        s3_destination(&s3, BUCKET, "n/", "UNCOMPRESSED"),
        1,
        1,
    );
    spec["source"]["stream"]["startingPosition"] = json!("LATEST");
    let mut worker = Worker::start(
        "news",
        spec,
        &dir.path().join("worker"),
        &["--source-endpoint", &source_endpoint(&broker)],
    );
    // Both shards are positioned at their tips.
    worker
        .wait_for_metric("brook_delivery_source_partitions", "", 2.0)
        .await;
    let new: Vec<String> = (0..40).map(|i| format!("new-{i}")).collect();
    put_all(&client, "news", &new).await;
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 40.0)
        .await;
    let mut lines: Vec<String> = delivered_lines(&s3, BUCKET, "n/", "UNCOMPRESSED")
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .collect();
    lines.sort();
    let mut expected = new.clone();
    expected.sort();
    assert_eq!(
        lines, expected,
        "only what arrived after the worker started"
    );
}
