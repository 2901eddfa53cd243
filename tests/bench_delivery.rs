//! `make bench`'s delivery figures (ignored by `make test`; run in release by `make bench`):
//! a release `brook broker`, a release `brook delivery` worker and a real S3-compatible server
//! (`s3s-fs`, in this process) on loopback.
//!
//! - keeping up: 8 shards written at their full quota (8 MiB/s, 8,000 records/s of 1 KiB) for
//!   20 s, delivered with GZIP and without; the worker's CPU while it keeps up.
//! - catching up: 8 shards holding 256 MiB read from the start, as fast as the worker goes.
//! - end-to-end latency at a 1 s interval: from the put to the object in the bucket.
//!
//! Timings are printed, never asserted beyond "every record arrived".

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use brook::bench::client::Connection;
use bytes::Bytes;
use serde_json::json;
use support::broker::{BrokerBuilder, TempDir, create_active_stream};
use support::delivery::{Worker, s3_destination};
use support::s3::S3Server;

const BUCKET: &str = "bench";
const SHARDS: i32 = 8;
const RECORD: usize = 1024;

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A PutRecords body of `count` records of `RECORD` bytes, each starting with its sequence
/// number and send time.
fn body(stream: &str, first: u64, count: usize) -> Bytes {
    let engine = base64::engine::general_purpose::STANDARD;
    let sent = unix_micros();
    let records: Vec<serde_json::Value> = (0..count as u64)
        .map(|i| {
            let mut data = format!("{:012} {sent:016} ", first + i).into_bytes();
            data.resize(RECORD - 1, b'x');
            json!({"Data": engine.encode(&data), "PartitionKey": format!("k{}", first + i)})
        })
        .collect();
    Bytes::from(json!({"StreamName": stream, "Records": records}).to_string())
}

/// Writes `rate` records per second for `seconds` over 8 connections; returns records put.
async fn produce(address: SocketAddr, stream: &str, rate: u64, seconds: u64) -> u64 {
    let producers = 8u64;
    let per_producer = rate / producers;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let stream = stream.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await.expect("connect");
            let start = Instant::now();
            let mut put = 0u64;
            // Calls of up to 500 records (Kinesis's limit), ten a second or more.
            let batch = (per_producer / 10).clamp(1, 500) as usize;
            let total = per_producer * seconds;
            while put < total {
                let due = start + Duration::from_millis(put * 1000 / per_producer.max(1));
                tokio::time::sleep_until(due.into()).await;
                let count = batch.min((total - put) as usize);
                let first = p * 1_000_000_000 + put;
                let answer = connection
                    .call("PutRecords", body(&stream, first, count))
                    .await
                    .expect("PutRecords");
                let answer: serde_json::Value = serde_json::from_slice(&answer).expect("json");
                assert_eq!(answer["FailedRecordCount"], 0, "{answer}");
                put += count as u64;
            }
            put
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("producer");
    }
    total
}

/// CPU seconds the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn spec(
    s3: &S3Server,
    stream: &str,
    prefix: &str,
    compression: &str,
    size_mib: u32,
    interval: u32,
) -> serde_json::Value {
    json!({
        "source": {"stream": {"name": stream, "startingPosition": "TRIM_HORIZON"}},
        "buffering": {"sizeMiB": size_mib, "intervalSeconds": interval},
        "processing": {"appendNewline": true},
        "destination": s3_destination(s3, BUCKET, prefix, compression),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: `make bench` runs it in release"]
async fn bench_delivery() {
    let dir = TempDir::new("bench-delivery");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(&dir.path().join("broker"));
    let client = broker.client();
    let address: SocketAddr = broker
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let source = broker.endpoint.trim_start_matches("http://").to_owned();
    println!(
        "\nDelivery (release worker, s3s-fs on loopback, {SHARDS} shards, {RECORD}-byte records)\n"
    );
    println!(
        "| workload | compression | records | delivery took | records/s | MiB/s | worker CPU |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");

    // Keeping up with 8 shards at full quota.
    for compression in ["GZIP", "UNCOMPRESSED"] {
        let stream = format!("steady-{}", compression.to_lowercase());
        create_active_stream(&client, &stream, SHARDS).await;
        let mut worker = Worker::start(
            &stream,
            spec(&s3, &stream, &format!("{stream}/"), compression, 5, 5),
            &dir.path().join(&stream),
            &["--source-endpoint", &source, "--log-format", "json"],
        );
        let cpu_before = cpu_seconds(worker.pid());
        let started = Instant::now();
        let put = produce(address, &stream, 8_000, 20).await;
        let produced = started.elapsed().as_secs_f64();
        worker
            .wait_for_metric("brook_delivery_delivered_records_total", "", put as f64)
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(worker.pid()) - cpu_before;
        println!(
            "| 8 shards at full quota for {produced:.1} s (5 s interval) | {compression} | {put} | the last within {:.1} s of the last put | {:.0} | {:.1} | {:.0}% of a core |",
            elapsed - produced,
            put as f64 / elapsed,
            put as f64 * RECORD as f64 / elapsed / 1_048_576.0,
            cpu / elapsed * 100.0
        );
    }

    // Catching up: as fast as the worker reads and writes.
    for compression in ["GZIP", "UNCOMPRESSED"] {
        let stream = format!("backlog-{}", compression.to_lowercase());
        create_active_stream(&client, &stream, SHARDS).await;
        let put = produce(address, &stream, 64_000, 4).await;
        let mut worker = Worker::start(
            &stream,
            // Interval 0: every read is delivered at once, so the time is the worker's own.
            spec(&s3, &stream, &format!("{stream}/"), compression, 8, 0),
            &dir.path().join(&stream),
            &["--source-endpoint", &source, "--log-format", "json"],
        );
        let cpu_before = cpu_seconds(worker.pid());
        let started = Instant::now();
        worker
            .wait_for_metric("brook_delivery_delivered_records_total", "", put as f64)
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(worker.pid()) - cpu_before;
        println!(
            "| a backlog of {} MiB, from the start (interval 0) | {compression} | {put} | {elapsed:.1} s | {:.0} | {:.1} | {:.0}% of a core |",
            put * RECORD as u64 / 1_048_576,
            put as f64 / elapsed,
            put as f64 * RECORD as f64 / elapsed / 1_048_576.0,
            cpu / elapsed * 100.0
        );
    }

    // End-to-end latency at a 1 s interval: 200 records/s for 10 s.
    let stream = "latency";
    create_active_stream(&client, stream, 2).await;
    let mut worker = Worker::start(
        stream,
        spec(&s3, stream, "latency/", "UNCOMPRESSED", 128, 1),
        &dir.path().join(stream),
        &["--source-endpoint", &source, "--log-format", "json"],
    );
    let put = produce(address, stream, 200, 10).await;
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", put as f64)
        .await;
    let mut latencies: Vec<f64> = Vec::new();
    for (_, file) in s3
        .objects(BUCKET)
        .into_iter()
        .filter(|(k, _)| k.starts_with("latency/"))
    {
        let written = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_micros() as f64;
        for line in std::fs::read_to_string(&file).expect("object").lines() {
            if let Some(sent) = line.split(' ').nth(1).and_then(|s| s.parse::<f64>().ok()) {
                latencies.push((written - sent) / 1000.0);
            }
        }
    }
    assert_eq!(latencies.len() as u64, put, "every record arrived once");
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "\nEnd-to-end latency at a 1 s interval (200 records/s, put to object written): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
