//! The single storage writer: a plain OS thread that owns every shard's mutable state.
//!
//! Each round it drains the queue, assigns offsets and arrival times, appends every batch to
//! the shared journal and to its shard's active segment, syncs the journal once (with
//! `Fsync` durability), then publishes the committed state and completes the replies. No
//! reply leaves before the sync that covers it returns; a failed write or sync fails the
//! round's writes and stops the writer for good, since a retried fsync can lie.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::batch::{BatchHeader, SealedBody};
use super::checkpoint::{
    CHECKPOINT_FILE, Checkpoint, SegmentCheckpoint, ShardCheckpoint, encode_index, index_path,
    journal_path, segment_path, shard_dir,
};
use super::fs::{FileSystem, LogFile};
use super::log::{INDEX_STRIDE, IndexEntry, SegmentView, ShardKey, ShardLog, ShardView};
use super::{Clock, StoreError, StoreOptions, retention_of};

/// Capacity a shard's round buffer keeps between rounds.
const ROUND_BUFFER_KEEP: usize = 256 * 1024;
/// Most commands one round takes from the queue.
const MAX_ROUND_COMMANDS: usize = 1024;

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

/// What the writer is asked to do.
pub enum Command {
    /// Append parts, all or none, and reply once they are committed.
    Append {
        /// The parts, one per shard touched.
        parts: Vec<AppendPart>,
        /// Where each part landed, in order.
        reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
    },
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
    /// Periodic housekeeping: checkpoint when due, delete expired segments.
    Tick,
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

struct ActiveSegment {
    file: Box<dyn LogFile>,
    path: PathBuf,
    base_offset: u64,
    len: u64,
    created_ms: u64,
    unpersisted_index: Vec<IndexEntry>,
}

/// A segment sealed since the last checkpoint, still to be synced.
struct SealedSegment {
    file: Box<dyn LogFile>,
    path: PathBuf,
    unpersisted_index: Vec<IndexEntry>,
}

/// A shard's mutable state, owned by the writer.
pub(super) struct ShardWriter {
    pub(super) log: Arc<ShardLog>,
    pub(super) dir: PathBuf,
    pub(super) next_offset: u64,
    pub(super) last_arrival_ms: u64,
    pub(super) last_indexed_position: Option<u64>,
    active: Option<ActiveSegment>,
    sealed: Vec<SealedSegment>,
    dirty: bool,
    /// Files were created in the shard's folder since the last checkpoint: their directory
    /// entries are durable only once the folder is synced.
    new_entries: bool,
    /// The shard's folder itself was created since the last checkpoint.
    new_folder: bool,
    pub(super) closed: bool,
    round: Vec<u8>,
    round_index: Vec<IndexEntry>,
    round_new_segment: bool,
}

impl ShardWriter {
    /// A writer for a shard whose durable state is `view`; appends continue the last segment.
    pub(super) fn resume(
        fs: &dyn FileSystem,
        log: Arc<ShardLog>,
        dir: PathBuf,
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let view = log.view().clone();
        let active = match view.segments.last() {
            Some(last) => Some(ActiveSegment {
                file: fs
                    .open_append(&last.path)
                    .map_err(StoreError::io(&last.path))?,
                path: last.path.clone(),
                base_offset: last.base_offset,
                len: last.len,
                created_ms: now_ms,
                unpersisted_index: Vec::new(),
            }),
            None => None,
        };
        let last_indexed_position = view
            .segments
            .last()
            .and_then(|s| s.index.last())
            .map(|e| e.position);
        Ok(Self {
            log,
            dir,
            next_offset: view.next_offset,
            last_arrival_ms: view.last_arrival_ms,
            last_indexed_position,
            active,
            sealed: Vec::new(),
            dirty: false,
            new_entries: false,
            new_folder: false,
            closed: false,
            round: Vec::new(),
            round_index: Vec::new(),
            round_new_segment: false,
        })
    }

    /// Stages a batch (from a request or the journal) into this round; returns its header.
    pub(super) fn stage(
        &mut self,
        fs: &dyn FileSystem,
        options: &StoreOptions,
        retention_ms: u64,
        body: &SealedBody,
        now_ms: u64,
        arrival_ms: u64,
    ) -> Result<BatchHeader, StoreError> {
        let roll_age = (retention_ms / 16).clamp(3_600_000, 7 * 86_400_000);
        // Segments roll only between rounds, so a round's bytes always land in one segment
        // and nothing uncommitted is ever published with a sealed segment.
        let must_roll = self.round.is_empty()
            && self.active.as_ref().is_some_and(|a| {
                a.len >= options.segment_bytes || now_ms.saturating_sub(a.created_ms) >= roll_age
            });
        if must_roll && let Some(old) = self.active.take() {
            // A sealed segment no longer grows: keep a coarser index of it in memory.
            if let Some(segment) = self.log.view_mut().segments.last_mut()
                && segment.base_offset == old.base_offset
            {
                segment.index = super::log::thin_index(&segment.index);
            }
            self.sealed.push(SealedSegment {
                file: old.file,
                path: old.path,
                unpersisted_index: old.unpersisted_index,
            });
        }
        if self.active.is_none() {
            if !self.dir.exists() {
                std::fs::create_dir_all(&self.dir).map_err(StoreError::io(&self.dir))?;
                self.new_folder = true;
            }
            self.new_entries = true;
            let path = segment_path(&self.dir, self.next_offset);
            let file = fs.open_append(&path).map_err(StoreError::io(&path))?;
            file.len().map_err(StoreError::io(&path))?;
            self.active = Some(ActiveSegment {
                file,
                path,
                base_offset: self.next_offset,
                len: 0,
                created_ms: now_ms,
                unpersisted_index: Vec::new(),
            });
            self.last_indexed_position = None;
            self.round_new_segment = true;
        }
        let header = BatchHeader {
            body_len: body.bytes.len() as u32,
            body_crc: body.crc,
            record_count: body.records,
            stream_key: self.log.key.stream_key,
            shard_index: self.log.key.shard_index,
            base_offset: self.next_offset,
            // Arrival times never go backwards within a shard, whatever the clock does, so
            // one index serves both offset and time lookups.
            arrival_ms: arrival_ms.max(self.last_arrival_ms),
        };
        self.append_staged(&header, &body.bytes);
        Ok(header)
    }

    fn append_staged(&mut self, header: &BatchHeader, body: &[u8]) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let position = active.len + self.round.len() as u64;
        let index_due = self
            .last_indexed_position
            .is_none_or(|last| position >= last + INDEX_STRIDE);
        if index_due {
            self.round_index.push(IndexEntry {
                offset: header.base_offset,
                arrival_ms: header.arrival_ms,
                position,
            });
            self.last_indexed_position = Some(position);
        }
        self.round.extend_from_slice(&header.encode());
        self.round.extend_from_slice(body);
        self.next_offset = header.end_offset();
        self.last_arrival_ms = header.arrival_ms;
        self.dirty = true;
    }

    /// Writes the round's bytes to the active segment (page cache; the journal is the
    /// durable copy until the next checkpoint).
    pub(super) fn flush_round(&mut self) -> Result<(), StoreError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        if self.round.is_empty() {
            return Ok(());
        }
        active
            .file
            .append(&self.round)
            .map_err(StoreError::io(&active.path))?;
        active.len += self.round.len() as u64;
        self.round.clear();
        // An idle shard keeps no large buffer: memory stays a few KiB per shard.
        if self.round.capacity() > ROUND_BUFFER_KEEP {
            self.round.shrink_to(ROUND_BUFFER_KEEP);
        }
        Ok(())
    }

    /// Makes the committed round visible to readers.
    pub(super) fn publish(&mut self, fs: &dyn FileSystem) -> Result<(), StoreError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let new_entries = std::mem::take(&mut self.round_index);
        active.unpersisted_index.extend_from_slice(&new_entries);
        let mut view = self.log.view_mut();
        if self.round_new_segment
            || view
                .segments
                .last()
                .is_none_or(|s| s.base_offset != active.base_offset)
        {
            let file = fs
                .open_read(&active.path)
                .map_err(StoreError::io(&active.path))?;
            view.segments.push(SegmentView {
                base_offset: active.base_offset,
                end_offset: active.base_offset,
                len: 0,
                last_arrival_ms: 0,
                file,
                index: Vec::new(),
                path: active.path.clone(),
            });
            self.round_new_segment = false;
        }
        if let Some(segment) = view.segments.last_mut() {
            segment.end_offset = self.next_offset;
            segment.len = active.len;
            segment.last_arrival_ms = self.last_arrival_ms;
            segment.index.extend_from_slice(&new_entries);
        }
        view.next_offset = self.next_offset;
        view.last_arrival_ms = self.last_arrival_ms;
        drop(view);
        self.log.committed.notify_waiters();
        Ok(())
    }

    /// Syncs everything written since the last checkpoint and persists new index entries.
    fn sync_for_checkpoint(&mut self, fs: &dyn FileSystem) -> Result<(), StoreError> {
        for mut sealed in self.sealed.drain(..) {
            sealed
                .file
                .sync_data()
                .map_err(StoreError::io(&sealed.path))?;
            self.new_entries |= append_index(fs, &sealed.path, &sealed.unpersisted_index)?;
        }
        if let Some(active) = self.active.as_mut() {
            active
                .file
                .sync_data()
                .map_err(StoreError::io(&active.path))?;
            self.new_entries |= append_index(fs, &active.path, &active.unpersisted_index)?;
            active.unpersisted_index.clear();
        }
        // New segment and index files survive a power cut only once their folder is synced,
        // and a new folder only once its parents are: all before the checkpoint names them.
        if self.new_entries || self.new_folder {
            fs.sync_dir(&self.dir).map_err(StoreError::io(&self.dir))?;
        }
        if self.new_folder {
            let mut folder = self.dir.parent();
            // The shard's folder is in its stream's, which is in `streams`.
            for _ in 0..2 {
                let Some(parent) = folder else { break };
                fs.sync_dir(parent).map_err(StoreError::io(parent))?;
                folder = parent.parent();
            }
        }
        self.new_entries = false;
        self.new_folder = false;
        self.dirty = false;
        Ok(())
    }

    fn checkpoint_entry(&self) -> ShardCheckpoint {
        let view = self.log.view();
        ShardCheckpoint {
            key: self.log.key,
            next_offset: view.next_offset,
            last_arrival_ms: view.last_arrival_ms,
            segments: view
                .segments
                .iter()
                .map(|s| SegmentCheckpoint {
                    base_offset: s.base_offset,
                    end_offset: s.end_offset,
                    len: s.len,
                    last_arrival_ms: s.last_arrival_ms,
                })
                .collect(),
        }
    }

    /// Deletes sealed segments whose newest record is older than `cutoff_ms`.
    fn expire(&mut self, fs: &dyn FileSystem, cutoff_ms: u64) -> Result<(), StoreError> {
        self.drop_oldest_segments(fs, |s| s.last_arrival_ms < cutoff_ms)
    }

    /// Deletes sealed segments whose records all precede `offset`.
    fn trim_before(&mut self, fs: &dyn FileSystem, offset: u64) -> Result<(), StoreError> {
        self.drop_oldest_segments(fs, |s| s.end_offset <= offset)
    }

    /// Deletes the oldest segments for as long as `droppable` holds, never the active one of
    /// an open shard.
    fn drop_oldest_segments(
        &mut self,
        fs: &dyn FileSystem,
        droppable: impl Fn(&super::log::SegmentView) -> bool,
    ) -> Result<(), StoreError> {
        // A closed shard takes no more writes, so its last segment may go too.
        let active_base = if self.closed {
            None
        } else {
            self.active.as_ref().map(|a| a.base_offset)
        };
        let expired: Vec<PathBuf> = {
            let mut view = self.log.view_mut();
            let keep_from = view
                .segments
                .iter()
                .position(|s| !droppable(s) || Some(s.base_offset) == active_base)
                .unwrap_or(view.segments.len());
            view.segments.drain(..keep_from).map(|s| s.path).collect()
        };
        for path in expired {
            // A sealed segment still waiting for its checkpoint sync goes too.
            self.sealed.retain(|s| s.path != path);
            if self.active.as_ref().is_some_and(|a| a.path == path) {
                self.active = None;
            }
            fs.remove_file(&path).map_err(StoreError::io(&path))?;
            fs.remove_file(&index_path(&path))
                .map_err(StoreError::io(&path))?;
        }
        Ok(())
    }
}

/// Appends and syncs index entries; returns whether the index file was new.
fn append_index(
    fs: &dyn FileSystem,
    segment: &Path,
    entries: &[IndexEntry],
) -> Result<bool, StoreError> {
    if entries.is_empty() {
        return Ok(false);
    }
    let path = index_path(segment);
    let created = !path.exists();
    let mut file = fs.open_append(&path).map_err(StoreError::io(&path))?;
    file.append(&encode_index(entries))
        .map_err(StoreError::io(&path))?;
    file.sync_data().map_err(StoreError::io(&path))?;
    Ok(created)
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
    pub(super) shards: HashMap<ShardKey, ShardWriter>,
    pub(super) retention_ms: HashMap<u32, u64>,
    pub(super) last_checkpoint: Instant,
    pub(super) failure: Option<String>,
    pub(super) shared_failure: Arc<std::sync::Mutex<Option<String>>>,
}

/// A queued append: its parts and where to reply.
type QueuedAppend = (
    Vec<AppendPart>,
    oneshot::Sender<Result<Vec<Appended>, StoreError>>,
);
type PendingReply = (
    oneshot::Sender<Result<Vec<Appended>, StoreError>>,
    Vec<Appended>,
);

impl Writer {
    /// Runs until the queue closes or a shutdown is asked for.
    pub(super) fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let mut commands = Vec::with_capacity(MAX_ROUND_COMMANDS);
        while let Some(first) = queue.blocking_recv() {
            commands.push(first);
            while commands.len() < MAX_ROUND_COMMANDS {
                match queue.try_recv() {
                    Ok(next) => commands.push(next),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            let mut stop = None;
            for command in commands.drain(..) {
                match command {
                    Command::Append { parts, reply } => appends.push((parts, reply)),
                    Command::Shutdown { reply } => stop = Some(reply),
                    other => self.control(other),
                }
            }
            self.commit(appends);
            if let Some(reply) = stop {
                let result = self.checked(|w| w.checkpoint());
                let _ = reply.send(result);
                return;
            }
        }
    }

    fn checked<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
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
            Command::Tick => {
                let _ = self.checked(|w| w.housekeeping());
            }
            Command::Checkpoint { reply } => {
                let _ = reply.send(self.checked(|w| w.checkpoint()));
            }
            Command::Append { .. } | Command::Shutdown { .. } => {}
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

    fn commit(&mut self, appends: Vec<QueuedAppend>) {
        if appends.is_empty() {
            return;
        }
        if let Some(reason) = &self.failure {
            for (_, reply) in appends {
                let _ = reply.send(Err(StoreError::Stopped(reason.clone())));
            }
            return;
        }
        let now = self.clock.now_ms();
        let mut journal = Vec::new();
        let mut pending: Vec<PendingReply> = Vec::with_capacity(appends.len());
        let mut touched: Vec<ShardKey> = Vec::new();
        let mut staging_error = None;
        for (parts, reply) in appends {
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
        let result = self.checked(|w| {
            if let Some(error) = staging_error {
                return Err(error);
            }
            w.journal
                .append(&journal)
                .map_err(StoreError::io(Path::new("journal")))?;
            w.journal_len += journal.len() as u64;
            if w.options.fsync {
                w.journal
                    .sync_data()
                    .map_err(StoreError::io(Path::new("journal")))?;
            }
            for key in &touched {
                if let Some(shard) = w.shards.get_mut(key) {
                    shard.flush_round()?;
                    shard.publish(w.fs.as_ref())?;
                }
            }
            Ok(())
        });
        for (reply, landed) in pending {
            let _ = reply.send(result.clone().map(|()| landed));
        }
        if result.is_ok() && self.journal_len >= self.options.journal_bytes {
            let _ = self.checked(|w| w.checkpoint());
        }
    }

    fn housekeeping(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        for (key, shard) in self.shards.iter_mut() {
            let retention = retention_of(&self.retention_ms, key.stream_key);
            shard.expire(self.fs.as_ref(), now.saturating_sub(retention))?;
        }
        let idle = self.journal_len == 0 && !self.shards.values().any(|s| s.dirty);
        if !idle && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Syncs every segment written since the last checkpoint, records the durable state,
    /// and starts a new journal generation, deleting the old one.
    pub(super) fn checkpoint(&mut self) -> Result<(), StoreError> {
        let fs = self.fs.clone();
        for shard in self.shards.values_mut().filter(|s| s.dirty) {
            shard.sync_for_checkpoint(fs.as_ref())?;
        }
        let next_generation = self.journal_generation + 1;
        let next_path = journal_path(&self.dir, next_generation);
        let next_journal = fs
            .open_append(&next_path)
            .map_err(StoreError::io(&next_path))?;
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
        self.journal = next_journal;
        self.journal_generation = next_generation;
        self.journal_len = 0;
        self.last_checkpoint = Instant::now();
        fs.remove_file(&old).map_err(StoreError::io(&old))?;
        Ok(())
    }
}

/// How often the ticker asks the writer for housekeeping.
pub(super) const TICK: Duration = Duration::from_secs(1);
