//! The disk's own floor for one durable record: 1 KiB written and `fdatasync`ed, one at a
//! time, into room already written and synced (as a Brook journal's room is), with no server,
//! no network and no other thread. A durable PutRecord cannot be acknowledged sooner than
//! this, so the benchmark reports it beside the durable PutRecord figures, measured just
//! before them (the same disk can be several times slower an hour later).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::BenchError;
use super::single::quantile;

/// Bytes written before each sync: one PutRecord of [`super::single::RECORD_BYTES`].
const WRITE_BYTES: usize = super::single::RECORD_BYTES;

/// The written room the writes cycle through.
const ROOM_BYTES: u64 = 16 * 1024 * 1024;

/// What the disk alone did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SyncFloor {
    /// Write-and-sync pairs per second, one at a time.
    pub syncs_per_second: f64,
    /// Latency of one write and its sync, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile, milliseconds.
    pub p999_ms: f64,
}

impl SyncFloor {
    /// The floor from the latencies of each write and sync (milliseconds) over `elapsed`.
    pub fn from_latencies(mut latencies_ms: Vec<f64>, elapsed: Duration) -> Self {
        latencies_ms.sort_by(f64::total_cmp);
        let seconds = elapsed.as_secs_f64();
        Self {
            syncs_per_second: if seconds > 0.0 {
                latencies_ms.len() as f64 / seconds
            } else {
                0.0
            },
            p50_ms: quantile(&latencies_ms, 0.50),
            p99_ms: quantile(&latencies_ms, 0.99),
            p999_ms: quantile(&latencies_ms, 0.999),
        }
    }
}

/// A scratch file removed when dropped.
struct Scratch {
    file: File,
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Creates (or empties) the file at `path` and writes it `bytes` of zeros, synced: room that
/// writes can then be synced into without the file growing. A file it could not fill is
/// removed.
pub(super) fn zeroed_room(path: &Path, bytes: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; 1024 * 1024];
    let filled = (0..bytes)
        .step_by(zeros.len())
        .try_for_each(|at| file.write_all_at(&zeros, at))
        .and_then(|()| file.sync_all());
    match filled {
        Ok(()) => Ok(file),
        Err(error) => {
            let _ = std::fs::remove_file(path);
            Err(error)
        }
    }
}

/// Measures the floor for `seconds` in a scratch file under `dir` (created if missing): the
/// room is written with zeros and synced first, then 1 KiB writes, each followed by
/// `fdatasync`, go through it in turn.
pub fn measure(dir: &Path, seconds: f64) -> Result<SyncFloor, BenchError> {
    let failed = |error: io::Error| {
        BenchError::Start(format!("measuring the disk in {}: {error}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let path = dir.join("disk-sync-floor.tmp");
    let file = zeroed_room(&path, ROOM_BYTES).map_err(failed)?;
    let scratch = Scratch { file, path };
    let record = vec![b'x'; WRITE_BYTES];
    let mut latencies_ms = Vec::new();
    let mut at = 0;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        let began = Instant::now();
        scratch.file.write_all_at(&record, at).map_err(failed)?;
        scratch.file.sync_data().map_err(failed)?;
        latencies_ms.push(began.elapsed().as_secs_f64() * 1000.0);
        at = (at + WRITE_BYTES as u64) % ROOM_BYTES;
    }
    Ok(SyncFloor::from_latencies(latencies_ms, started.elapsed()))
}

/// [`measure`] on a blocking thread, for async callers.
pub async fn measure_off_runtime(dir: &Path, seconds: f64) -> Result<SyncFloor, BenchError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || measure(&dir, seconds))
        .await
        .map_err(|error| BenchError::Start(error.to_string()))?
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{SyncFloor, measure};

    #[test]
    fn the_floor_is_read_from_the_latencies_of_each_sync() {
        let latencies: Vec<f64> = (1..=1000).rev().map(|n| n as f64 / 100.0).collect();
        let floor = SyncFloor::from_latencies(latencies, Duration::from_secs(2));
        assert_eq!(floor.syncs_per_second, 500.0);
        assert_eq!(floor.p50_ms, 5.01);
        assert_eq!(floor.p99_ms, 9.91);
        assert_eq!(floor.p999_ms, 10.0);
        assert_eq!(
            SyncFloor::from_latencies(Vec::new(), Duration::ZERO),
            SyncFloor::default()
        );
    }

    #[test]
    fn the_disk_is_measured_in_a_scratch_file_that_is_removed_after() {
        let dir = std::env::temp_dir().join(format!("brook-disk-floor-{}", std::process::id()));
        let floor = measure(&dir, 0.2).expect("measured");
        assert!(floor.syncs_per_second > 0.0, "{floor:?}");
        assert!(
            0.0 < floor.p50_ms && floor.p50_ms <= floor.p99_ms && floor.p99_ms <= floor.p999_ms,
            "{floor:?}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).expect("listed").collect();
        assert!(left.is_empty(), "scratch file left behind: {left:?}");
        std::fs::remove_dir(&dir).expect("removed");
    }
}
