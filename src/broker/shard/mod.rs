//! Durable per-shard logs: segment files per shard, one fsynced journal per volume, one
//! writer (appends write on their own task, a syncer thread syncs them in groups), and
//! recovery that truncates each shard to its checkpoint and replays the journal, stopping at
//! the first entry whose checksum, length or sequence is wrong.
//!
//! See "Shard storage" in the design notes; [`writer`] holds the commit protocol.

pub mod batch;
pub mod checkpoint;
pub mod fs;
mod group_commit;
mod journal_room;
pub mod log;
mod recovery;
mod shard_writer;
pub mod stats;
pub mod transfer;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

pub use log::{ReadLimits, ReadOutcome, ShardKey, ShardLog};
pub use recovery::RecoveryReport;
pub use writer::{AppendPart, Appended};

use fs::FileSystem;
use writer::Command;

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// The writer stopped after an earlier failure and takes no more writes.
    #[error("storage writer stopped after an earlier failure: {0}")]
    Stopped(String),
    /// A write named a shard that a reshard closed; route it again.
    #[error("shard {0:?} is closed")]
    ShardClosed(ShardKey),
    /// A write named a shard the store does not have.
    #[error("unknown shard {0:?}")]
    UnknownShard(ShardKey),
    /// A stored file does not check out.
    #[error("corrupt storage: {0}")]
    Corrupt(String),
    /// Copying a shard from another store failed; nothing of it was kept.
    #[error("copying a shard: {0}")]
    Copy(#[from] transfer::TransferError),
}

impl StoreError {
    /// Maps an I/O error on `path` into a store error.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |error| StoreError::Io {
            path: path.display().to_string(),
            message: error.to_string(),
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Sync the journal before acknowledging (`Fsync` durability).
    pub fsync: bool,
    /// Size at which a segment rolls.
    pub segment_bytes: u64,
    /// Journal size that forces a checkpoint.
    pub journal_bytes: u64,
    /// Longest time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Depth of the writer's queue.
    pub queue_depth: usize,
    /// Room each journal generation starts with, zeroed and synced when it is made: appends
    /// within it change no file size or block map, so their sync writes only data.
    pub journal_room: u64,
    /// Room added when an append does not fit: zeroed by that append (a larger step makes
    /// fewer, longer stalls), made durable by its sync.
    pub journal_growth: u64,
    /// Segment bytes written after which the writer thread starts their write-back to the
    /// disk, so that a checkpoint's syncs (which appends' journal syncs queue behind) find
    /// little left to write.
    pub segment_writeback: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            segment_bytes: 128 * 1024 * 1024,
            journal_bytes: 1024 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(30),
            queue_depth: 4096,
            // Small enough for a 64 MiB volume (the old and the new generation both exist
            // during a checkpoint); a sync pays for file metadata once per room.
            journal_room: 8 * 1024 * 1024,
            // A step costs about 4 ms of zeroing and 7 ms of sync, once per 8 MiB of journal,
            // on the writer thread ahead of the appends (on an append only when one outruns
            // it); 1 MiB steps measured slower overall (a sync that changes the file's size
            // writes metadata too: 8 times as many).
            journal_growth: 8 * 1024 * 1024,
            segment_writeback: 8 * 1024 * 1024,
        }
    }
}

/// Retention of a stream the writer has not been told of: Kinesis's default, 24 hours.
pub const DEFAULT_RETENTION_MS: u64 = 86_400_000;

/// The retention of `stream_key` in `retention_ms`, or the default.
pub fn retention_of(retention_ms: &HashMap<u32, u64>, stream_key: u32) -> u64 {
    retention_ms
        .get(&stream_key)
        .copied()
        .unwrap_or(DEFAULT_RETENTION_MS)
}

/// Milliseconds since the Unix epoch, as the system clock says.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The broker's wall clock, with an offset tests can move forward, and a test knob that
/// stops it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// When non-zero, the time the clock stands still at.
    frozen_ms: Arc<AtomicU64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch, offset included.
    pub fn now_ms(&self) -> u64 {
        match self.frozen_ms.load(Ordering::Relaxed) {
            0 => (wall_clock_ms() as i64 + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64,
            frozen => frozen,
        }
    }

    /// Moves the clock forward by `ms` (a test knob for retention).
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
        let frozen = self.frozen_ms.load(Ordering::Relaxed);
        if frozen != 0 {
            self.frozen_ms
                .store((frozen as i64 + ms).max(1) as u64, Ordering::Relaxed);
        }
    }

    /// Stops the clock where it is (a test knob: quotas then refill only when it is advanced,
    /// however slow the machine).
    pub fn freeze(&self) {
        self.frozen_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
    }
}

/// The shard logs of a data directory and the writer that appends to them.
pub struct Store {
    /// Controls for the writer thread.
    queue: mpsc::Sender<Command>,
    /// The writer, which appends lock on their own task.
    writer: Arc<tokio::sync::Mutex<writer::Writer>>,
    logs: RwLock<HashMap<ShardKey, Arc<ShardLog>>>,
    clock: Clock,
    dir: PathBuf,
    failure: Arc<std::sync::Mutex<Option<String>>>,
    stats: stats::CommitStats,
    fsync: bool,
    fs: Arc<dyn FileSystem>,
    /// Appends under way (from their call until their answer).
    appending: AtomicUsize,
}

/// One append under way, counted in [`Store::appending`] until it ends or is dropped.
struct Appending<'a>(&'a AtomicUsize);

impl<'a> Appending<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }

    /// Whether no other append is under way.
    fn alone(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 1
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Store {
    /// Opens (recovering) the store in `dir` for the given shards and stream retentions, and
    /// starts its writer. Shards of other streams found on disk are deleted.
    pub fn open(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        options: StoreOptions,
        clock: Clock,
        shards: &[ShardKey],
        retention_ms: HashMap<u32, u64>,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        let (mut writer, report) = recovery::recover(
            dir,
            fs.clone(),
            options.clone(),
            clock.clone(),
            shards,
            retention_ms,
        )?;
        let failure = writer.shared_failure.clone();
        let stats = writer.stats.clone();
        let logs = writer
            .shards
            .iter()
            .map(|(key, shard)| (*key, shard.log.clone()))
            .collect();
        writer.start_group_commit()?;
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let (queue, receiver) = mpsc::channel(options.queue_depth);
        let thread_writer = writer.clone();
        std::thread::Builder::new()
            .name("brook-writer".into())
            .spawn(move || writer::Writer::run(thread_writer, receiver))
            .map_err(StoreError::io(dir))?;
        // The ticker holds a weak handle, so dropping the store closes the queue and the
        // writer exits.
        let ticker = queue.downgrade();
        std::thread::Builder::new()
            .name("brook-ticker".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(writer::TICK);
                    let Some(queue) = ticker.upgrade() else { break };
                    if queue.is_closed() {
                        break;
                    }
                    let _ = queue.try_send(Command::Tick);
                }
            })
            .map_err(StoreError::io(dir))?;
        let store = Self {
            queue,
            writer,
            logs: RwLock::new(logs),
            clock,
            dir: dir.to_path_buf(),
            failure,
            stats,
            fsync: options.fsync,
            fs,
            appending: AtomicUsize::new(0),
        };
        Ok((store, report))
    }

    /// Whether acknowledgements wait for a sync (`Fsync` durability).
    pub fn syncs(&self) -> bool {
        self.fsync
    }

    /// The store's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why the writer stopped, if it did: it then takes no more writes.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The commit counters (time per stage of an append), for `/metrics`.
    pub fn stats(&self) -> &stats::CommitStats {
        &self.stats
    }

    /// The clock the store stamps arrival times with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Stopped("the writer has shut down".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Stopped("the writer has shut down".into()))?
    }

    /// Appends parts atomically (all or none) and returns once they are committed.
    pub async fn append(&self, parts: Vec<AppendPart>) -> Result<Vec<Appended>, StoreError> {
        let enqueued = std::time::Instant::now();
        let appending = Appending::enter(&self.appending);
        let (reply, answer) = oneshot::channel();
        let (checkpoint_due, lead) = {
            let mut writer = self.writer.lock().await;
            let lead = writer.commit(vec![(parts, enqueued, reply)], appending.alone());
            if writer.ask_room_growth() && self.queue.try_send(Command::GrowJournal).is_err() {
                writer.journal_room.unask();
            }
            if writer.ask_writeback() {
                let _ = self.queue.try_send(Command::WriteBack);
            }
            (writer.checkpoint_due(), lead)
        };
        // No await between queueing the round and syncing it: a dropped caller cannot leave
        // a round that nothing syncs.
        if let Some(group_commit) = lead {
            sync_here(|| group_commit.lead());
        }
        if checkpoint_due {
            let _ = self.queue.try_send(Command::Tick);
        }
        let committed = answer
            .await
            .map_err(|_| StoreError::Stopped("the writer has shut down".into()))??;
        self.stats
            .add(stats::Stage::Wakeup, committed.replied_at.elapsed(), 1);
        Ok(committed.landed)
    }

    /// Starts empty shards.
    pub async fn add_shards(&self, shards: Vec<ShardKey>) -> Result<(), StoreError> {
        let logs = self
            .ask(|reply| Command::AddShards { shards, reply })
            .await?;
        let mut map = self
            .logs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for log in logs {
            map.insert(log.key, log);
        }
        Ok(())
    }

    /// Deletes a stream's shards and their files.
    pub async fn drop_stream(&self, stream_key: u32) -> Result<(), StoreError> {
        self.logs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|key, _| key.stream_key != stream_key);
        self.ask(|reply| Command::DropStream { stream_key, reply })
            .await
    }

    /// Closes a shard; returns the offset one past its last record.
    pub async fn close_shard(&self, shard: ShardKey) -> Result<u64, StoreError> {
        self.ask(|reply| Command::SetShardClosed {
            shard,
            closed: true,
            reply,
        })
        .await
    }

    /// Opens a shard closed by a reshard that did not complete; it takes writes again.
    pub async fn reopen_shard(&self, shard: ShardKey) -> Result<u64, StoreError> {
        self.ask(|reply| Command::SetShardClosed {
            shard,
            closed: false,
            reply,
        })
        .await
    }

    /// Sets the retention the writer applies to a stream's segments.
    pub async fn set_retention(
        &self,
        stream_key: u32,
        retention_ms: u64,
    ) -> Result<(), StoreError> {
        self.queue
            .send(Command::SetRetention {
                stream_key,
                retention_ms,
            })
            .await
            .map_err(|_| StoreError::Stopped("the writer has shut down".into()))
    }

    /// Deletes a shard's sealed segments whose records all precede `offset`.
    pub async fn trim_before(&self, shard: ShardKey, offset: u64) -> Result<(), StoreError> {
        self.queue
            .send(Command::TrimBefore { shard, offset })
            .await
            .map_err(|_| StoreError::Stopped("the writer has shut down".into()))
    }

    /// A shard's log, for reading.
    pub fn log(&self, key: ShardKey) -> Option<Arc<ShardLog>> {
        self.logs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned()
    }

    /// Checkpoints now: syncs what was written since the last one and starts a new journal.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.ask(|reply| Command::Checkpoint { reply }).await
    }

    /// Checkpoints and stops the writer; later writes fail.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.ask(|reply| Command::Shutdown { reply }).await
    }
}

/// How an append syncs the round it leads, on the runtime it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeadSync {
    /// A plain blocking call on the append's thread. Where other workers keep serving (and
    /// writing the rounds the next sync takes), or on a single-threaded runtime where nothing
    /// else could.
    Blocking,
    /// In `block_in_place`: the worker's other tasks move to another thread meanwhile, so the
    /// runtime's only worker keeps parsing and writing requests while the disk works.
    HandingOff,
}

/// Decides how to sync a led round: a hand-off of the worker costs a thread wake-up and a
/// context switch, worth paying only when no other worker is left to serve.
fn lead_sync(multi_thread_workers: Option<usize>) -> LeadSync {
    match multi_thread_workers {
        Some(1) => LeadSync::HandingOff,
        _ => LeadSync::Blocking,
    }
}

/// Runs a blocking `sync` on the calling task, as [`lead_sync`] decides for its runtime.
fn sync_here(sync: impl FnOnce()) {
    let multi_thread_workers = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        .map(|runtime| runtime.metrics().num_workers());
    match lead_sync(multi_thread_workers) {
        LeadSync::HandingOff => tokio::task::block_in_place(sync),
        LeadSync::Blocking => sync(),
    }
}

#[cfg(test)]
mod tests {
    use super::{LeadSync, lead_sync};

    #[test]
    fn a_led_sync_hands_its_worker_off_only_when_it_is_the_runtimes_only_one() {
        let cases = [
            (None, LeadSync::Blocking),
            (Some(1), LeadSync::HandingOff),
            (Some(2), LeadSync::Blocking),
            (Some(16), LeadSync::Blocking),
        ];
        for (workers, expected) in cases {
            assert_eq!(lead_sync(workers), expected, "{workers:?} workers");
        }
    }
}
