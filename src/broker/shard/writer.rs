//! The storage writer: every shard's mutable state, behind one lock.
//!
//! An append takes the lock on its own task: it assigns offsets and arrival times, appends
//! its batches to the shared (preallocated) journal and to their shards' active segments, and
//! queues the round for the group commit ([`super::group_commit`]), whose syncer thread syncs
//! it (with `Fsync` durability), publishes the committed state and replies while the next
//! appends take the lock and write. No reply leaves before the sync that covers it returns;
//! a failed write or sync fails the round's writes and stops the writer for good, since a
//! retried fsync can lie.
//!
//! Everything else (new shards, closing, checkpoints, expiry, imports) runs on a plain OS
//! thread, the writer thread, that takes the lock for each command.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::batch::SealedBody;
use super::checkpoint::{CHECKPOINT_FILE, Checkpoint, ShardCheckpoint, journal_path, shard_dir};
use super::fs::{FileSystem, LogFile};
use super::group_commit::{GroupCommit, WrittenRound};
use super::journal_room::{AheadGrowth, JournalRoom, grow_with_zeros};
use super::log::{ShardKey, ShardLog, ShardView};
use super::shard_writer::{ShardWriter, Writeback};
use super::stats::{CommitStats, Stage};
use super::{Clock, StoreError, StoreOptions, retention_of};

/// One shard's part of an append request.
#[derive(Debug)]
pub struct AppendPart {
    /// The shard written to.
    pub shard: ShardKey,
    /// The records, encoded and checksummed.
    pub body: SealedBody,
}

/// Where an appended part landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the part's first record.
    pub base_offset: u64,
    /// Arrival time given to the part's records.
    pub arrival_ms: u64,
}

/// A committed append, as its reply carries it.
#[derive(Debug)]
pub struct Committed {
    /// Where each part landed, in order.
    pub landed: Vec<Appended>,
    /// When the reply was sent (for the wake-up stage of the commit counters).
    pub replied_at: Instant,
}

/// Where an append's outcome goes.
pub type AppendReply = oneshot::Sender<Result<Committed, StoreError>>;

/// What the writer is asked to do.
pub enum Command {
    /// Start empty shards.
    AddShards {
        /// The new shards.
        shards: Vec<ShardKey>,
        /// Their logs, for readers.
        reply: oneshot::Sender<Result<Vec<Arc<ShardLog>>, StoreError>>,
    },
    /// Forget a stream's shards and delete their files.
    DropStream {
        /// The stream's key.
        stream_key: u32,
        /// Done.
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Close a shard (later appends to it are refused with [`StoreError::ShardClosed`]), or
    /// open it again when the reshard that closed it could not be saved.
    SetShardClosed {
        /// The shard.
        shard: ShardKey,
        /// Closed or open.
        closed: bool,
        /// The offset one past its last record.
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Set a stream's retention, which decides segment roll age and deletion.
    SetRetention {
        /// The stream's key.
        stream_key: u32,
        /// Retention in milliseconds.
        retention_ms: u64,
    },
    /// Delete a shard's sealed segments whose records all precede `offset` (records a
    /// reader is done with, such as a delivery journal's delivered ones).
    TrimBefore {
        /// The shard.
        shard: ShardKey,
        /// The first offset still needed.
        offset: u64,
    },
    /// Take the segments a copy wrote as an empty shard's log, closed, and checkpoint.
    AdoptImport {
        /// The shard.
        shard: ShardKey,
        /// What the source holds.
        listing: super::checkpoint::ShardCheckpoint,
        /// The segments written, oldest first.
        segments: Vec<super::transfer::ImportedSegment>,
        /// Done.
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Empty a shard whose log another pod now holds: checkpoint without it, delete its
    /// files, and answer the new (empty) log readers get from now on.
    ForgetShard {
        /// The shard.
        shard: ShardKey,
        /// The new log.
        reply: oneshot::Sender<Result<Arc<ShardLog>, StoreError>>,
    },
    /// Periodic housekeeping: checkpoint when due, delete expired segments.
    Tick,
    /// Grow the journal's room ahead of the appends (without waiting for written rounds).
    GrowJournal,
    /// Start the write-back of the segment bytes written lately (without waiting for
    /// written rounds).
    WriteBack,
    /// Checkpoint now (whether due or not) and keep going.
    Checkpoint {
        /// Done.
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Checkpoint now and stop.
    Shutdown {
        /// Done.
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) dir: PathBuf,
    pub(super) options: StoreOptions,
    pub(super) clock: Clock,
    pub(super) journal: Box<dyn LogFile>,
    pub(super) journal_generation: u64,
    pub(super) journal_len: u64,
    /// Rounds written to this journal generation.
    pub(super) journal_rounds: u64,
    /// The room made in this generation's file (see [`StoreOptions::journal_room`]), which
    /// the writer thread grows ahead.
    pub(super) journal_room: JournalRoom,
    pub(super) shards: HashMap<ShardKey, ShardWriter>,
    pub(super) retention_ms: HashMap<u32, u64>,
    pub(super) last_checkpoint: Instant,
    pub(super) failure: Option<String>,
    pub(super) shared_failure: Arc<std::sync::Mutex<Option<String>>>,
    pub(super) stats: CommitStats,
    /// Syncs written rounds while the next ones are written (`Fsync` durability only; without
    /// it, rounds are settled where they are written).
    pub(super) group_commit: Option<Arc<GroupCommit>>,
    /// Shut down: takes no more writes.
    pub(super) shut_down: bool,
    /// The next journal generation, made and zeroed ahead by the writer thread outside the
    /// lock, so that a checkpoint does not stall appends for it.
    pub(super) next_journal: Option<(u64, Box<dyn LogFile>)>,
    /// Segment bytes written since the writer thread was last asked to start write-backs.
    pub(super) unwritten_back: u64,
    /// Journal generations a checkpoint has made obsolete, for the writer thread to remove
    /// outside the lock (freeing a generation's blocks took 3–13 ms here, with `discard`).
    pub(super) retired_journals: Vec<PathBuf>,
}

/// A journal generation for the writer thread to make ahead.
struct NextJournal {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    generation: u64,
    room: u64,
}

/// A queued append: its parts, when it was handed over, and where to reply.
pub(super) type QueuedAppend = (Vec<AppendPart>, Instant, AppendReply);
type PendingReply = (AppendReply, Vec<Appended>);

impl Writer {
    /// Starts the group commit and its syncer thread (with `Fsync` durability).
    pub(super) fn start_group_commit(&mut self) -> Result<(), StoreError> {
        if self.options.fsync {
            let journal = self
                .journal
                .try_clone()
                .map_err(StoreError::io(Path::new("journal")))?;
            let group_commit =
                GroupCommit::start(journal, self.stats.clone(), self.shared_failure.clone())
                    .map_err(StoreError::io(Path::new("journal syncer")))?;
            self.group_commit = Some(group_commit);
        }
        Ok(())
    }

    /// The writer thread: runs commands until the queue closes or a shutdown is asked for.
    pub(super) fn run(writer: Arc<tokio::sync::Mutex<Writer>>, mut queue: mpsc::Receiver<Command>) {
        let close = |writer: &Writer| {
            if let Some(group_commit) = &writer.group_commit {
                group_commit.close();
            }
        };
        let fs = writer.blocking_lock().fs.clone();
        while let Some(command) = queue.blocking_recv() {
            let mut locked = writer.blocking_lock();
            let checkpoint_ahead = match &command {
                Command::Tick => locked.checkpoint_wanted(),
                Command::Checkpoint { .. } => true,
                _ => false,
            };
            if checkpoint_ahead {
                let segments = locked.segments_to_sync_ahead();
                drop(locked);
                sync_ahead(segments);
                locked = writer.blocking_lock();
            }
            let mut growth = None;
            let mut writebacks = Vec::new();
            match command {
                Command::Shutdown { reply } => {
                    let result = locked.checked(|w| w.checkpoint());
                    locked.shut_down = true;
                    close(&locked);
                    remove_retired(fs.as_ref(), std::mem::take(&mut locked.retired_journals));
                    let _ = reply.send(result);
                    return;
                }
                Command::GrowJournal => growth = locked.ahead_growth(),
                Command::WriteBack => writebacks = locked.writebacks_due(),
                other => {
                    // Controls see every earlier round settled.
                    locked.quiesce();
                    locked.control(other);
                }
            }
            let next = locked.next_journal_to_make();
            let retired = std::mem::take(&mut locked.retired_journals);
            drop(locked);
            remove_retired(fs.as_ref(), retired);
            if let Some(growth) = growth
                && let Err(error) = growth.run()
            {
                // Appends that outrun the room grow it themselves, and report.
                tracing::warn!(%error, "could not grow the journal's room ahead");
            }
            start_writebacks(writebacks);
            if let Some(next) = next {
                Self::make_next_journal(&writer, next);
            }
        }
        close(&writer.blocking_lock());
    }

    /// Second handles on the segments written since the last checkpoint. Before a checkpoint
    /// (asked for, or due at this tick) the writer thread syncs them through these without the
    /// lock, while appends go on, so the checkpoint's own syncs, which hold the lock, find only
    /// what was written since. (After 4 MB PutRecords for 3 s, a 1 KiB PutRecord waited up to
    /// 174–248 ms for a checkpoint, and 86–152 ms with this.)
    fn segments_to_sync_ahead(&self) -> Vec<Box<dyn LogFile>> {
        self.shards
            .values()
            .flat_map(ShardWriter::segments_to_sync_ahead)
            .collect()
    }

    /// Whether the writer thread should now be asked to start the write-back of what was
    /// written to segments; the bytes count as asked for from then on. (A request that
    /// cannot be queued loses nothing: the next one covers every segment's bytes since its
    /// last write-back.)
    pub(super) fn ask_writeback(&mut self) -> bool {
        let due = self.failure.is_none() && self.unwritten_back >= self.options.segment_writeback;
        if due {
            self.unwritten_back = 0;
        }
        due
    }

    /// The segment write-backs due now: at least a 32nd of the step, or a sealed segment's
    /// rest. (A shard written slowly leaves its bytes to the checkpoint's sync.)
    fn writebacks_due(&mut self) -> Vec<Writeback> {
        if self.failure.is_some() || self.shut_down {
            return Vec::new();
        }
        let least = self.options.segment_writeback / 32;
        self.shards
            .values_mut()
            .flat_map(|shard| shard.writebacks_due(least))
            .collect()
    }

    /// What the writer thread needs to make the next journal generation ahead (its file
    /// system, path, generation and room), unless it is made already or the writer stopped.
    fn next_journal_to_make(&self) -> Option<NextJournal> {
        let generation = self.journal_generation + 1;
        let made = matches!(&self.next_journal, Some((g, _)) if *g == generation);
        (self.failure.is_none() && !self.shut_down && !made).then(|| NextJournal {
            fs: self.fs.clone(),
            path: journal_path(&self.dir, generation),
            generation,
            room: self.options.journal_room,
        })
    }

    /// Makes the next journal generation's file with its room zeroed and synced, without
    /// the lock, and hands it over. A failure leaves it to the checkpoint, which makes the
    /// file itself and reports.
    fn make_next_journal(writer: &tokio::sync::Mutex<Writer>, next: NextJournal) {
        match new_journal_file(next.fs.as_ref(), &next.path, next.room) {
            Ok(journal) => {
                writer.blocking_lock().next_journal = Some((next.generation, journal));
            }
            Err(error) => tracing::warn!(
                %error,
                path = %next.path.display(),
                "could not prepare the next journal generation"
            ),
        }
    }

    /// Whether the writer thread should now be asked to grow the journal's room ahead (once
    /// until it has done so).
    pub(super) fn ask_room_growth(&self) -> bool {
        self.failure.is_none()
            && self
                .journal_room
                .ask_growth(self.journal_len, self.options.journal_growth)
    }

    /// The growth of the room the writer thread makes ahead, outside the lock.
    fn ahead_growth(&mut self) -> Option<AheadGrowth> {
        if self.failure.is_some() || self.shut_down {
            self.journal_room.unask();
            return None;
        }
        let file = self
            .journal
            .try_clone()
            .inspect_err(|error| {
                self.journal_room.unask();
                tracing::warn!(%error, "could not grow the journal's room ahead");
            })
            .ok()?;
        Some(AheadGrowth {
            file,
            room: self.journal_room.clone(),
            written: self.journal_len,
            step: self.options.journal_growth,
            zeros: grow_with_zeros(self.journal_len, self.journal_rounds),
            sync: self.options.fsync,
        })
    }

    /// Whether the journal has grown enough that a checkpoint should start a new one.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.journal_len >= self.options.journal_bytes
    }

    /// Waits until every written round is synced and replied to, and takes over a failure
    /// a sync met.
    fn quiesce(&mut self) {
        if let Some(group_commit) = &self.group_commit {
            group_commit.wait_idle();
        }
        self.adopt_shared_failure();
    }

    fn adopt_shared_failure(&mut self) {
        if self.failure.is_none() {
            self.failure = self
                .shared_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
        }
    }

    fn checked<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.adopt_shared_failure();
        if let Some(reason) = &self.failure {
            return Err(StoreError::Stopped(reason.clone()));
        }
        let result = f(self);
        if let Err(error) = &result {
            tracing::error!(%error, "storage writer stopped: no further writes will be accepted");
            self.failure = Some(error.to_string());
            *self
                .shared_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
        }
        result
    }

    fn control(&mut self, command: Command) {
        match command {
            Command::AddShards { shards, reply } => {
                let result = self.checked(|w| w.add_shards(&shards));
                let _ = reply.send(result);
            }
            Command::DropStream { stream_key, reply } => {
                let result = self.checked(|w| w.drop_stream(stream_key));
                let _ = reply.send(result);
            }
            Command::SetShardClosed {
                shard,
                closed,
                reply,
            } => {
                let result = match self.shards.get_mut(&shard) {
                    Some(writer) => {
                        writer.closed = closed;
                        Ok(writer.next_offset)
                    }
                    None => Err(StoreError::UnknownShard(shard)),
                };
                let _ = reply.send(result);
            }
            Command::SetRetention {
                stream_key,
                retention_ms,
            } => {
                self.retention_ms.insert(stream_key, retention_ms);
            }
            Command::TrimBefore { shard, offset } => {
                let fs = self.fs.clone();
                let _ = self.checked(|w| match w.shards.get_mut(&shard) {
                    Some(writer) => writer.trim_before(fs.as_ref(), offset),
                    None => Ok(()),
                });
            }
            Command::AdoptImport {
                shard,
                listing,
                segments,
                reply,
            } => {
                let _ = reply.send(self.checked(|w| w.adopt_import(shard, &listing, segments)));
            }
            Command::ForgetShard { shard, reply } => {
                let _ = reply.send(self.checked(|w| w.forget_shard(shard)));
            }
            Command::Tick => {
                let _ = self.checked(|w| w.housekeeping());
            }
            Command::Checkpoint { reply } => {
                let _ = reply.send(self.checked(|w| w.checkpoint()));
            }
            // Handled by the writer thread's loop.
            Command::Shutdown { .. } | Command::GrowJournal | Command::WriteBack => {}
        }
    }

    fn add_shards(&mut self, keys: &[ShardKey]) -> Result<Vec<Arc<ShardLog>>, StoreError> {
        let now = self.clock.now_ms();
        let mut logs = Vec::with_capacity(keys.len());
        for &key in keys {
            if let Some(existing) = self.shards.get(&key) {
                logs.push(existing.log.clone());
                continue;
            }
            let log = Arc::new(ShardLog::new(key, ShardView::default()));
            let dir = shard_dir(&self.dir, key);
            let writer = ShardWriter::resume(self.fs.as_ref(), log.clone(), dir, now)?;
            self.shards.insert(key, writer);
            logs.push(log);
        }
        Ok(logs)
    }

    fn drop_stream(&mut self, stream_key: u32) -> Result<(), StoreError> {
        self.shards.retain(|key, _| key.stream_key != stream_key);
        self.retention_ms.remove(&stream_key);
        let dir = self.dir.join("streams").join(stream_key.to_string());
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Writes a round of appends and queues it for the group commit (or, without `Fsync`
    /// durability, settles it at once). Replies go to each append's reply channel. Returns
    /// the group commit when the caller must sync the round itself ([`GroupCommit::lead`])
    /// right after letting the writer go.
    #[must_use = "a returned group commit syncs the round only when its `lead` is called"]
    pub(super) fn commit(
        &mut self,
        appends: Vec<QueuedAppend>,
        alone: bool,
    ) -> Option<Arc<GroupCommit>> {
        if appends.is_empty() {
            return None;
        }
        self.adopt_shared_failure();
        let refusal = match (&self.failure, self.shut_down) {
            (Some(reason), _) => Some(reason.clone()),
            (None, true) => Some("the writer has shut down".to_string()),
            (None, false) => None,
        };
        if let Some(reason) = refusal {
            for (_, _, reply) in appends {
                let _ = reply.send(Err(StoreError::Stopped(reason.clone())));
            }
            return None;
        }
        let round_start = Instant::now();
        let handoff: Duration = appends
            .iter()
            .map(|(_, enqueued, _)| round_start.saturating_duration_since(*enqueued))
            .sum();
        self.stats.add(Stage::Handoff, handoff, 1);
        let (journal, replies, touched, staging_error) = self.stage_round(appends);
        let written = self.checked(|w| {
            if let Some(error) = staging_error {
                return Err(error);
            }
            let needed = w.journal_len + journal.len() as u64;
            if needed > w.journal_room.made() {
                // Waits for a growth the writer thread is making; grows the rest here.
                let zeros = grow_with_zeros(needed, w.journal_rounds + 1);
                let room = w.journal_room.clone();
                room.grow_to(w.journal.as_mut(), needed, w.options.journal_growth, zeros)
                    .map_err(StoreError::io(Path::new("journal")))?;
            }
            w.journal_rounds += 1;
            w.journal
                .append(&journal)
                .map_err(StoreError::io(Path::new("journal")))?;
            w.journal_len += journal.len() as u64;
            w.unwritten_back += journal.len() as u64;
            // Segments get their copy now (page cache; recovery cuts them back to the
            // checkpoint), readers only once the journal is synced.
            let mut steps = Vec::with_capacity(touched.len());
            for key in &touched {
                if let Some(shard) = w.shards.get_mut(key) {
                    shard.flush_round()?;
                    steps.extend(shard.prepare_publish(w.fs.as_ref())?);
                }
            }
            Ok(steps)
        });
        let steps = match written {
            Ok(steps) => steps,
            Err(error) => {
                self.stats.round(replies.len());
                for (reply, _) in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return None;
            }
        };
        let round = WrittenRound {
            steps,
            replies,
            written: Instant::now(),
        };
        self.stats.add(
            Stage::Write,
            round.written - round_start,
            round.replies.len(),
        );
        match &self.group_commit {
            Some(group_commit) => group_commit
                .queue(round, alone)
                .then(|| group_commit.clone()),
            // Without `Fsync` durability there is no group commit: written is acknowledged.
            None => {
                round.settle(&Ok(()), &self.stats);
                None
            }
        }
    }

    /// Stages a round's appends into their shards and the journal buffer. An append naming
    /// an unknown or closed shard is refused whole at once.
    fn stage_round(
        &mut self,
        appends: Vec<QueuedAppend>,
    ) -> (
        Vec<u8>,
        Vec<PendingReply>,
        Vec<ShardKey>,
        Option<StoreError>,
    ) {
        let now = self.clock.now_ms();
        let mut journal = Vec::new();
        let mut pending: Vec<PendingReply> = Vec::with_capacity(appends.len());
        let mut touched: Vec<ShardKey> = Vec::new();
        let mut staging_error = None;
        for (parts, _, reply) in appends {
            if let Some(missing) = parts.iter().find(|p| !self.shards.contains_key(&p.shard)) {
                let _ = reply.send(Err(StoreError::UnknownShard(missing.shard)));
                continue;
            }
            // A shard closed by a reshard takes nothing more: the request is refused whole, so
            // its sender can route it again without writing any record twice.
            if let Some(closed) = parts
                .iter()
                .find(|p| self.shards.get(&p.shard).is_some_and(|s| s.closed))
            {
                let _ = reply.send(Err(StoreError::ShardClosed(closed.shard)));
                continue;
            }
            let mut landed = Vec::with_capacity(parts.len());
            for part in &parts {
                let retention = retention_of(&self.retention_ms, part.shard.stream_key);
                let Some(shard) = self.shards.get_mut(&part.shard) else {
                    continue;
                };
                match shard.stage(
                    self.fs.as_ref(),
                    &self.options,
                    retention,
                    &part.body,
                    now,
                    now,
                ) {
                    Ok(header) => {
                        journal.extend_from_slice(&header.encode());
                        journal.extend_from_slice(&part.body.bytes);
                        landed.push(Appended {
                            base_offset: header.base_offset,
                            arrival_ms: header.arrival_ms,
                        });
                        if !touched.contains(&part.shard) {
                            touched.push(part.shard);
                        }
                    }
                    Err(error) => staging_error = Some(error),
                }
            }
            pending.push((reply, landed));
        }
        (journal, pending, touched, staging_error)
    }

    fn housekeeping(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        for (key, shard) in self.shards.iter_mut() {
            let retention = retention_of(&self.retention_ms, key.stream_key);
            shard.expire(self.fs.as_ref(), now.saturating_sub(retention))?;
        }
        if self.checkpoint_wanted() {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Whether housekeeping checkpoints now: something was written since the last checkpoint,
    /// and its interval has passed or the journal is large.
    fn checkpoint_wanted(&self) -> bool {
        let idle = self.journal_len == 0 && !self.shards.values().any(|s| s.dirty);
        let due = self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
            || self.checkpoint_due();
        !idle && due
    }

    /// Syncs every segment written since the last checkpoint, records the durable state,
    /// and starts a new journal generation, retiring the old one (the writer thread removes
    /// it once the lock is let go).
    pub(super) fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.quiesce();
        if let Some(reason) = &self.failure {
            return Err(StoreError::Stopped(reason.clone()));
        }
        let fs = self.fs.clone();
        for shard in self.shards.values_mut().filter(|s| s.dirty) {
            shard.sync_for_checkpoint(fs.as_ref())?;
        }
        let next_generation = self.journal_generation + 1;
        let next_path = journal_path(&self.dir, next_generation);
        let next_journal = match self.next_journal.take() {
            Some((generation, journal)) if generation == next_generation => journal,
            _ => new_journal_file(fs.as_ref(), &next_path, self.options.journal_room)
                .map_err(StoreError::io(&next_path))?,
        };
        let journal_dir = self.dir.join("journal");
        fs.sync_dir(&journal_dir)
            .map_err(StoreError::io(&journal_dir))?;
        let mut shards: Vec<ShardCheckpoint> = self
            .shards
            .values()
            .map(ShardWriter::checkpoint_entry)
            .collect();
        shards.sort_by_key(|s| s.key);
        let checkpoint = Checkpoint {
            journal_generation: next_generation,
            shards,
        };
        let bytes =
            serde_json::to_vec(&checkpoint).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let path = self.dir.join(CHECKPOINT_FILE);
        fs.write_atomic(&path, &bytes)
            .map_err(StoreError::io(&path))?;
        let old = journal_path(&self.dir, self.journal_generation);
        if let Some(group_commit) = &self.group_commit {
            group_commit.replace_journal(
                next_journal
                    .try_clone()
                    .map_err(StoreError::io(&next_path))?,
            );
        }
        self.journal = next_journal;
        self.journal_generation = next_generation;
        self.journal_len = 0;
        self.journal_rounds = 0;
        self.journal_room = JournalRoom::new(self.options.journal_room);
        self.last_checkpoint = Instant::now();
        self.retired_journals.push(old);
        Ok(())
    }
}

/// Removes journal generations a checkpoint has made obsolete. One left behind (a failed
/// removal, or a crash before it) is removed by the next recovery, which replays only the
/// generations from the checkpoint's on.
fn remove_retired(fs: &dyn FileSystem, journals: Vec<PathBuf>) {
    for path in journals {
        if let Err(error) = fs.remove_file(&path) {
            tracing::warn!(%error, path = %path.display(), "could not remove an old journal generation");
        }
    }
}

/// Syncs `segments` ahead of a checkpoint; a failure is left to the checkpoint's own syncs,
/// which report it.
fn sync_ahead(segments: Vec<Box<dyn LogFile>>) {
    for mut segment in segments {
        let _ = segment.sync_data();
    }
}

/// Starts the write-backs, outside the writer's lock. A failure is left to the checkpoint's
/// syncs, which write the same bytes and report it.
fn start_writebacks(writebacks: Vec<Writeback>) {
    for writeback in writebacks {
        if let Err(error) = writeback.file.start_writeback(writeback.from, writeback.to) {
            tracing::debug!(%error, "could not start a segment's write-back");
        }
    }
}

/// Makes an empty journal generation at `path` with `room` bytes zeroed and synced: its size
/// and blocks are durable before any append, so no append's sync has them to write. A file
/// left there by an earlier attempt holds no record (a generation is only appended to once
/// a checkpoint has made it current) and is emptied first.
fn new_journal_file(fs: &dyn FileSystem, path: &Path, room: u64) -> io::Result<Box<dyn LogFile>> {
    let mut journal = fs.open_append(path)?;
    if !journal.is_empty()? {
        journal.truncate(0)?;
    }
    journal.preallocate(room)?;
    journal.sync_data()?;
    Ok(journal)
}

/// How often the ticker asks the writer for housekeeping.
pub(super) const TICK: Duration = Duration::from_secs(1);
