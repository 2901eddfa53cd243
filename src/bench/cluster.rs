//! The broker cluster on loopback: one stream's shards over three broker processes against
//! the same stream in one process (aggregate PutRecords throughput, producers spread over
//! the pods), and what a hop costs: a one-record PutRecords sent to the shard's owner, to
//! another pod (which sends it on), and through `brook gateway`.
//!
//! On a 2-core machine the processes share the cores, so the throughput figures say what the
//! hops cost, not what more machines would add.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;

use super::client::Connection;
use super::steal::CpuUse;
use super::{BenchError, BenchOptions, Row, ServerProcess, create_stream, put_throughput};

const STREAM: &str = "spread";
const SHARDS: u32 = 6;
const PODS: usize = 3;

/// Free loopback addresses for the pods' internal ports (taken and let go at once).
fn free_addresses(count: usize) -> Result<Vec<SocketAddr>, BenchError> {
    (0..count)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| BenchError::Start(e.to_string()))
        })
        .collect()
}

/// Waits until every pod serves pod 0's catalog epoch.
async fn wait_for_replicas(pods: &[ServerProcess]) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut epochs = Vec::new();
        for pod in pods {
            let text = super::single::metrics_text(pod.metrics).await?;
            epochs.push(
                text.lines()
                    .find_map(|l| l.strip_prefix("brook_catalog_epoch "))
                    .map(str::trim)
                    .map(str::to_owned),
            );
        }
        if epochs.iter().all(|e| e.is_some() && *e == epochs[0]) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Start(format!(
                "the pods never agreed on the catalog: {epochs:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start_gateway(exe: &Path, route: SocketAddr) -> Result<ServerProcess, BenchError> {
    let mut command = Command::new(exe);
    command
        .args(["gateway", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .arg("--route")
        .arg(format!("{STREAM}=http://{route}"));
    super::start_announced(command)
}

/// A one-record PutRecords of 100 bytes to the shard whose hash range starts at `hash`.
fn one_record_body(hash: u128) -> Bytes {
    let data = base64::engine::general_purpose::STANDARD.encode([7u8; 100]);
    Bytes::from(format!(
        "{{\"StreamName\":\"{STREAM}\",\"Records\":[{{\"Data\":\"{data}\",\"PartitionKey\":\"k\",\"ExplicitHashKey\":\"{}\"}}]}}",
        hash + 1
    ))
}

/// Closed-loop latency of `body` sent to `address` for `seconds`: requests per second and
/// (p50, p99, p99.9) in ms.
async fn closed_loop(
    address: SocketAddr,
    body: Bytes,
    seconds: f64,
) -> Result<(f64, (f64, f64, f64)), BenchError> {
    let mut connection = Connection::open(address).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut samples = Vec::new();
    let began = Instant::now();
    while Instant::now() < deadline {
        let started = Instant::now();
        let answer = connection.call("PutRecords", body.clone()).await?;
        if super::failed_count(&answer) > 0 {
            return Err(BenchError::Start(format!(
                "a record was refused: {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = samples.len() as f64 / began.elapsed().as_secs_f64();
    samples.sort_by(f64::total_cmp);
    let at = |q| super::single::quantile(&samples, q);
    Ok((rate, (at(0.50), at(0.99), at(0.999))))
}

/// Aggregate PutRecords (100 B x500) throughput with `producers` spread over `addresses`.
async fn spread_throughput(
    addresses: &[SocketAddr],
    producers: usize,
    seconds: f64,
) -> Result<(f64, f64), BenchError> {
    let runs = addresses.iter().enumerate().map(|(i, &address)| {
        let share = producers / addresses.len() + usize::from(i < producers % addresses.len());
        put_throughput(address, STREAM, share.max(1), 500, 100, seconds)
    });
    let mut total = (0.0, 0.0);
    for result in futures::future::join_all(runs).await {
        let (records, mib) = result?;
        total.0 += records;
        total.1 += mib;
    }
    Ok(total)
}

/// Prints the brokers' CPU time per record of an aggregate run: how much more work three pods
/// do per record than one process, which the rates alone mix up with the host's load.
fn report_cpu(label: &str, cpu: &CpuUse, records: f64) {
    if let Some(seconds) = cpu.seconds()
        && records > 0.0
    {
        eprintln!(
            "PutRecords 100 B x500, {label}: broker CPU {:.2} µs per record",
            seconds / records * 1e6
        );
    }
}

/// The sum of every series of counter `name` on a `/metrics` page.
fn counter_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Prints how many parts the pods sent on and in how many exchanges (parts that waited for
/// an exchange under way went together in the next).
async fn report_joined_parts(metrics: &[SocketAddr]) -> Result<(), BenchError> {
    let (parts, exchanges) = summed(
        metrics,
        [
            "brook_cluster_parts_total",
            "brook_cluster_part_exchanges_total",
        ],
    )
    .await?;
    if exchanges > 0.0 {
        eprintln!(
            "PutRecords 100 B x500, {PODS} pods: {parts:.0} parts sent on in {exchanges:.0} exchanges ({:.2} per exchange)",
            parts / exchanges
        );
    }
    Ok(())
}

/// Two counters, each summed over the brokers whose `/metrics` are at `metrics`.
async fn summed(
    metrics: &[SocketAddr],
    [first, second]: [&str; 2],
) -> Result<(f64, f64), BenchError> {
    let mut total = (0.0, 0.0);
    for &address in metrics {
        let text = super::single::metrics_text(address).await?;
        total.0 += counter_sum(&text, first);
        total.1 += counter_sum(&text, second);
    }
    Ok(total)
}

/// The journal syncs and appends of the brokers at `metrics`, summed.
async fn store_counts(metrics: &[SocketAddr]) -> Result<(f64, f64), BenchError> {
    summed(
        metrics,
        ["brook_store_syncs_total", "brook_store_appends_total"],
    )
    .await
}

/// Prints the journal syncs and appends an aggregate run took per 1,000 records: a sync's CPU
/// is the same for one record or thousands, so a record costs what its share of syncs does.
fn report_syncs(label: &str, before: (f64, f64), after: (f64, f64), records: f64) {
    if records > 0.0 {
        let per_thousand = |count: f64| count / records * 1000.0;
        eprintln!(
            "PutRecords 100 B x500, {label}: {:.2} journal syncs and {:.2} appends per 1,000 records",
            per_thousand(after.0 - before.0),
            per_thousand(after.1 - before.1),
        );
    }
}

/// Sends `signal` (`STOP` or `CONT`) to a pod's process.
fn signal(pod: &ServerProcess, signal: &str) -> Result<(), BenchError> {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pod.child.id().to_string())
        .status()
        .map_err(|e| BenchError::Start(format!("kill -{signal}: {e}")))?;
    if !sent.success() {
        return Err(BenchError::Start(format!("kill -{signal} failed: {sent}")));
    }
    Ok(())
}

/// Aggregate PutRecords throughput (records stored) through pods 0 and 1 while pod 2 is
/// stopped, its connections left open as on a frozen node: its shards' records fail,
/// retryably, and the others are stored. One call through each pod first lets it find out
/// (after its answer limit); the measured run comes after.
async fn with_pod_stopped(
    pods: &[ServerProcess],
    producers: usize,
    seconds: f64,
) -> Result<(f64, f64), BenchError> {
    let entry = [pods[0].address, pods[1].address];
    signal(&pods[2], "STOP")?;
    let measured = async {
        let found_out = entry.iter().map(|&address| async move {
            let body = super::client::put_records_body(STREAM, 500, 100, 0);
            Connection::open(address)
                .await?
                .call("PutRecords", body)
                .await
                .map(drop)
        });
        for result in futures::future::join_all(found_out).await {
            result?;
        }
        spread_throughput(&entry, producers, seconds).await
    }
    .await;
    signal(&pods[2], "CONT")?;
    measured
}

/// PutRecords throughput of one broker process (fsync) with the cluster stream, its data
/// deleted afterwards; with `label`, its CPU and syncs per record are printed under it.
async fn single_process(
    options: &BenchOptions,
    label: Option<&str>,
) -> Result<(f64, f64), BenchError> {
    let dir = options.work_dir.join("cluster-single");
    let single = super::spawn_broker(&options.broker_exe, &dir, "fsync", &[])?;
    create_stream(single.address, STREAM, SHARDS).await?;
    let counted = store_counts(&[single.metrics]).await?;
    let cpu = CpuUse::start(vec![single.child.id()]);
    let one = spread_throughput(&[single.address], options.producers, options.seconds).await?;
    if let Some(label) = label {
        report_cpu(label, &cpu, one.0 * options.seconds);
        let after = store_counts(&[single.metrics]).await?;
        report_syncs(label, counted, after, one.0 * options.seconds);
    }
    drop(single);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(one)
}

/// Runs the cluster workloads (fsync) and returns their rows.
pub async fn run(options: &BenchOptions) -> Result<Vec<Row>, BenchError> {
    let producers = options.producers;
    let seconds = options.seconds;
    let row = |workload: String, (rps, mibps): (f64, f64)| Row {
        workload,
        durability: "fsync".to_owned(),
        records_per_second: rps,
        mib_per_second: mibps,
        latency_ms: None,
    };
    let mut rows = Vec::new();

    // This host gives its guest a memory page on the page's first touch since the host last
    // took it back (about 2 s of CPU per GiB, seen as copies into the page cache), so a phase
    // whose page cache grows into memory no earlier phase used pays for it and the other does
    // not. An unmeasured round of one process first touches as much memory as the measured
    // phases will, and each phase's data is deleted when it ends so the next one's page cache
    // takes the pages it freed (docs/cluster.md, "Measured").
    single_process(options, None).await?;
    let one = single_process(options, Some("1 process")).await?;
    rows.push(row(
        format!("PutRecords 100 B x500, {producers} producers, {SHARDS} shards, 1 process"),
        one,
    ));

    let internal = free_addresses(PODS)?;
    let peers: Vec<String> = internal.iter().map(|a| format!("http://{a}")).collect();
    let mut pods = Vec::new();
    for (ordinal, address) in internal.iter().enumerate() {
        let extra = vec![
            "--cluster-peers".to_owned(),
            peers.join(","),
            "--pod-ordinal".to_owned(),
            ordinal.to_string(),
            "--cluster-listen".to_owned(),
            address.to_string(),
        ];
        pods.push(super::spawn_broker(
            &options.broker_exe,
            &options.work_dir.join(format!("cluster-pod-{ordinal}")),
            "fsync",
            &extra,
        )?);
    }
    create_stream(pods[0].address, STREAM, SHARDS).await?;
    wait_for_replicas(&pods).await?;
    let addresses: Vec<SocketAddr> = pods.iter().map(|p| p.address).collect();
    let metrics: Vec<SocketAddr> = pods.iter().map(|p| p.metrics).collect();
    let counted = store_counts(&metrics).await?;
    let cpu = CpuUse::start(pods.iter().map(|p| p.child.id()).collect());
    let spread = spread_throughput(&addresses, producers, seconds).await?;
    report_cpu(&format!("{PODS} pods"), &cpu, spread.0 * seconds);
    let after = store_counts(&metrics).await?;
    report_syncs(&format!("{PODS} pods"), counted, after, spread.0 * seconds);
    report_joined_parts(&metrics).await?;
    rows.push(row(
        format!(
            "PutRecords 100 B x500, {producers} producers over {PODS} pods, {SHARDS} shards spread"
        ),
        spread,
    ));

    // Placement puts shard i on pod i % 3: shard 1 lives on pod 1.
    let owned_by_pod1 = crate::broker::routing::even_hash_ranges(SHARDS)[1].start;
    let body = one_record_body(owned_by_pod1);
    let gateway = start_gateway(&options.broker_exe, pods[1].address)?;
    let latency_seconds = seconds.min(3.0);
    for (label, address) in [
        ("to the shard's owner", pods[1].address),
        ("to another pod, sent on", pods[0].address),
        ("through brook gateway", gateway.address),
    ] {
        let (rate, latency) = closed_loop(address, body.clone(), latency_seconds).await?;
        rows.push(Row {
            latency_ms: Some(latency),
            ..row(
                format!("PutRecords 1 record, {label}, 1 producer"),
                (rate, rate * 100.0 / 1_048_576.0),
            )
        });
    }
    drop(gateway);
    // A queue over the spread shards: its consumers reach pod 1, which relays every call to
    // pod 0, which keeps the queue and reads pods 1 and 2's shards over the internal port.
    let queued = super::queue::throughput(pods[1].address, 8, seconds, "fsync").await?;
    rows.push(Row {
        workload: format!("{} over {PODS} pods, through pod 1", queued.workload),
        ..queued
    });
    rows.push(row(
        format!(
            "PutRecords 100 B x500, {producers} producers over pods 0 and 1, pod 2 stopped (SIGSTOP): records stored"
        ),
        with_pod_stopped(&pods, producers, seconds).await?,
    ));
    drop(pods);
    for dir in ["cluster-pod-0", "cluster-pod-1", "cluster-pod-2"] {
        let _ = std::fs::remove_dir_all(options.work_dir.join(dir));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::counter_sum;

    #[test]
    fn cluster_bench_sums_a_counter_over_its_series_and_no_other() {
        let text = "# HELP brook_cluster_parts_total Parts.\n\
            brook_cluster_parts_total{pod=\"1\"} 10\n\
            brook_cluster_parts_total{pod=\"2\"} 5\n\
            brook_cluster_parts_total_other 100\n\
            brook_cluster_part_exchanges_total{pod=\"1\"} 4\n";
        assert_eq!(counter_sum(text, "brook_cluster_parts_total"), 15.0);
        assert_eq!(counter_sum(text, "brook_cluster_part_exchanges_total"), 4.0);
        assert_eq!(counter_sum(text, "brook_missing_total"), 0.0);
    }
}
