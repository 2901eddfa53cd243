//! Direct put through the Firehose API, with the official AWS SDK for Rust
//! (`aws-sdk-firehose`) and the AWS CLI: records acknowledged only once journaled, Firehose's
//! limits and errors, back-pressure while the bucket is down, `kill -9` after the
//! acknowledgment, and KPL aggregates (made by the AWS aggregator) de-aggregated, a malformed
//! one in the error output.

mod support;

use std::collections::BTreeSet;

use aws_sdk_firehose::Client;
use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::types::Record;
use base64::Engine;
use serde_json::{Value, json};
use support::broker::TempDir;
use support::delivery::{Worker, delivered_lines, s3_destination};
use support::s3::S3Server;

const BUCKET: &str = "landing";

fn client(worker: &Worker) -> Client {
    support::delivery::firehose_client(&worker.endpoint)
}

fn spec(destination: Value, processing: Value) -> Value {
    json!({
        "source": {"directPut": {}},
        "buffering": {"sizeMiB": 1, "intervalSeconds": 1},
        "processing": processing,
        "destination": destination,
    })
}

fn records(texts: &[String]) -> Vec<Record> {
    texts
        .iter()
        .map(|t| support::delivery::firehose_record(t.as_bytes()))
        .collect()
}

fn lines(s3: &S3Server, prefix: &str) -> Vec<String> {
    delivered_lines(s3, BUCKET, prefix, "UNCOMPRESSED")
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_direct_put_with_the_sdk_and_firehose_errors() {
    let dir = TempDir::new("delivery-direct");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let destination = s3_destination(&s3, BUCKET, "direct/", "UNCOMPRESSED");
    let mut worker = Worker::start(
        "orders",
        spec(destination, json!({"appendNewline": true})),
        &dir.path().join("worker"),
        &[],
    );
    let firehose = client(&worker);

    let single = firehose
        .put_record()
        .delivery_stream_name("orders")
        .record(support::delivery::firehose_record("first"))
        .send()
        .await
        .expect("PutRecord");
    assert!(!single.record_id().is_empty());
    let texts: Vec<String> = (0..500).map(|i| format!("order-{i}")).collect();
    let batch = firehose
        .put_record_batch()
        .delivery_stream_name("orders")
        .set_records(Some(records(&texts)))
        .send()
        .await
        .expect("PutRecordBatch");
    assert_eq!(batch.failed_put_count(), 0);
    assert_eq!(batch.request_responses().len(), 500);
    let ids: BTreeSet<&str> = batch
        .request_responses()
        .iter()
        .filter_map(|r| r.record_id())
        .collect();
    assert_eq!(ids.len(), 500, "a distinct id per record");

    // Firehose's limits and errors.
    let too_many: Vec<String> = (0..501).map(|i| i.to_string()).collect();
    let error = firehose
        .put_record_batch()
        .delivery_stream_name("orders")
        .set_records(Some(records(&too_many)))
        .send()
        .await
        .expect_err("501 records");
    assert_eq!(error.code(), Some("InvalidArgumentException"), "{error:?}");
    let error = firehose
        .put_record()
        .delivery_stream_name("orders")
        .record(support::delivery::firehose_record(vec![b'x'; 1_024_001]))
        .send()
        .await
        .expect_err("a record over 1,000 KiB");
    assert_eq!(error.code(), Some("InvalidArgumentException"), "{error:?}");
    let heavy: Vec<String> = (0..5).map(|_| "y".repeat(1_000_000)).collect();
    let error = firehose
        .put_record_batch()
        .delivery_stream_name("orders")
        .set_records(Some(records(&heavy)))
        .send()
        .await
        .expect_err("over 4 MiB in a batch");
    assert_eq!(error.code(), Some("InvalidArgumentException"), "{error:?}");
    let error = firehose
        .put_record()
        .delivery_stream_name("someone-else")
        .record(support::delivery::firehose_record("x"))
        .send()
        .await
        .expect_err("another stream");
    assert_eq!(error.code(), Some("ResourceNotFoundException"), "{error:?}");

    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 501.0)
        .await;
    let mut expected = vec!["first".to_owned()];
    expected.extend(texts);
    assert_eq!(
        lines(&s3, "direct/"),
        expected,
        "in order, each once, nothing refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_direct_put_pushes_back_while_the_bucket_is_down_and_survives_kill_9() {
    let dir = TempDir::new("delivery-backpressure");
    let mut s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let destination = s3_destination(&s3, BUCKET, "bp/", "UNCOMPRESSED");
    // Any undelivered byte is over the limit: the second put is refused.
    let mut worker = Worker::start(
        "events",
        spec(destination, json!({"appendNewline": true})),
        &dir.path().join("worker"),
        &["--max-pending-mib", "0"],
    );
    s3.stop();
    let firehose = client(&worker);
    let accepted: Vec<String> = (0..100).map(|i| format!("event-{i}")).collect();
    let answer = firehose
        .put_record_batch()
        .delivery_stream_name("events")
        .set_records(Some(records(&accepted)))
        .send()
        .await
        .expect("PutRecordBatch");
    assert_eq!(answer.failed_put_count(), 0);

    let refused = firehose
        .put_record_batch()
        .delivery_stream_name("events")
        .set_records(Some(records(&["late".to_owned(), "later".to_owned()])))
        .send()
        .await
        .expect("PutRecordBatch answers with per-record failures");
    assert_eq!(refused.failed_put_count(), 2);
    for entry in refused.request_responses() {
        assert_eq!(entry.error_code(), Some("ServiceUnavailableException"));
        assert!(entry.record_id().is_none());
    }
    let error = firehose
        .put_record()
        .delivery_stream_name("events")
        .record(support::delivery::firehose_record("late"))
        .send()
        .await
        .expect_err("refused while the bucket is down");
    assert_eq!(
        error.code(),
        Some("ServiceUnavailableException"),
        "{error:?}"
    );

    // Acknowledged records survive kill -9 before any was delivered.
    worker.kill();
    s3.resume().await;
    worker.restart();
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 100.0)
        .await;
    assert_eq!(lines(&s3, "bp/"), accepted);

    // With the backlog delivered, puts are taken again.
    let firehose = client(&worker);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = firehose
            .put_record_batch()
            .delivery_stream_name("events")
            .set_records(Some(records(&["again".to_owned()])))
            .send()
            .await
            .expect("PutRecordBatch");
        if answer.failed_put_count() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "puts stayed refused: {}",
            worker.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_direct_put_with_the_aws_cli() {
    let dir = TempDir::new("delivery-cli");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let destination = s3_destination(&s3, BUCKET, "cli/", "UNCOMPRESSED");
    let mut worker = Worker::start(
        "cli-stream",
        spec(destination, json!({"appendNewline": true})),
        &dir.path().join("worker"),
        &[],
    );
    let aws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/aws");
    let output = std::process::Command::new(&aws)
        .args([
            "--endpoint-url",
            &worker.endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args([
            "firehose",
            "put-record-batch",
            "--delivery-stream-name",
            "cli-stream",
        ])
        .args([
            "--records",
            r#"[{"Data": "from-the-cli-1"}, {"Data": "from-the-cli-2"}]"#,
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); `make test` installs the AWS CLI",
                aws.display()
            )
        });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(answer["FailedPutCount"], 0);
    assert_eq!(answer["RequestResponses"].as_array().map(Vec::len), Some(2));
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 2.0)
        .await;
    assert_eq!(lines(&s3, "cli/"), ["from-the-cli-1", "from-the-cli-2"]);
}

/// Aggregates `(key, data)` records with the AWS aggregation library.
fn aggregate(records: &[(&str, &str)]) -> Vec<u8> {
    let engine = base64::engine::general_purpose::STANDARD;
    let input: Vec<Value> = records
        .iter()
        .map(|(key, data)| json!({"key": key, "hash": null, "data": engine.encode(data)}))
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(support::helm::python())
        .arg(root.join("tests/python/kpl_aggregate.py"))
        .arg(Value::Array(input).to_string())
        .output()
        .expect("python runs; `make test` installs aws-kinesis-agg");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    engine
        .decode(String::from_utf8_lossy(&output.stdout).trim())
        .expect("base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_deaggregates_kpl_records_and_sets_bad_ones_aside() {
    let dir = TempDir::new("delivery-kpl");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let mut destination = s3_destination(&s3, BUCKET, "kpl/", "UNCOMPRESSED");
    destination["s3"]["errorOutputPrefix"] = json!("bad/!{firehose:error-output-type}/");
    let mut worker = Worker::start(
        "kpl",
        spec(
            destination,
            json!({"deaggregate": true, "appendNewline": true}),
        ),
        &dir.path().join("worker"),
        &[],
    );
    let aggregated = aggregate(&[("a", "user-1"), ("b", "user-2"), ("a", "user-3")]);
    let mut malformed = aggregated.clone();
    let last = malformed.len() - 1;
    malformed[last] ^= 0xff;
    let firehose = client(&worker);
    let answer = firehose
        .put_record_batch()
        .delivery_stream_name("kpl")
        .set_records(Some(vec![
            support::delivery::firehose_record(aggregated),
            support::delivery::firehose_record("plain"),
            support::delivery::firehose_record(malformed.clone()),
        ]))
        .send()
        .await
        .expect("PutRecordBatch");
    assert_eq!(answer.failed_put_count(), 0);
    worker
        .wait_for_metric(
            "brook_delivery_failed_records_total",
            "type=\"processing-failed\"",
            1.0,
        )
        .await;
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 4.0)
        .await;
    assert_eq!(lines(&s3, "kpl/"), ["user-1", "user-2", "user-3", "plain"]);
    let errors = lines(&s3, "bad/processing-failed/");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error: Value = serde_json::from_str(&errors[0]).expect("an error line is JSON");
    assert_eq!(error["errorCode"], "Kinesis.AggregatedRecordInvalid");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(error["rawData"].as_str().expect("rawData"))
        .expect("base64");
    assert_eq!(
        raw, malformed,
        "the error output holds the record as it was put"
    );
}

/// Bytes of the journal's segment files.
fn journal_segment_bytes(worker_dir: &std::path::Path) -> u64 {
    let dir = worker_dir.join("journal/streams/0/0");
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_journal_frees_the_space_of_delivered_records() {
    let dir = TempDir::new("delivery-trim");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let destination = s3_destination(&s3, BUCKET, "trim/", "GZIP");
    let worker_dir = dir.path().join("worker");
    let mut worker = Worker::start("bulk", spec(destination, json!({})), &worker_dir, &[]);
    let firehose = client(&worker);
    // 48 MiB in 4 MiB batches: three journal segments' worth.
    let record = "z".repeat(1_000_000);
    for _ in 0..12 {
        let answer = firehose
            .put_record_batch()
            .delivery_stream_name("bulk")
            .set_records(Some(records(&vec![record.clone(); 4])))
            .send()
            .await
            .expect("PutRecordBatch");
        assert_eq!(answer.failed_put_count(), 0);
    }
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 48.0)
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Only the active segment (at most 16 MiB and one batch) may remain.
    while journal_segment_bytes(&worker_dir) > 21 * 1024 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} bytes of delivered records stay in the journal",
            journal_segment_bytes(&worker_dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
