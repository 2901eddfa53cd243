//! `brook bench-compare`: Brook side by side with the Kinesis emulators people run today,
//! one after another on loopback with the same load generator and workloads, plus two
//! ceilings: a no-op server that decodes requests as a Kinesis server must and stores nothing,
//! and the same server syncing each put's data to one file before it answers.
//!
//! Peers are installed by `make bench-compare` into `.bench/peers`; a missing peer is
//! reported as such, never silently skipped.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::Connection;
use super::disk::{self, SyncFloor};
use super::peers::Target;
use super::single::{PRODUCER_COUNTS, PutRecordFigures, RECORD_BYTES, put_record_closed_loop};
use super::{BenchError, get_throughput, put_throughput};

/// Figures for one target.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// PutRecords 100 B x500, one producer, records/s.
    pub put_1: Option<f64>,
    /// PutRecords 100 B x500, eight producers, records/s.
    pub put_8: Option<f64>,
    /// PutRecord 1 KiB, eight producers, records/s.
    pub put_record: Option<f64>,
    /// PutRecord 1 KiB closed loop per producer count (medians of the runs).
    pub single: Vec<PutRecordFigures>,
    /// The disk alone just before each run's single-record workloads (medians of the runs).
    pub disk: Option<SyncFloor>,
    /// Mixed: producers and consumers together, records/s written.
    pub mixed: Option<f64>,
    /// GetRecords draining what the fill stored, MiB/s.
    pub get_mib: Option<f64>,
    /// CreateStream until ACTIVE, milliseconds (median).
    pub create_ms: Option<f64>,
    /// DescribeStream, milliseconds (median).
    pub describe_ms: Option<f64>,
    /// MiB stored by the fill.
    pub stored_mib: Option<f64>,
    /// Resident memory right after the fill, MiB.
    pub rss_holding_mib: Option<f64>,
    /// Peak RSS over the fill and the drain, MiB.
    pub rss_filled_mib: Option<f64>,
    /// Peak RSS after creating 1,000 streams, MiB.
    pub rss_streams_mib: Option<f64>,
    /// Why the target could not run, if it could not.
    pub failure: Option<String>,
    /// What went wrong in a workload the target did not finish; the others still count.
    pub notes: Vec<String>,
    /// CPU time the hypervisor gave to others while the target was measured, in percent.
    pub steal_percent: Option<f64>,
}

struct Running {
    child: Child,
    address: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_descendants(self.child.id());
    }
}

fn free_port() -> Result<u16, BenchError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::Start(e.to_string()))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::Start(e.to_string()))
}

fn expand(text: &str, port: u16, dir: &Path) -> String {
    text.replace("{port}", &port.to_string())
        .replace("{tlsport}", &(port.wrapping_add(1)).to_string())
        .replace("{dir}", &dir.display().to_string())
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    super::steal::stat_fields(&stat)?
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

fn kill_descendants(pid: u32) {
    for child in children_of(pid) {
        kill_descendants(child);
        let _ = Command::new("kill")
            .args(["-9", &child.to_string()])
            .status();
    }
}

/// A memory figure of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) summed over a process and
/// its descendants, MiB.
fn tree_memory_mib(pid: u32, field: &str) -> f64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| {
                v.trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .unwrap_or(0.0);
    own / 1024.0
        + children_of(pid)
            .into_iter()
            .map(|c| tree_memory_mib(c, field))
            .sum::<f64>()
}

/// Resident memory of a process and its descendants now, MiB.
fn current_rss_mib(pid: u32) -> f64 {
    tree_memory_mib(pid, "VmRSS")
}

/// Peak resident memory of a process and its descendants, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    tree_memory_mib(pid, "VmHWM")
}

async fn start(target: &Target, work: &Path) -> Result<Running, BenchError> {
    let port = free_port()?;
    let dir = work.join(&target.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Start(e.to_string()))?;
    let (program, args) = target
        .command
        .split_first()
        .ok_or_else(|| BenchError::Start("empty command".into()))?;
    let mut command = Command::new(expand(program, port, &dir));
    let log = std::fs::File::create(work.join(format!("{}.log", target.name)))
        .map_err(|e| BenchError::Start(e.to_string()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| BenchError::Start(e.to_string()))?;
    command
        .args(args.iter().map(|a| expand(a, port, &dir)))
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    for (key, value) in &target.env {
        command.env(key, expand(value, port, &dir));
    }
    if let Some(cwd) = &target.cwd {
        command.current_dir(cwd);
    }
    let child = command
        .spawn()
        .map_err(|e| BenchError::Start(format!("{}: {e}", target.name)))?;
    let running = Running {
        child,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(mut connection) = Connection::open(running.address).await
            && connection
                .call("ListStreams", Bytes::from_static(b"{}"))
                .await
                .is_ok()
        {
            return Ok(running);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Start(format!(
                "{} did not answer ListStreams",
                target.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates a stream and waits until DescribeStreamSummary says ACTIVE; returns milliseconds.
async fn create_ready(address: SocketAddr, name: &str, shards: u32) -> Result<f64, BenchError> {
    let started = Instant::now();
    let mut connection = Connection::open(address).await?;
    connection
        .call(
            "CreateStream",
            Bytes::from(format!(
                "{{\"StreamName\":\"{name}\",\"ShardCount\":{shards}}}"
            )),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = connection
            .call(
                "DescribeStreamSummary",
                Bytes::from(format!("{{\"StreamName\":\"{name}\"}}")),
            )
            .await?;
        if String::from_utf8_lossy(&answer).contains("\"ACTIVE\"") {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Start(format!(
                "stream {name} never became ACTIVE"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Runs every workload `runs` times against one target.
pub async fn measure(target: &Target, work: &Path, runs: usize, seconds: f64) -> Figures {
    let (measured, steal_percent) =
        super::steal::during(measure_inner(target, work, runs, seconds)).await;
    let figures = match measured {
        Ok(figures) => figures,
        Err(error) => Figures {
            failure: Some(error.to_string()),
            ..Figures::default()
        },
    };
    Figures {
        steal_percent,
        ..figures
    }
}

async fn measure_inner(
    target: &Target,
    work: &Path,
    runs: usize,
    seconds: f64,
) -> Result<Figures, BenchError> {
    let mut figures = Figures::default();
    let (mut put_1, mut put_8, mut mixed, mut create, mut describe) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut single: Vec<Vec<PutRecordFigures>> = vec![Vec::new(); PRODUCER_COUNTS.len()];
    let mut disk: Vec<SyncFloor> = Vec::new();
    for run in 0..runs {
        let server = start(target, work).await?;
        let address = server.address;
        eprintln!("  run {}: CreateStream and DescribeStream latency", run + 1);
        for i in 0..5 {
            create.push(create_ready(address, &format!("latency{run}x{i}"), 1).await?);
        }
        let mut connection = Connection::open(address).await?;
        for _ in 0..50 {
            let started = Instant::now();
            connection
                .call(
                    "DescribeStream",
                    Bytes::from(format!("{{\"StreamName\":\"latency{run}x0\"}}")),
                )
                .await?;
            describe.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        create_ready(address, "bench", 4).await?;
        eprintln!("  run {}: PutRecords, PutRecord, mixed", run + 1);
        // A workload the target does not finish is noted and left out; the others count.
        let mut note = |workload: &str, error: BenchError| {
            figures
                .notes
                .push(format!("run {}, {workload}: {error}", run + 1));
        };
        match put_throughput(address, "bench", 1, 500, 100, seconds).await {
            Ok((rps, _)) => put_1.push(rps),
            Err(error) => note("PutRecords with 1 producer", error),
        }
        match put_throughput(address, "bench", 8, 500, 100, seconds).await {
            Ok((rps, _)) => put_8.push(rps),
            Err(error) => note("PutRecords with 8 producers", error),
        }
        match disk::measure_off_runtime(&work.join("disk"), seconds.min(3.0)).await {
            Ok(floor) => disk.push(floor),
            Err(error) => note("the disk alone", error),
        }
        for (i, producers) in PRODUCER_COUNTS.into_iter().enumerate() {
            match put_record_closed_loop(address, "bench", producers, RECORD_BYTES, seconds).await {
                Ok(figures) => single[i].push(figures),
                Err(error) => note(&format!("PutRecord 1 KiB, {producers} producers"), error),
            }
        }
        // Mixed: producers while consumers drain the same stream.
        let consumers = tokio::spawn(get_throughput(address, "bench", 4, 100));
        match put_throughput(address, "bench", 4, 500, 100, seconds).await {
            Ok((rps, _)) => mixed.push(rps),
            Err(error) => note("mixed", error),
        }
        let _ = consumers.await;
    }
    figures.put_1 = median(put_1);
    figures.put_8 = median(put_8);
    figures.single = single
        .into_iter()
        .zip(PRODUCER_COUNTS)
        .filter(|(runs, _)| !runs.is_empty())
        .map(|(runs, producers)| {
            let of = |f: fn(&PutRecordFigures) -> f64| median(runs.iter().map(f).collect());
            PutRecordFigures {
                producers,
                records_per_second: of(|r| r.records_per_second).unwrap_or(0.0),
                p50_ms: of(|r| r.p50_ms).unwrap_or(0.0),
                p99_ms: of(|r| r.p99_ms).unwrap_or(0.0),
                p999_ms: of(|r| r.p999_ms).unwrap_or(0.0),
            }
        })
        .collect();
    figures.disk = (!disk.is_empty()).then(|| {
        let of = |f: fn(&SyncFloor) -> f64| median(disk.iter().map(f).collect()).unwrap_or(0.0);
        SyncFloor {
            syncs_per_second: of(|d| d.syncs_per_second),
            p50_ms: of(|d| d.p50_ms),
            p99_ms: of(|d| d.p99_ms),
            p999_ms: of(|d| d.p999_ms),
        }
    });
    figures.put_record = figures
        .single
        .iter()
        .find(|f| f.producers == 8)
        .map(|f| f.records_per_second);
    figures.mixed = median(mixed);
    figures.create_ms = median(create);
    figures.describe_ms = median(describe);

    measure_storage(target, work, &mut figures).await?;
    Ok(figures)
}

/// Storage and memory: fill up to 1 GiB (or 60 s), drain it, then 1,000 streams. A peer that
/// stops answering part-way keeps what it did: the figures so far, and a note saying where.
async fn measure_storage(
    target: &Target,
    work: &Path,
    figures: &mut Figures,
) -> Result<(), BenchError> {
    eprintln!("  fill, drain and memory");
    let server = start(target, work).await?;
    let address = server.address;
    // Not "fill": kinesalite keeps its stream databases in an array, so a stream named after
    // an Array method ("fill", "map", "sort") finds the method and crashes the server.
    create_ready(address, "stored", 4).await?;
    let fill_seconds = 60.0;
    let started = Instant::now();
    let mut stored = 0.0;
    while stored < 1024.0 && started.elapsed().as_secs_f64() < fill_seconds {
        match put_throughput(address, "stored", 8, 100, 10 * 1024, 2.0).await {
            Ok((rps, _)) => stored += rps * 2.0 * 10.0 / 1024.0,
            Err(error) => {
                figures
                    .notes
                    .push(format!("fill stopped after about {stored:.0} MiB: {error}"));
                break;
            }
        }
    }
    figures.stored_mib = Some(stored);
    tokio::time::sleep(Duration::from_millis(500)).await;
    figures.rss_holding_mib = Some(current_rss_mib(server.child.id()));
    match get_throughput(address, "stored", 4, 10 * 1024).await {
        Ok((_, mib)) => figures.get_mib = Some(mib),
        Err(error) => figures.notes.push(format!("drain: {error}")),
    }
    figures.rss_filled_mib = Some(peak_rss_mib(server.child.id()));
    drop(server);
    let server = start(target, work).await?;
    let mut connection = Connection::open(server.address).await?;
    for i in 0..1000 {
        let created = connection
            .call(
                "CreateStream",
                Bytes::from(format!("{{\"StreamName\":\"many{i}\",\"ShardCount\":1}}")),
            )
            .await;
        if let Err(error) = created {
            figures
                .notes
                .push(format!("1,000 streams: stopped at stream {i}: {error}"));
            return Ok(());
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.rss_streams_mib = Some(peak_rss_mib(server.child.id()));
    Ok(())
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Brook's advantage over a peer for one figure: higher-is-better figures divide Brook by
/// the peer, lower-is-better ones the peer by Brook, so above 1 always means Brook is ahead.
fn advantage(brook: Option<f64>, peer: Option<f64>, higher_is_better: bool) -> String {
    match (brook, peer) {
        (Some(b), Some(p)) if b > 0.0 && p > 0.0 => {
            format!("{:.1}x", if higher_is_better { b / p } else { p / b })
        }
        _ => "n/a".to_owned(),
    }
}

/// The Markdown report: absolute figures per target, then Brook (fsync) against each peer.
pub fn render(results: &[(Target, Figures)], cores: usize, date: &str, command: &str) -> String {
    let mut out = format!(
        "# Benchmarks: Brook and the Kinesis emulators\n\nRun on {date} with `{command}` on a machine with {cores} cores; every server and the load generator share them. Each throughput figure is the median of the runs the command names; the load generator is Brook's own (one HTTP/1.1 keep-alive connection per producer, bodies shaped as the AWS SDK sends them).\n\n## Absolute figures\n\n"
    );
    out.push_str("| target | persistence | PutRecords x500, 1 producer (rec/s) | PutRecords x500, 8 producers (rec/s) | PutRecord 1 KiB, 8 producers (rec/s) | mixed put with 4 readers (rec/s) | GetRecords drain (MiB/s) | CreateStream to ACTIVE (ms) | DescribeStream (ms) | accepted by fill (MiB) | RSS holding it (MiB) | peak RSS fill and drain (MiB) | peak RSS 1,000 streams (MiB) |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (target, f) in results {
        if let Some(failure) = &f.failure {
            out.push_str(&format!(
                "| {} | {} | could not run: {failure} ||||||||||||\n",
                target.name, target.persistence
            ));
            continue;
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            target.name,
            target.persistence,
            cell(f.put_1, 0),
            cell(f.put_8, 0),
            cell(f.put_record, 0),
            cell(f.mixed, 0),
            cell(f.get_mib, 1),
            cell(f.create_ms, 1),
            cell(f.describe_ms, 2),
            cell(f.stored_mib, 0),
            cell(f.rss_holding_mib, 0),
            cell(f.rss_filled_mib, 0),
            cell(f.rss_streams_mib, 0),
        ));
    }
    if let Some((_, brook)) = results.iter().find(|(t, _)| t.name == "brook-fsync") {
        out.push_str("\n## Brook (fsync) against each target\n\nAbove 1x means Brook is ahead: throughput is Brook ÷ target, latency and memory target ÷ Brook.\n\n");
        out.push_str("| target | PutRecords, 1 producer | PutRecords, 8 producers | PutRecord 1 KiB | mixed | GetRecords | CreateStream | DescribeStream | RSS holding | peak RSS | RSS 1,000 streams |\n");
        out.push_str(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for (target, f) in results.iter().filter(|(t, _)| t.name != "brook-fsync") {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                target.name,
                advantage(brook.put_1, f.put_1, true),
                advantage(brook.put_8, f.put_8, true),
                advantage(brook.put_record, f.put_record, true),
                advantage(brook.mixed, f.mixed, true),
                advantage(brook.get_mib, f.get_mib, true),
                advantage(brook.create_ms, f.create_ms, false),
                advantage(brook.describe_ms, f.describe_ms, false),
                advantage(brook.rss_holding_mib, f.rss_holding_mib, false),
                advantage(brook.rss_filled_mib, f.rss_filled_mib, false),
                advantage(brook.rss_streams_mib, f.rss_streams_mib, false),
            ));
        }
    }
    out.push_str(&render_single(results));
    let notes: Vec<String> = results
        .iter()
        .flat_map(|(t, f)| f.notes.iter().map(move |n| format!("- {}: {n}\n", t.name)))
        .collect();
    if !notes.is_empty() {
        out.push_str("\nWorkloads a target did not finish (its other figures stand):\n\n");
        out.push_str(&notes.concat());
    }
    out.push_str(&render_steal(results));
    out.push_str("\nThe `noop-ceiling` row is a server that parses every request and decodes every record as a Kinesis server must, answers well-formed responses and stores nothing: it is also what the load generator alone can push. The `fsync-ceiling` row is the same server writing each put's data to one file and answering once an `fdatasync` begun after the write has returned (one syncer thread syncing whatever was written during the previous sync): the least any server that acknowledges durably must do on this disk, without an index, sequence numbers or recovery. `fsync-ceiling-overlapped` is the other way to sync: each put writes and `fdatasync`s on a thread of its own, so syncs overlap instead of waiting for one another.\n\n![PutRecords throughput](benchmarks.png)\n");
    out
}

/// CPU steal while each target ran: figures taken under different steal do not compare.
fn render_steal(results: &[(Target, Figures)]) -> String {
    let shares = super::steal::known_shares(
        results
            .iter()
            .map(|(t, f)| (t.name.as_str(), f.steal_percent)),
    );
    shares.map_or_else(String::new, |(shares, _)| {
        format!(
            "\nCPU time the hypervisor gave to others while each target was measured (steal; runs under more steal come out lower): {shares}.\n"
        )
    })
}

/// The single-record table: PutRecord 1 KiB, closed loop, per producer count.
fn render_single(results: &[(Target, Figures)]) -> String {
    let mut out = String::from(
        "\n## One record per call: PutRecord 1 KiB, closed loop\n\nEach producer sends its next record when the previous one is acknowledged; latency is per call, in milliseconds. The last columns are the disk alone, measured just before each target's runs: 1 KiB written and `fdatasync`ed one at a time into written room, no server — no durable PutRecord can be acknowledged faster than that.\n\n| target |",
    );
    let mut rule = String::from("| --- |");
    for producers in PRODUCER_COUNTS {
        out.push_str(&format!(
            " {producers} producers (rec/s) | p50 | p99 | p99.9 |"
        ));
        rule.push_str(" ---: | ---: | ---: | ---: |");
    }
    out.push_str(" disk alone (syncs/s) | p50 | p99 | p99.9 |\n");
    out.push_str(&rule);
    out.push_str(" ---: | ---: | ---: | ---: |\n");
    for (target, f) in results.iter().filter(|(_, f)| f.failure.is_none()) {
        out.push_str(&format!("| {} |", target.name));
        for producers in PRODUCER_COUNTS {
            match f.single.iter().find(|s| s.producers == producers) {
                Some(s) => out.push_str(&format!(
                    " {:.0} | {:.2} | {:.2} | {:.2} |",
                    s.records_per_second, s.p50_ms, s.p99_ms, s.p999_ms
                )),
                None => out.push_str(" n/a | n/a | n/a | n/a |"),
            }
        }
        match &f.disk {
            Some(d) => out.push_str(&format!(
                " {:.0} | {:.2} | {:.2} | {:.2} |",
                d.syncs_per_second, d.p50_ms, d.p99_ms, d.p999_ms
            )),
            None => out.push_str(" n/a | n/a | n/a | n/a |"),
        }
        out.push('\n');
    }
    out
}

/// The figures as JSON lines for the chart script.
pub fn chart_data(results: &[(Target, Figures)]) -> String {
    results
        .iter()
        .map(|(t, f)| {
            serde_json::json!({"name": t.name, "put_8": f.put_8, "put_1": f.put_1, "get_mib": f.get_mib, "rss_filled_mib": f.rss_holding_mib}).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::{
        Figures, PRODUCER_COUNTS, PutRecordFigures, SyncFloor, Target, render_single, render_steal,
    };

    fn target(name: &str) -> Target {
        Target {
            name: name.into(),
            persistence: "disk".into(),
            command: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }

    #[test]
    fn the_single_record_table_shows_the_disk_alone_beside_each_target() {
        let single = PRODUCER_COUNTS
            .into_iter()
            .map(|producers| PutRecordFigures {
                producers,
                records_per_second: 1000.0 * producers as f64,
                p50_ms: 0.5,
                p99_ms: 2.0,
                p999_ms: 4.0,
            })
            .collect();
        let measured = Figures {
            single,
            disk: Some(SyncFloor {
                syncs_per_second: 3456.4,
                p50_ms: 0.281,
                p99_ms: 1.726,
                p999_ms: 5.5,
            }),
            ..Figures::default()
        };
        let table = render_single(&[
            (target("brook-fsync"), measured),
            (target("peer"), Figures::default()),
        ]);
        let lines: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].ends_with("| disk alone (syncs/s) | p50 | p99 | p99.9 |"));
        let columns = |line: &str| line.matches('|').count();
        assert!(
            lines.iter().all(|l| columns(l) == columns(lines[0])),
            "{table}"
        );
        assert!(
            lines[2].starts_with("| brook-fsync | 1000 | 0.50 | 2.00 | 4.00 | 8000 |"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("| 3456 | 0.28 | 1.73 | 5.50 |"),
            "{table}"
        );
        assert!(lines[3].ends_with("| n/a | n/a | n/a | n/a |"), "{table}");
    }

    #[test]
    fn the_report_names_the_steal_under_each_target_it_knows() {
        let with = |steal_percent| Figures {
            steal_percent,
            ..Figures::default()
        };
        let line = render_steal(&[
            (target("brook-fsync"), with(Some(23.4))),
            (target("ferrokinesis"), with(Some(2.0))),
            (target("moto"), with(None)),
        ]);
        assert!(
            line.ends_with(": brook-fsync 23 %, ferrokinesis 2 %.\n"),
            "{line}"
        );
        assert_eq!(render_steal(&[(target("moto"), with(None))]), "");
    }
}
