//! Queues: receive-and-acknowledge throughput of competing consumers over a backlog, and how
//! long a record takes from its PutRecord to a long-polling consumer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::client::Connection;
use super::single::quantile;
use super::{BenchError, Row};

/// Records preloaded for the throughput run, 100 bytes each.
const BACKLOG: usize = 200_000;

fn parse(body: &[u8]) -> Result<Value, BenchError> {
    serde_json::from_slice(body).map_err(|e| BenchError::Start(format!("unreadable answer: {e}")))
}

/// Creates an ON_DEMAND stream and a queue on it starting at `position`; returns its ARN.
async fn stream_with_queue(
    connection: &mut Connection,
    stream: &str,
    position: &str,
) -> Result<String, BenchError> {
    let create = format!(
        "{{\"StreamName\":\"{stream}\",\"StreamModeDetails\":{{\"StreamMode\":\"ON_DEMAND\"}}}}"
    );
    connection.call("CreateStream", Bytes::from(create)).await?;
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}");
    let queue = format!(
        "{{\"QueueName\":\"{stream}-q\",\"StreamConfigurationList\":[{{\"StreamARN\":\"{arn}\",\"StartingPosition\":{{\"Type\":\"{position}\"}}}}]}}"
    );
    let answer = parse(&connection.call("CreateQueue", Bytes::from(queue)).await?)?;
    answer["QueueDescription"]["QueueARN"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Start("CreateQueue answered no ARN".into()))
}

/// Receives up to 10 records (waiting up to `wait_s`) and acknowledges them; returns the
/// records' data.
async fn receive_and_acknowledge(
    connection: &mut Connection,
    queue_arn: &str,
    wait_s: u32,
) -> Result<Vec<String>, BenchError> {
    let receive = format!("{{\"QueueARN\":\"{queue_arn}\",\"WaitTimeSeconds\":{wait_s}}}");
    let answer = parse(
        &connection
            .call("ReceiveQueueRecords", Bytes::from(receive))
            .await?,
    )?;
    let records = answer["QueueRecords"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<Value> = records
        .iter()
        .map(|r| serde_json::json!({"ReceiptHandle": r["ReceiptHandle"]}))
        .collect();
    let acknowledge = serde_json::json!({"QueueARN": queue_arn, "Entries": entries});
    connection
        .call(
            "AcknowledgeQueueRecords",
            Bytes::from(acknowledge.to_string()),
        )
        .await?;
    Ok(records
        .iter()
        .filter_map(|r| r["Data"].as_str().map(str::to_owned))
        .collect())
}

/// Receive-and-acknowledge throughput of `consumers` over a backlog, for `seconds`.
pub async fn throughput(
    address: SocketAddr,
    consumers: usize,
    seconds: f64,
    durability: &str,
) -> Result<Row, BenchError> {
    let mut connection = Connection::open(address).await?;
    let queue_arn = stream_with_queue(&mut connection, "queued", "TRIM_HORIZON").await?;
    let entries: Vec<String> = (0..500)
        .map(|i| {
            format!(
                "{{\"PartitionKey\":\"k{i}\",\"Data\":\"{}\"}}",
                "eHh4".repeat(33)
            )
        })
        .collect();
    let batch = Bytes::from(format!(
        "{{\"StreamName\":\"queued\",\"Records\":[{}]}}",
        entries.join(",")
    ));
    for _ in 0..BACKLOG / 500 {
        connection.call("PutRecords", batch.clone()).await?;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let queue_arn = queue_arn.clone();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let mut received = 0usize;
            while Instant::now() < deadline {
                let records = receive_and_acknowledge(&mut connection, &queue_arn, 1).await?;
                if records.is_empty() {
                    break;
                }
                received += records.len();
            }
            Ok::<_, BenchError>(received)
        }));
    }
    let mut received = 0;
    for task in tasks {
        received += task.await.map_err(|e| BenchError::Start(e.to_string()))??;
    }
    let rate = received as f64 / started.elapsed().as_secs_f64();
    Ok(Row {
        workload: format!("Queue receive + acknowledge, {consumers} consumers, 100 B records"),
        durability: durability.to_owned(),
        records_per_second: rate,
        mib_per_second: rate * 100.0 / 1_048_576.0,
        latency_ms: None,
    })
}

/// Latency from a record's PutRecord to its arrival at a long-polling consumer, with
/// records put at `rate` per second for `seconds`.
pub async fn receive_latency(
    address: SocketAddr,
    rate: f64,
    seconds: f64,
    durability: &str,
) -> Result<Row, BenchError> {
    let mut connection = Connection::open(address).await?;
    let queue_arn = stream_with_queue(&mut connection, "polled", "LATEST").await?;
    let origin = Instant::now();
    let deadline = origin + Duration::from_secs_f64(seconds);
    let consumer = tokio::spawn(async move {
        let mut connection = Connection::open(address).await?;
        let mut latencies = Vec::new();
        while Instant::now() < deadline + Duration::from_secs(1) {
            for data in receive_and_acknowledge(&mut connection, &queue_arn, 1).await? {
                // The data is the put's send time, in microseconds since `origin`, base64.
                let sent = base64_micros(&data);
                let now = origin.elapsed().as_micros() as f64;
                latencies.push((now - sent) / 1000.0);
            }
        }
        Ok::<_, BenchError>(latencies)
    });
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    while Instant::now() < deadline {
        ticks.tick().await;
        use base64::Engine;
        let micros = origin.elapsed().as_micros().to_string();
        let body = format!(
            "{{\"StreamName\":\"polled\",\"PartitionKey\":\"p\",\"Data\":\"{}\"}}",
            base64::engine::general_purpose::STANDARD.encode(micros)
        );
        connection.call("PutRecord", Bytes::from(body)).await?;
    }
    let mut latencies = consumer
        .await
        .map_err(|e| BenchError::Start(e.to_string()))??;
    latencies.sort_by(f64::total_cmp);
    let received = latencies.len() as f64;
    Ok(Row {
        workload: format!(
            "Queue receive latency after PutRecord, long poll, {rate:.0} records/s ({received:.0} received)"
        ),
        durability: durability.to_owned(),
        records_per_second: received / seconds,
        mib_per_second: 0.0,
        latency_ms: Some((
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99),
            quantile(&latencies, 0.999),
        )),
    })
}

fn base64_micros(data: &str) -> f64 {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(f64::NAN)
}
