//! Enhanced fan-out load: producers write stamped records while 1, 5 or 20 consumers
//! subscribe to every shard; measures MiB/s delivered and put-to-delivery latency. Also the
//! cost of verifying a SigV4 signature, measured in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::Mutex;

use super::client::Connection;
use super::{BenchError, Row};
use crate::broker::protocol::eventstream;

const RECORD_BYTES: usize = 1024;

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A PutRecords body whose records carry the time they were sent in their first 8 bytes.
fn stamped_batch(stream: &str, count: usize, seed: usize) -> Bytes {
    let mut data = micros_now().to_be_bytes().to_vec();
    data.resize(RECORD_BYTES, b'f');
    let encoded = STANDARD.encode(&data);
    let records: Vec<String> = (0..count)
        .map(|i| format!("{{\"Data\":\"{encoded}\",\"PartitionKey\":\"fan-{seed}-{i}\"}}"))
        .collect();
    Bytes::from(format!(
        "{{\"StreamName\":\"{stream}\",\"Records\":[{}]}}",
        records.join(",")
    ))
}

async fn call_json(
    address: SocketAddr,
    operation: &str,
    body: String,
) -> Result<serde_json::Value, BenchError> {
    let mut connection = Connection::open(address).await?;
    let answer = connection.call(operation, Bytes::from(body)).await?;
    Ok(serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null))
}

/// Reads one subscription until `deadline`, adding delivered bytes and latencies.
async fn consume(
    address: SocketAddr,
    consumer_arn: String,
    shard: u32,
    deadline: Instant,
    delivered: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<f64>>>,
) -> Result<(), BenchError> {
    let mut connection = Connection::open(address).await?;
    let body = format!(
        "{{\"ConsumerARN\":\"{consumer_arn}\",\"ShardId\":\"shardId-{shard:012}\",\"StartingPosition\":{{\"Type\":\"LATEST\"}}}}"
    );
    let mut events = connection
        .stream("SubscribeToShard", Bytes::from(body))
        .await?;
    let mut buffer = BytesMut::new();
    let mut local = Vec::new();
    while Instant::now() < deadline {
        let frame = match tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            events.frame(),
        )
        .await
        {
            Ok(Some(Ok(frame))) => frame,
            _ => break,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Ok(((_, payload), used)) = eventstream::decode(&buffer) {
            let _ = buffer.split_to(used);
            let now = micros_now();
            let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            for record in parsed["Records"].as_array().into_iter().flatten() {
                let bytes = STANDARD
                    .decode(record["Data"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                delivered.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if let Some(stamp) = bytes.get(..8) {
                    let sent = u64::from_be_bytes(stamp.try_into().unwrap_or([0; 8]));
                    local.push(now.saturating_sub(sent) as f64 / 1000.0);
                }
            }
        }
    }
    latencies.lock().await.extend(local);
    Ok(())
}

/// Fan-out to `consumers` consumers over `shards` shards for `seconds`.
pub async fn fanout(
    address: SocketAddr,
    consumers: usize,
    shards: u32,
    seconds: f64,
) -> Result<Row, BenchError> {
    let stream = format!("fan{consumers}");
    call_json(
        address,
        "CreateStream",
        format!("{{\"StreamName\":\"{stream}\",\"ShardCount\":{shards}}}"),
    )
    .await?;
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}");
    let mut arns = Vec::new();
    for i in 0..consumers {
        let answer = call_json(
            address,
            "RegisterStreamConsumer",
            format!("{{\"StreamARN\":\"{arn}\",\"ConsumerName\":\"c{i}\"}}"),
        )
        .await?;
        arns.push(
            answer["Consumer"]["ConsumerARN"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 0.5);
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for consumer in &arns {
        for shard in 0..shards {
            tasks.push(tokio::spawn(consume(
                address,
                consumer.clone(),
                shard,
                deadline,
                delivered.clone(),
                latencies.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A steady producer (about 2 MiB/s) so latency is measured below saturation.
    let produce_until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut connection = Connection::open(address).await?;
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    let mut seed = 0;
    while Instant::now() < produce_until {
        ticks.tick().await;
        seed += 1;
        connection
            .call("PutRecords", stamped_batch(&stream, 100, seed))
            .await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for task in tasks {
        task.await.map_err(|e| BenchError::Start(e.to_string()))??;
    }
    let mut all = latencies.lock().await.clone();
    all.sort_by(f64::total_cmp);
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let bytes = delivered.load(Ordering::Relaxed) as f64;
    Ok(Row {
        workload: format!(
            "SubscribeToShard fan-out, {consumers} consumers x {shards} shards, 1 KiB records"
        ),
        durability: String::new(),
        records_per_second: bytes / RECORD_BYTES as f64 / elapsed,
        mib_per_second: bytes / elapsed / 1_048_576.0,
        latency_ms: Some((at(0.5), at(0.99), at(0.999))),
    })
}

/// Microseconds to verify one SigV4 signature over a body of `body_bytes`.
pub fn sigv4_cost(body_bytes: usize) -> f64 {
    use crate::broker::auth::{Credentials, SignedRequest, verify};
    let body = vec![b'x'; body_bytes];
    let credentials =
        Credentials::from_pairs([("AKIDBENCH".to_owned(), "bench-secret".to_owned())]);
    let request = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: vec![
            ("content-type".into(), "application/x-amz-json-1.1".into()),
            ("host".into(), "127.0.0.1:4567".into()),
            ("x-amz-date".into(), "20261129T000000Z".into()),
            ("x-amz-target".into(), "Kinesis_20131202.PutRecords".into()),
            ("authorization".into(), "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261129/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00".into()),
        ],
        body: &body,
    };
    let signed_at = crate::broker::auth::parse_amz_date("20261129T000000Z").unwrap_or(0);
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        // The signature is wrong on purpose: the whole computation runs, then the comparison fails.
        let _ = std::hint::black_box(verify(&request, &credentials, "us-east-1", signed_at));
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}
