//! One shard's side of the writer: its active and sealed segments, the round being staged
//! into it, what a committed round publishes to readers, and its share of a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{BatchHeader, SealedBody};
use super::checkpoint::{ShardCheckpoint, encode_index, index_path, remove_segment, segment_path};
use super::fs::{FileSystem, LogFile};
use super::group_commit::PublishStep;
use super::log::{INDEX_STRIDE, IndexEntry, ShardLog};
use super::{StoreError, StoreOptions};

/// Capacity a shard's round buffer keeps between rounds.
const ROUND_BUFFER_KEEP: usize = 256 * 1024;

struct ActiveSegment {
    file: Box<dyn LogFile>,
    path: PathBuf,
    base_offset: u64,
    len: u64,
    created_ms: u64,
    unpersisted_index: Vec<IndexEntry>,
    /// How far the segment's write-back was started (see [`ShardWriter::writebacks_due`]).
    written_back: u64,
}

/// A segment sealed since the last checkpoint, still to be synced.
struct SealedSegment {
    file: Box<dyn LogFile>,
    path: PathBuf,
    unpersisted_index: Vec<IndexEntry>,
    len: u64,
    written_back: u64,
}

/// Bytes of a segment whose write to the disk the writer thread starts ahead of the
/// checkpoint, through a handle of its own (see [`LogFile::start_writeback`]).
pub(super) struct Writeback {
    pub(super) file: Box<dyn LogFile>,
    pub(super) from: u64,
    pub(super) to: u64,
}

/// The bytes of a segment whose write-back is due, given where the last one ended and the
/// segment's length: those written since, once there are at least `least` of them in whole
/// pages; a sealed segment, which grows no more, to its end.
pub(super) fn writeback_range(
    written_back: u64,
    len: u64,
    least: u64,
    sealed: bool,
) -> Option<(u64, u64)> {
    const PAGE: u64 = 4096;
    // The last page of a growing segment is written again by the next append: left for later.
    let to = if sealed { len } else { len - len % PAGE };
    (to > written_back && (sealed || to - written_back >= least)).then_some((written_back, to))
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
    pub(super) dirty: bool,
    /// Files were created in the shard's folder since the last checkpoint: their directory
    /// entries are durable only once the folder is synced.
    new_entries: bool,
    /// The shard's folder itself was created since the last checkpoint.
    new_folder: bool,
    pub(super) closed: bool,
    round: Vec<u8>,
    round_index: Vec<IndexEntry>,
    /// The base offset of the newest segment readers were told of (by a published or
    /// handed-over round): a round in any other segment publishes its segment first.
    published_segment: Option<u64>,
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
                written_back: last.len,
            }),
            None => None,
        };
        let last_indexed_position = view
            .segments
            .last()
            .and_then(|s| s.index.last())
            .map(|e| e.position);
        let published_segment = view.segments.last().map(|s| s.base_offset);
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
            published_segment,
        })
    }

    /// Marks a shard whose segments a copy just wrote (see [`super::transfer`]): closed, and
    /// its files and folder synced into their parents by the next checkpoint.
    pub(super) fn mark_imported(&mut self) {
        self.closed = true;
        self.dirty = true;
        self.new_entries = true;
        self.new_folder = true;
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
                len: old.len,
                written_back: old.written_back,
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
                written_back: 0,
            });
            self.last_indexed_position = None;
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

    /// What the round just written changes for readers, to apply once it is durable; the
    /// writer's own bookkeeping moves on at once.
    pub(super) fn prepare_publish(
        &mut self,
        fs: &dyn FileSystem,
    ) -> Result<Option<PublishStep>, StoreError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(None);
        };
        let index = std::mem::take(&mut self.round_index);
        active.unpersisted_index.extend_from_slice(&index);
        let new_segment = if self.published_segment == Some(active.base_offset) {
            None
        } else {
            let file = fs
                .open_read(&active.path)
                .map_err(StoreError::io(&active.path))?;
            self.published_segment = Some(active.base_offset);
            Some((file, active.path.clone()))
        };
        Ok(Some(PublishStep {
            log: self.log.clone(),
            new_segment,
            base_offset: active.base_offset,
            end_offset: self.next_offset,
            len: active.len,
            last_arrival_ms: self.last_arrival_ms,
            index,
        }))
    }

    /// Makes the committed round visible to readers now.
    pub(super) fn publish(&mut self, fs: &dyn FileSystem) -> Result<(), StoreError> {
        if let Some(step) = self.prepare_publish(fs)? {
            step.apply();
        }
        Ok(())
    }

    /// Second handles on the segment files written since the last checkpoint, for syncing
    /// their bulk ahead of it without the writer's lock.
    pub(super) fn segments_to_sync_ahead(&self) -> Vec<Box<dyn LogFile>> {
        if !self.dirty {
            return Vec::new();
        }
        self.sealed
            .iter()
            .map(|sealed| &sealed.file)
            .chain(self.active.as_ref().map(|active| &active.file))
            .filter_map(|file| file.try_clone().ok())
            .collect()
    }

    /// The write-backs due in this shard's segments (see [`writeback_range`]), each with a
    /// second handle on its file; they count as started from now on.
    pub(super) fn writebacks_due(&mut self, least: u64) -> Vec<Writeback> {
        let sealed = self
            .sealed
            .iter_mut()
            .map(|s| (&s.file, s.len, &mut s.written_back, true));
        let active = self
            .active
            .as_mut()
            .map(|a| (&a.file, a.len, &mut a.written_back, false));
        let mut due = Vec::new();
        for (file, len, written_back, sealed) in sealed.chain(active) {
            let Some((from, to)) = writeback_range(*written_back, len, least, sealed) else {
                continue;
            };
            // Without a handle the checkpoint's sync writes these bytes, as before.
            if let Ok(file) = file.try_clone() {
                *written_back = to;
                due.push(Writeback { file, from, to });
            }
        }
        due
    }

    /// Syncs everything written since the last checkpoint and persists new index entries.
    pub(super) fn sync_for_checkpoint(&mut self, fs: &dyn FileSystem) -> Result<(), StoreError> {
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
            active.written_back = active.len;
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

    pub(super) fn checkpoint_entry(&self) -> ShardCheckpoint {
        ShardCheckpoint::of(self.log.key, &self.log.view())
    }

    /// Deletes sealed segments whose newest record is older than `cutoff_ms`.
    pub(super) fn expire(&mut self, fs: &dyn FileSystem, cutoff_ms: u64) -> Result<(), StoreError> {
        self.drop_oldest_segments(fs, |s| s.last_arrival_ms < cutoff_ms)
    }

    /// Deletes sealed segments whose records all precede `offset`.
    pub(super) fn trim_before(
        &mut self,
        fs: &dyn FileSystem,
        offset: u64,
    ) -> Result<(), StoreError> {
        self.drop_oldest_segments(fs, |s| s.end_offset <= offset)
    }

    /// Deletes the oldest segments for as long as `droppable` holds, never the active one of
    /// an open shard.
    pub(super) fn drop_oldest_segments(
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
                self.published_segment = None;
            }
            remove_segment(fs, &path).map_err(StoreError::io(&path))?;
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

#[cfg(test)]
mod tests {
    use super::writeback_range;

    #[test]
    fn a_write_back_covers_what_was_written_since_the_last_in_whole_pages_once_there_is_enough() {
        const KIB: u64 = 1024;
        // (written back to, length, least, sealed) → range
        let cases = [
            // Nothing new.
            (0, 0, 64 * KIB, false, None),
            (64 * KIB, 64 * KIB, 64 * KIB, false, None),
            // Less than `least` in whole pages: left for later.
            (0, 60 * KIB, 64 * KIB, false, None),
            (0, 64 * KIB + 100, 64 * KIB, false, Some((0, 64 * KIB))),
            // The partial last page of a growing segment waits for the next write-back.
            (
                64 * KIB,
                200 * KIB + 5,
                64 * KIB,
                false,
                Some((64 * KIB, 200 * KIB)),
            ),
            (
                64 * KIB,
                68 * KIB + 5,
                4 * KIB,
                false,
                Some((64 * KIB, 68 * KIB)),
            ),
            (64 * KIB, 64 * KIB + 4095, 1, false, None),
            // A sealed segment grows no more: its rest goes, however small, to its last byte.
            (
                64 * KIB,
                64 * KIB + 5,
                64 * KIB,
                true,
                Some((64 * KIB, 64 * KIB + 5)),
            ),
            (64 * KIB + 5, 64 * KIB + 5, 64 * KIB, true, None),
        ];
        for (written_back, len, least, sealed, expected) in cases {
            assert_eq!(
                writeback_range(written_back, len, least, sealed),
                expected,
                "written back to {written_back}, length {len}, least {least}, sealed {sealed}"
            );
        }
    }
}
