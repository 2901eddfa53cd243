//! One record per call: closed-loop PutRecord of 1 KiB from 1, 8 and 64 producers, with
//! throughput and latency percentiles, and (against a Brook broker) where the time of an
//! acknowledged write went, read from the broker's own stage counters.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::BenchError;
use super::client::Connection;

/// Producer counts the single-record workload runs with.
pub const PRODUCER_COUNTS: [usize; 3] = [1, 8, 64];

/// Size of the record each PutRecord carries.
pub const RECORD_BYTES: usize = 1024;

/// What one closed-loop PutRecord run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PutRecordFigures {
    /// Concurrent producers.
    pub producers: usize,
    /// Acknowledged records per second.
    pub records_per_second: f64,
    /// Latency percentiles of a call, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile, milliseconds.
    pub p999_ms: f64,
}

/// The value at quantile `q` of sorted `values` (0 when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[at]
}

/// Closed-loop PutRecord of `size`-byte records ([`RECORD_BYTES`] in the single-record
/// workloads) from `producers` connections for `seconds`: each producer sends its next record
/// as soon as the previous one is acknowledged.
pub async fn put_record_closed_loop(
    address: SocketAddr,
    stream: &str,
    producers: usize,
    size: usize,
    seconds: f64,
) -> Result<PutRecordFigures, BenchError> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; size]);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(producers);
    for producer in 0..producers {
        let body = Bytes::from(format!(
            "{{\"StreamName\":\"{stream}\",\"PartitionKey\":\"s{producer}\",\"Data\":\"{data}\"}}"
        ));
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                connection.call("PutRecord", body.clone()).await?;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, BenchError>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| BenchError::Start(e.to_string()))??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(PutRecordFigures {
        producers,
        records_per_second: all.len() as f64 / elapsed,
        p50_ms: quantile(&all, 0.50),
        p99_ms: quantile(&all, 0.99),
        p999_ms: quantile(&all, 0.999),
    })
}

/// The stage counters a Brook broker exports for its acknowledged writes.
const STAGE_SERIES: &str = "brook_store_append_stage_seconds_total";
const APPENDS_SERIES: &str = "brook_store_appends_total";
const ROUNDS_SERIES: &str = "brook_store_commit_rounds_total";
const SYNCS_SERIES: &str = "brook_store_syncs_total";

/// The store's stage counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageCounters {
    /// Seconds spent per stage, summed over appends, by stage name.
    pub seconds: Vec<(String, f64)>,
    /// Appends acknowledged.
    pub appends: f64,
    /// Commit rounds.
    pub rounds: f64,
    /// Journal syncs.
    pub syncs: f64,
}

/// Reads the stage counters out of a `/metrics` text.
pub fn parse_stage_counters(text: &str) -> StageCounters {
    let mut counters = StageCounters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if let Some(labels) = series.strip_prefix(STAGE_SERIES) {
            let stage = labels
                .trim_start_matches("{stage=\"")
                .trim_end_matches("\"}")
                .to_owned();
            counters.seconds.push((stage, value));
        } else if series == APPENDS_SERIES {
            counters.appends = value;
        } else if series == ROUNDS_SERIES {
            counters.rounds = value;
        } else if series == SYNCS_SERIES {
            counters.syncs = value;
        }
    }
    counters
}

/// Where an acknowledged write's time went between two readings: microseconds per append
/// and stage, with appends per round and per sync, and the broker's CPU time per append when
/// `broker_cpu_seconds` (used between the readings) is known.
pub fn render_breakdown(
    before: &StageCounters,
    after: &StageCounters,
    broker_cpu_seconds: Option<f64>,
) -> String {
    let appends = after.appends - before.appends;
    if appends <= 0.0 {
        return "no appends were measured\n".to_owned();
    }
    let mut parts = Vec::new();
    let mut total = 0.0;
    let order = |stage: &str| {
        crate::broker::shard::stats::Stage::ALL
            .iter()
            .position(|s| s.name() == stage)
            .unwrap_or(usize::MAX)
    };
    let mut stages = after.seconds.clone();
    stages.sort_by_key(|(stage, _)| order(stage));
    for (stage, seconds) in &stages {
        let earlier = before
            .seconds
            .iter()
            .find(|(s, _)| s == stage)
            .map_or(0.0, |(_, v)| *v);
        let micros = (seconds - earlier) / appends * 1e6;
        total += micros;
        parts.push(format!("{stage} {micros:.0} µs"));
    }
    let rounds = (after.rounds - before.rounds).max(1.0);
    let syncs = (after.syncs - before.syncs).max(1.0);
    let cpu = broker_cpu_seconds.map_or(String::new(), |seconds| {
        format!("; broker CPU {:.0} µs per append", seconds / appends * 1e6)
    });
    format!(
        "{} = {total:.0} µs in the store per append; {:.1} appends per round, {:.1} per sync{cpu}\n",
        parts.join(" + "),
        appends / rounds,
        appends / syncs
    )
}

/// Fetches `/metrics` from a broker's observability address.
pub async fn scrape(metrics: SocketAddr) -> Result<StageCounters, BenchError> {
    Ok(parse_stage_counters(&metrics_text(metrics).await?))
}

/// A broker's `/metrics` page.
pub async fn metrics_text(metrics: SocketAddr) -> Result<String, BenchError> {
    let failed = |e: String| BenchError::Start(format!("reading {metrics}/metrics: {e}"));
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, metrics.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    let (_, body) =
        crate::http1::exchange(&metrics.ip().to_string(), metrics.port(), None, request)
            .await
            .map_err(failed)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_counters_are_read_from_metrics_text() {
        let text = "# HELP brook_store_appends_total x\n# TYPE brook_store_appends_total counter\nbrook_store_appends_total 10\nbrook_store_commit_rounds_total 5\nbrook_store_syncs_total 4\nbrook_store_append_stage_seconds_total{stage=\"sync\"} 0.002\nbrook_store_append_stage_seconds_total{stage=\"write\"} 0.001\n";
        let counters = parse_stage_counters(text);
        assert_eq!(counters.appends, 10.0);
        assert_eq!(counters.rounds, 5.0);
        assert_eq!(counters.syncs, 4.0);
        assert_eq!(
            counters.seconds,
            vec![("sync".to_owned(), 0.002), ("write".to_owned(), 0.001)]
        );
        let line = render_breakdown(&StageCounters::default(), &counters, None);
        assert_eq!(
            line,
            "write 100 µs + sync 200 µs = 300 µs in the store per append; 2.0 appends per round, 2.5 per sync\n"
        );
        let line = render_breakdown(&StageCounters::default(), &counters, Some(0.0015));
        assert!(
            line.ends_with("2.5 per sync; broker CPU 150 µs per append\n"),
            "{line}"
        );
    }

    #[test]
    fn quantiles_pick_from_sorted_values() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 501.0);
        assert_eq!(quantile(&values, 0.999), 1000.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
