//! `brook bench`: starts brokers on loopback (fsync on and off) and measures PutRecords
//! throughput, GetRecords throughput and PutRecord latency at half of peak, then prints a
//! table. Timings live here, never in pass/fail tests.

mod cbor_scan;
pub mod client;
pub mod cluster;
pub mod compare;
pub mod disk;
pub mod fanout;
pub mod noop;
pub mod peers;
pub mod queue;
pub mod single;
pub mod steal;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{ClientError, Connection, put_records_body};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A broker could not be started.
    #[error("starting a broker: {0}")]
    Start(String),
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Seconds each throughput workload runs.
    pub seconds: f64,
    /// Concurrent producers.
    pub producers: usize,
    /// The `brook` executable that serves as the broker.
    pub broker_exe: PathBuf,
    /// Where the brokers keep their data.
    pub work_dir: PathBuf,
    /// Only the single-record PutRecord workloads.
    pub put_record_only: bool,
    /// Only the cluster workloads (three broker processes against one).
    pub cluster_only: bool,
    /// Only the queue workloads.
    pub queue_only: bool,
}

/// A `brook broker` (or `brook gateway`) process, stopped when dropped.
struct ServerProcess {
    child: Child,
    /// The Kinesis API.
    address: SocketAddr,
    /// `/metrics` (the gateway's health port).
    metrics: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker(options: &BenchOptions, durability: &str) -> Result<ServerProcess, BenchError> {
    let dir = options.work_dir.join(durability);
    spawn_broker(&options.broker_exe, &dir, durability, &[])
}

/// A closed-loop run of 1 KiB PutRecords from `producers` against stream `single` of
/// `broker`: prints where the broker's time and CPU went and returns the table row, whose
/// workload ends with `variant`.
async fn put_record_row(
    broker: &ServerProcess,
    producers: usize,
    seconds: f64,
    durability: &str,
    variant: &str,
) -> Result<Row, BenchError> {
    let before = single::scrape(broker.metrics).await?;
    let cpu = steal::CpuUse::start(vec![broker.child.id()]);
    let figures = single::put_record_closed_loop(
        broker.address,
        "single",
        producers,
        single::RECORD_BYTES,
        seconds,
    )
    .await?;
    let cpu_used = cpu.seconds();
    let after = single::scrape(broker.metrics).await?;
    eprintln!(
        "PutRecord 1 KiB, {producers} producers, {durability}{variant}: {}",
        single::render_breakdown(&before, &after, cpu_used).trim_end()
    );
    Ok(Row {
        workload: format!("PutRecord 1 KiB, {producers} producers, closed loop{variant}"),
        durability: durability.to_owned(),
        records_per_second: figures.records_per_second,
        mib_per_second: figures.records_per_second * single::RECORD_BYTES as f64 / 1_048_576.0,
        latency_ms: Some((figures.p50_ms, figures.p99_ms, figures.p999_ms)),
    })
}

/// PutRecord 1 KiB from 8 producers to a broker that holds the load generator's key and so
/// verifies every signature (the other brokers have no keys and check only the form): what
/// SigV4 costs a signed call, against the unsigned row of the same producers.
async fn signed_put_record(options: &BenchOptions, durability: &str) -> Result<Row, BenchError> {
    let keys = options.work_dir.join("bench-credentials");
    std::fs::create_dir_all(&options.work_dir)
        .and_then(|()| {
            let line = format!("{}={}\n", client::BENCH_KEY, client::BENCH_SECRET);
            std::fs::write(&keys, line)
        })
        .map_err(|e| BenchError::Start(format!("writing {}: {e}", keys.display())))?;
    let dir = options.work_dir.join(format!("{durability}-signed"));
    let credentials = ["--credentials".to_owned(), keys.display().to_string()];
    let broker = spawn_broker(&options.broker_exe, &dir, durability, &credentials)?;
    create_stream(broker.address, "single", 4).await?;
    let row = put_record_row(&broker, 8, options.seconds, durability, ", SigV4 verified").await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&keys);
    row
}

/// Starts `exe broker` on a fresh `dir` with `durability`, no quotas and `extra` arguments.
fn spawn_broker(
    exe: &Path,
    dir: &Path,
    durability: &str,
    extra: &[String],
) -> Result<ServerProcess, BenchError> {
    let _ = std::fs::remove_dir_all(dir);
    let mut command = Command::new(exe);
    command
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--durability",
            durability,
            "--no-quotas",
            "--stream-transition-ms",
            "0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir);
    start_announced(command)
}

/// Starts a `brook` server and reads the addresses its first line on stdout announces:
/// "... listening on http://API (metrics on http://METRICS/metrics)" (the gateway names its
/// health port there).
fn start_announced(mut command: Command) -> Result<ServerProcess, BenchError> {
    use std::io::BufRead;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Start(e.to_string()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Start("no stdout".into()))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| BenchError::Start(e.to_string()))?;
    let mut addresses = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("http://"))
        .map(|a| {
            a.trim_end_matches(')')
                .split('/')
                .next()
                .unwrap_or(a)
                .parse()
        });
    let unexpected = || BenchError::Start(format!("unexpected first line {line:?}"));
    let address = addresses
        .next()
        .and_then(Result::ok)
        .ok_or_else(unexpected)?;
    let metrics = addresses
        .next()
        .and_then(Result::ok)
        .ok_or_else(unexpected)?;
    Ok(ServerProcess {
        child,
        address,
        metrics,
    })
}

/// One row of the results table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// What was measured.
    pub workload: String,
    /// Durability of the broker.
    pub durability: String,
    /// Records per second.
    pub records_per_second: f64,
    /// MiB of data per second.
    pub mib_per_second: f64,
    /// Latency percentiles in milliseconds (p50, p99, p99.9), for latency rows.
    pub latency_ms: Option<(f64, f64, f64)>,
}

async fn create_stream(address: SocketAddr, name: &str, shards: u32) -> Result<(), BenchError> {
    let mut connection = Connection::open(address).await?;
    let body = format!("{{\"StreamName\":\"{name}\",\"ShardCount\":{shards}}}");
    connection.call("CreateStream", Bytes::from(body)).await?;
    Ok(())
}

/// Closed-loop PutRecords from `producers` connections for `seconds`.
async fn put_throughput(
    address: SocketAddr,
    stream: &str,
    producers: usize,
    batch: usize,
    size: usize,
    seconds: f64,
) -> Result<(f64, f64), BenchError> {
    let load = PutLoad {
        stream,
        producers,
        batch,
        size,
        wire: Wire::Json,
    };
    put_throughput_in(address, &load, seconds).await
}

/// The protocol a workload's client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// JSON 1.1, as most SDKs.
    Json,
    /// CBOR 1.1, as the AWS SDK for Java and the KCL.
    Cbor,
}

/// A closed-loop PutRecords workload.
struct PutLoad<'a> {
    stream: &'a str,
    producers: usize,
    batch: usize,
    size: usize,
    wire: Wire,
}

/// [`put_throughput`] for a workload in either protocol.
async fn put_throughput_in(
    address: SocketAddr,
    load: &PutLoad<'_>,
    seconds: f64,
) -> Result<(f64, f64), BenchError> {
    let PutLoad {
        stream,
        producers,
        batch,
        size,
        wire,
    } = *load;
    let stored = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let body = put_records_body(stream, batch, size, producer);
        let body = match wire {
            Wire::Json => body,
            Wire::Cbor => Bytes::from(crate::broker::protocol::cbor::json_to_cbor(&body)),
        };
        let stored = stored.clone();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            while Instant::now() < deadline {
                let failed = match wire {
                    Wire::Json => failed_count(&connection.call("PutRecords", body.clone()).await?),
                    Wire::Cbor => {
                        let response = connection.call_cbor("PutRecords", body.clone()).await?;
                        cbor_scan::unsigned(&response, "FailedRecordCount")
                            .map_or(batch, |n| n as usize)
                    }
                };
                stored.fetch_add((batch - failed) as u64, Ordering::Relaxed);
            }
            Ok::<_, BenchError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| BenchError::Start(e.to_string()))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records = stored.load(Ordering::Relaxed) as f64;
    Ok((
        records / elapsed,
        records * size as f64 / elapsed / 1_048_576.0,
    ))
}

fn failed_count(response: &[u8]) -> usize {
    let text = std::str::from_utf8(response).unwrap_or("");
    text.split("\"FailedRecordCount\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn json_string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = text[start..].trim_start_matches([':', ' ', '"']);
    rest.split('"').next()
}

/// Drains every shard from TRIM_HORIZON with GetRecords (10,000 records a call).
async fn get_throughput(
    address: SocketAddr,
    stream: &str,
    shards: u32,
    size: usize,
) -> Result<(f64, f64), BenchError> {
    get_throughput_in(address, stream, shards, size, Wire::Json).await
}

/// [`get_throughput`] with GetRecords in either protocol.
async fn get_throughput_in(
    address: SocketAddr,
    stream: &str,
    shards: u32,
    size: usize,
    wire: Wire,
) -> Result<(f64, f64), BenchError> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let stream = stream.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let body = format!(
                "{{\"StreamName\":\"{stream}\",\"ShardId\":\"shardId-{shard:012}\",\"ShardIteratorType\":\"TRIM_HORIZON\"}}"
            );
            let response = connection.call("GetShardIterator", Bytes::from(body)).await?;
            let text = String::from_utf8_lossy(&response).into_owned();
            let mut iterator = json_string_after(&text, "\"ShardIterator\"").unwrap_or_default().to_owned();
            let mut records = 0u64;
            loop {
                let body = format!("{{\"ShardIterator\":\"{iterator}\",\"Limit\":10000}}");
                let (count, next) = match wire {
                    Wire::Json => {
                        let response = connection.call("GetRecords", Bytes::from(body)).await?;
                        let text = std::str::from_utf8(&response).unwrap_or("");
                        let count = text.matches("\"SequenceNumber\"").count() as u64;
                        (count, json_string_after(text, "\"NextShardIterator\"").unwrap_or_default().to_owned())
                    }
                    Wire::Cbor => {
                        let body = crate::broker::protocol::cbor::json_to_cbor(body.as_bytes());
                        let response = connection.call_cbor("GetRecords", Bytes::from(body)).await?;
                        let count = cbor_scan::count_member(&response, "SequenceNumber") as u64;
                        (count, cbor_scan::text(&response, "NextShardIterator").unwrap_or_default().to_owned())
                    }
                };
                if count == 0 {
                    return Ok::<_, BenchError>(records);
                }
                records += count;
                iterator = next;
            }
        }));
    }
    let mut records = 0;
    for task in tasks {
        records += task.await.map_err(|e| BenchError::Start(e.to_string()))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((
        records as f64 / elapsed,
        records as f64 * size as f64 / elapsed / 1_048_576.0,
    ))
}

/// Closed-loop PutRecord rate with `producers` connections and 100-byte records.
async fn put_record_peak(
    address: SocketAddr,
    stream: &str,
    producers: usize,
    seconds: f64,
) -> Result<f64, BenchError> {
    let figures = single::put_record_closed_loop(address, stream, producers, 100, seconds).await?;
    Ok(figures.records_per_second)
}

/// PutRecord latency at a fixed offered rate (open loop over `producers` connections).
async fn put_record_latency(
    address: SocketAddr,
    stream: &str,
    producers: usize,
    rate: f64,
    seconds: f64,
) -> Result<(f64, f64, f64), BenchError> {
    let per_producer = Duration::from_secs_f64(producers as f64 / rate.max(1.0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let body = Bytes::from(format!(
            "{{\"StreamName\":\"{stream}\",\"PartitionKey\":\"l{producer}\",\"Data\":\"{}\"}}",
            "eHh4".repeat(34)
        ));
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let mut ticks = tokio::time::interval(per_producer);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let scheduled = ticks.tick().await;
                connection.call("PutRecord", body.clone()).await?;
                // Measured from when the request was due, so queueing behind a slow one counts.
                latencies.push(scheduled.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, BenchError>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| BenchError::Start(e.to_string()))??);
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok((at(0.50), at(0.99), at(0.999)))
}

/// Runs every workload against a broker with `durability` and returns its rows.
pub async fn run_durability(
    options: &BenchOptions,
    durability: &str,
) -> Result<Vec<Row>, BenchError> {
    let broker = start_broker(options, durability)?;
    let address = broker.address;
    let producers = options.producers;
    let seconds = options.seconds;
    let mut rows = Vec::new();
    let row = |workload: String, (rps, mibps): (f64, f64)| Row {
        workload,
        durability: durability.to_owned(),
        records_per_second: rps,
        mib_per_second: mibps,
        latency_ms: None,
    };
    if options.queue_only || !options.put_record_only {
        rows.push(queue::throughput(address, 8, seconds, durability).await?);
        rows.push(queue::receive_latency(address, 100.0, seconds, durability).await?);
    }
    if options.queue_only {
        drop(broker);
        let _ = std::fs::remove_dir_all(options.work_dir.join(durability));
        return Ok(rows);
    }
    create_stream(address, "single", 4).await?;
    if durability == "fsync" {
        let floor =
            disk::measure_off_runtime(&options.work_dir.join("disk"), seconds.min(3.0)).await?;
        rows.push(Row {
            workload: "The disk alone: 1 KiB write + fdatasync, one at a time, no server".into(),
            durability: durability.to_owned(),
            records_per_second: floor.syncs_per_second,
            mib_per_second: floor.syncs_per_second * single::RECORD_BYTES as f64 / 1_048_576.0,
            latency_ms: Some((floor.p50_ms, floor.p99_ms, floor.p999_ms)),
        });
    }
    for producers in single::PRODUCER_COUNTS {
        rows.push(put_record_row(&broker, producers, seconds, durability, "").await?);
    }
    if durability == "async" {
        rows.push(signed_put_record(options, durability).await?);
    }
    if options.put_record_only {
        drop(broker);
        let _ = std::fs::remove_dir_all(options.work_dir.join(durability));
        return Ok(rows);
    }
    create_stream(address, "bench4", 4).await?;
    create_stream(address, "bench1", 1).await?;
    create_stream(address, "large4", 4).await?;
    create_stream(address, "latency", 4).await?;
    let small4 = put_throughput(address, "bench4", producers, 500, 100, seconds).await?;
    rows.push(row(
        format!("PutRecords 100 B x500, {producers} producers, 4 shards"),
        small4,
    ));
    let small1 = put_throughput(address, "bench1", producers, 500, 100, seconds).await?;
    rows.push(row(
        format!("PutRecords 100 B x500, {producers} producers, 1 shard"),
        small1,
    ));
    let single = put_throughput(address, "bench1", 1, 500, 100, seconds).await?;
    rows.push(row(
        "PutRecords 100 B x500, 1 producer, 1 shard".into(),
        single,
    ));
    let large = put_throughput(address, "large4", producers, 500, 10 * 1024, seconds).await?;
    rows.push(row(
        format!("PutRecords 10 KiB x500, {producers} producers, 4 shards"),
        large,
    ));
    let read = get_throughput(address, "large4", 4, 10 * 1024).await?;
    rows.push(row(
        "GetRecords 10 KiB records, 4 shards drained".into(),
        read,
    ));
    // The AWS SDK for Java and the KCL speak CBOR: the same workloads in it.
    let cbor_load = PutLoad {
        stream: "bench4",
        producers,
        batch: 500,
        size: 100,
        wire: Wire::Cbor,
    };
    let small4_cbor = put_throughput_in(address, &cbor_load, seconds).await?;
    rows.push(row(
        format!("PutRecords 100 B x500 in CBOR, {producers} producers, 4 shards"),
        small4_cbor,
    ));
    let read_cbor = get_throughput_in(address, "large4", 4, 10 * 1024, Wire::Cbor).await?;
    rows.push(row(
        "GetRecords 10 KiB records in CBOR, 4 shards drained".into(),
        read_cbor,
    ));
    let peak = put_record_peak(address, "latency", producers, seconds.min(3.0)).await?;
    rows.push(row(
        format!("PutRecord 100 B peak, {producers} producers"),
        (peak, peak * 100.0 / 1_048_576.0),
    ));
    let (p50, p99, p999) =
        put_record_latency(address, "latency", producers, peak / 2.0, seconds).await?;
    rows.push(Row {
        latency_ms: Some((p50, p99, p999)),
        ..row(
            format!("PutRecord latency at half of peak ({:.0}/s)", peak / 2.0),
            (peak / 2.0, peak * 50.0 / 1_048_576.0),
        )
    });
    if durability == "fsync" {
        for consumers in [1, 5, 20] {
            let mut row = fanout::fanout(address, consumers, 4, seconds.min(5.0)).await?;
            row.durability = durability.to_owned();
            rows.push(row);
        }
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(options.work_dir.join(durability));
    Ok(rows)
}

/// Renders rows as a Markdown table.
pub fn render(rows: &[Row], cores: usize) -> String {
    let mut out =
        format!("Brook broker on loopback, {cores} cores, load generator on the same machine\n\n");
    out.push_str("| workload | durability | records/s | MiB/s | p50 ms | p99 ms | p99.9 ms |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for row in rows {
        let (p50, p99, p999) = match row.latency_ms {
            Some((a, b, c)) => (format!("{a:.2}"), format!("{b:.2}"), format!("{c:.2}")),
            None => ("".into(), "".into(), "".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {p50} | {p99} | {p999} |\n",
            row.workload, row.durability, row.records_per_second, row.mib_per_second
        ));
    }
    out
}

/// Runs the whole benchmark and returns the table.
pub async fn run(options: BenchOptions) -> Result<String, BenchError> {
    let mut rows = Vec::new();
    // Steal per group of workloads: the host's load changes within one run.
    let mut stolen = Vec::new();
    if !options.cluster_only {
        for (durability, group) in [("fsync", "fsync workloads"), ("async", "async workloads")] {
            let (measured, steal) = steal::during(run_durability(&options, durability)).await;
            rows.extend(measured?);
            stolen.push((group, steal));
        }
    }
    if !options.put_record_only && !options.queue_only {
        let (measured, steal) = steal::during(cluster::run(&options)).await;
        rows.extend(measured?);
        stolen.push(("cluster workloads", steal));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = render(&rows, cores);
    out.push('\n');
    out.push_str(&steal::describe(&stolen));
    out.push_str(&format!(
        "\nSigV4 verification (in-process, one core): {:.1} µs for a 1 KiB body, {:.1} µs for a 70 KiB PutRecords body\n",
        fanout::sigv4_cost(1024),
        fanout::sigv4_cost(70 * 1024)
    ));
    Ok(out)
}

/// The default work folder for benchmark brokers.
pub fn default_work_dir() -> PathBuf {
    Path::new(".bench").join("data")
}
