//! Copying a closed shard's log from one store to another, byte for byte, so its records keep
//! their offsets (hence sequence numbers) and arrival times: the source hands out whole
//! batches of each committed segment, the receiving store checks every batch (checksums,
//! shard, dense offsets, arrival order), writes and syncs the segment and its index in the
//! shard's folder, and only then adopts the segments into its log and checkpoints them.
//! A copy cut short before that checkpoint leaves files no checkpoint names, which the next
//! recovery removes (or the failed copy removes itself).

use std::path::{Path, PathBuf};

use super::batch::{BatchError, BatchHeader, HEADER_LEN, verify_body};
use super::checkpoint::{
    SegmentCheckpoint, ShardCheckpoint, encode_index, index_path, remove_segment, segment_path,
};
use super::fs::{FileSystem, LogFile};
use super::log::{INDEX_STRIDE, IndexEntry, SegmentView, ShardKey, ShardView};

/// Why a transfer step failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    /// A file operation failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// The source could not be read.
    #[error("the source: {0}")]
    Source(String),
    /// The bytes received are not the segment the source announced.
    #[error("segment {base_offset} of shard {shard:?}: {problem}")]
    Mismatch {
        /// The shard.
        shard: ShardKey,
        /// The segment's first offset.
        base_offset: u64,
        /// What is wrong.
        problem: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TransferError + '_ {
    move |error| TransferError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// Where a copy reads a shard from (another pod, over the internal port; a store in tests).
pub trait SegmentSource {
    /// What the source holds of the shard: where it ends and its segments.
    fn listing(
        &self,
    ) -> impl std::future::Future<Output = Result<ShardCheckpoint, TransferError>> + Send;
    /// Whole batches of the segment that starts at `base_offset`, from byte `position`.
    fn batches(
        &self,
        base_offset: u64,
        position: u64,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, TransferError>> + Send;
}

/// Most bytes of batches one call hands out (one larger batch still goes whole).
pub const BATCHES_BYTES: u64 = 4 * 1024 * 1024;

/// The whole batches of `segment` from byte `position`, at most `max_bytes` of them unless
/// the first batch alone is larger; empty at the segment's committed end.
pub fn batches_from(
    shard: ShardKey,
    segment: &SegmentView,
    position: u64,
    max_bytes: u64,
) -> Result<Vec<u8>, TransferError> {
    let mut end = position;
    let mut header_bytes = [0u8; HEADER_LEN];
    while end < segment.len {
        segment
            .file
            .read_exact_at(&mut header_bytes, end)
            .map_err(io_error(&segment.path))?;
        let header = BatchHeader::decode(&header_bytes).map_err(|e| TransferError::Mismatch {
            shard,
            base_offset: segment.base_offset,
            problem: format!("batch at byte {end}: {e}"),
        })?;
        let next = end + header.total_len();
        if next > segment.len || (end > position && next - position > max_bytes) {
            break;
        }
        end = next;
    }
    let mut bytes = vec![0u8; (end - position) as usize];
    segment
        .file
        .read_exact_at(&mut bytes, position)
        .map_err(io_error(&segment.path))?;
    Ok(bytes)
}

/// A segment written by a copy, ready to be adopted.
#[derive(Debug, Clone)]
pub struct ImportedSegment {
    /// Its offsets, length and newest arrival time.
    pub checkpoint: SegmentCheckpoint,
    /// Its index, every entry.
    pub index: Vec<IndexEntry>,
    /// Its file.
    pub path: PathBuf,
}

/// A segment being received: every batch is checked before it is written.
pub struct SegmentImport {
    shard: ShardKey,
    expected: SegmentCheckpoint,
    file: Box<dyn LogFile>,
    path: PathBuf,
    next_offset: u64,
    len: u64,
    last_arrival_ms: u64,
    index: Vec<IndexEntry>,
}

impl SegmentImport {
    /// Starts the segment `expected` of `shard` in `shard_dir` (made if missing), replacing
    /// any file a cut copy left there.
    pub fn create(
        fs: &dyn FileSystem,
        shard_dir: &Path,
        shard: ShardKey,
        expected: SegmentCheckpoint,
    ) -> Result<Self, TransferError> {
        std::fs::create_dir_all(shard_dir).map_err(io_error(shard_dir))?;
        let path = segment_path(shard_dir, expected.base_offset);
        let mut file = fs.open_append(&path).map_err(io_error(&path))?;
        file.truncate(0).map_err(io_error(&path))?;
        fs.remove_file(&index_path(&path))
            .map_err(io_error(&path))?;
        Ok(Self {
            shard,
            next_offset: expected.base_offset,
            expected,
            file,
            path,
            len: 0,
            last_arrival_ms: 0,
            index: Vec::new(),
        })
    }

    /// Where the next batches are asked from: the bytes received so far.
    pub fn position(&self) -> u64 {
        self.len
    }

    /// Whether every byte the source announced has arrived.
    pub fn complete(&self) -> bool {
        self.len >= self.expected.len
    }

    fn mismatch(&self, problem: String) -> TransferError {
        TransferError::Mismatch {
            shard: self.shard,
            base_offset: self.expected.base_offset,
            problem,
        }
    }

    /// Checks and writes `bytes`, whole batches continuing the segment.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        if bytes.is_empty() {
            return Err(self.mismatch(format!(
                "the source sent nothing at byte {} of {}",
                self.len, self.expected.len
            )));
        }
        let mut at = 0usize;
        while at < bytes.len() {
            let header = BatchHeader::decode(&bytes[at..])
                .map_err(|e| self.mismatch(format!("batch at byte {}: {e}", self.len)))?;
            let body_start = at + HEADER_LEN;
            let body = bytes
                .get(body_start..body_start + header.body_len as usize)
                .ok_or_else(|| self.mismatch(format!("batch at byte {} is cut", self.len)))?;
            verify_body(&header, body).map_err(|e: BatchError| {
                self.mismatch(format!("batch at byte {}: {e}", self.len))
            })?;
            self.check(&header)?;
            let position = self.len + at as u64;
            let index_due = self
                .index
                .last()
                .is_none_or(|last| position >= last.position + INDEX_STRIDE);
            if index_due {
                self.index.push(IndexEntry {
                    offset: header.base_offset,
                    arrival_ms: header.arrival_ms,
                    position,
                });
            }
            self.next_offset = header.end_offset();
            self.last_arrival_ms = header.arrival_ms;
            at = body_start + header.body_len as usize;
        }
        if self.len + bytes.len() as u64 > self.expected.len {
            return Err(self.mismatch("more bytes than the segment holds".into()));
        }
        self.file.append(bytes).map_err(io_error(&self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn check(&self, header: &BatchHeader) -> Result<(), TransferError> {
        if header.stream_key != self.shard.stream_key
            || header.shard_index != self.shard.shard_index
        {
            return Err(self.mismatch(format!(
                "a batch of shard {}/{} in it",
                header.stream_key, header.shard_index
            )));
        }
        if header.base_offset != self.next_offset {
            return Err(self.mismatch(format!(
                "a batch at offset {} where {} comes next",
                header.base_offset, self.next_offset
            )));
        }
        if header.arrival_ms < self.last_arrival_ms {
            return Err(self.mismatch("arrival times go backwards".into()));
        }
        Ok(())
    }

    /// Checks the segment is whole, syncs it and writes its index (synced).
    pub fn finish(mut self, fs: &dyn FileSystem) -> Result<ImportedSegment, TransferError> {
        let whole = self.len == self.expected.len
            && self.next_offset == self.expected.end_offset
            && (self.len == 0 || self.last_arrival_ms == self.expected.last_arrival_ms);
        if !whole {
            return Err(self.mismatch(format!(
                "received {} bytes up to offset {}, announced {} bytes up to offset {}",
                self.len, self.next_offset, self.expected.len, self.expected.end_offset
            )));
        }
        self.file.sync_data().map_err(io_error(&self.path))?;
        if !self.index.is_empty() {
            let path = index_path(&self.path);
            let mut file = fs.open_append(&path).map_err(io_error(&path))?;
            file.truncate(0).map_err(io_error(&path))?;
            file.append(&encode_index(&self.index))
                .map_err(io_error(&path))?;
            file.sync_data().map_err(io_error(&path))?;
        }
        Ok(ImportedSegment {
            checkpoint: self.expected,
            index: self.index,
            path: self.path,
        })
    }

    /// Removes what was written (a copy that failed).
    pub fn abandon(self, fs: &dyn FileSystem) {
        let _ = remove_segment(fs, &self.path);
    }
}

/// Whether `listing` of the source and the imported `segments` agree: the same segments,
/// end to end, ending where the shard ends.
pub fn covers(listing: &ShardCheckpoint, segments: &[ImportedSegment]) -> bool {
    listing.segments.len() == segments.len()
        && listing
            .segments
            .iter()
            .zip(segments)
            .all(|(announced, got)| *announced == got.checkpoint)
        && listing
            .segments
            .windows(2)
            .all(|pair| pair[0].end_offset == pair[1].base_offset)
        && listing
            .segments
            .last()
            .is_none_or(|last| last.end_offset == listing.next_offset)
}

impl super::writer::Writer {
    /// Adopts the segments a copy wrote as the log of `shard`, which must be empty here, and
    /// checkpoints them: from then on they survive a crash or a power cut.
    pub(super) fn adopt_import(
        &mut self,
        shard: ShardKey,
        listing: &ShardCheckpoint,
        segments: Vec<ImportedSegment>,
    ) -> Result<(), super::StoreError> {
        use super::StoreError;
        let fs = self.fs.clone();
        let now = self.clock.now_ms();
        let Some(current) = self.shards.get(&shard) else {
            return Err(StoreError::UnknownShard(shard));
        };
        if !current.log.view().is_empty() {
            return Err(StoreError::Corrupt(format!(
                "shard {shard:?} already holds records here: a copy is not taken over them"
            )));
        }
        if !covers(listing, &segments) {
            return Err(StoreError::Corrupt(format!(
                "the copy of shard {shard:?} does not match what its source holds"
            )));
        }
        let mut views = Vec::with_capacity(segments.len());
        for segment in segments {
            let file = fs
                .open_read(&segment.path)
                .map_err(StoreError::io(&segment.path))?;
            views.push(SegmentView {
                base_offset: segment.checkpoint.base_offset,
                end_offset: segment.checkpoint.end_offset,
                len: segment.checkpoint.len,
                last_arrival_ms: segment.checkpoint.last_arrival_ms,
                file,
                index: segment.index,
                path: segment.path,
            });
        }
        let sealed = views.len().saturating_sub(1);
        for view in &mut views[..sealed] {
            view.index = super::log::thin_index(&view.index);
        }
        let log = current.log.clone();
        *log.view_mut() = ShardView {
            next_offset: listing.next_offset,
            last_arrival_ms: listing.last_arrival_ms,
            segments: views,
        };
        let dir = super::checkpoint::shard_dir(&self.dir, shard);
        let mut writer =
            super::shard_writer::ShardWriter::resume(fs.as_ref(), log.clone(), dir, now)?;
        writer.mark_imported();
        self.shards.insert(shard, writer);
        self.checkpoint()?;
        log.committed.notify_waiters();
        Ok(())
    }

    /// Empties `shard` here (another pod holds its log now): the checkpoint stops naming its
    /// segments before they are deleted. Readers already reading keep the old log's files.
    pub(super) fn forget_shard(
        &mut self,
        shard: ShardKey,
    ) -> Result<std::sync::Arc<super::ShardLog>, super::StoreError> {
        use super::StoreError;
        let fs = self.fs.clone();
        let now = self.clock.now_ms();
        let Some(current) = self.shards.get(&shard) else {
            return Err(StoreError::UnknownShard(shard));
        };
        let old = current.log.clone();
        let paths: Vec<PathBuf> = {
            let view = old.view();
            if view.is_empty() {
                return Ok(old.clone());
            }
            view.segments.iter().map(|s| s.path.clone()).collect()
        };
        let log = std::sync::Arc::new(super::ShardLog::new(shard, ShardView::default()));
        let dir = super::checkpoint::shard_dir(&self.dir, shard);
        let writer =
            super::shard_writer::ShardWriter::resume(fs.as_ref(), log.clone(), dir.clone(), now)?;
        self.shards.insert(shard, writer);
        self.checkpoint()?;
        for path in paths {
            remove_segment(fs.as_ref(), &path).map_err(StoreError::io(&path))?;
        }
        // Empty now, unless something unexpected is left: then it stays.
        let _ = std::fs::remove_dir(&dir);
        old.committed.notify_waiters();
        Ok(log)
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TransferError> + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| TransferError::Source(format!("a copy task failed: {e}")))?
}

impl super::Store {
    /// What this store holds of `shard`, for a copy to another store.
    pub fn listing(&self, shard: ShardKey) -> Option<ShardCheckpoint> {
        self.log(shard)
            .map(|log| ShardCheckpoint::of(shard, &log.view()))
    }

    /// Whether this store holds records of `shard` (or ever did).
    pub fn holds_records(&self, shard: ShardKey) -> bool {
        self.log(shard).is_some_and(|log| !log.view().is_empty())
    }

    /// Whole batches of `shard`'s segment at `base_offset` from byte `position`; `None` when
    /// the store has no such segment (retention deleted it, or the shard is not here).
    pub fn batches(
        &self,
        shard: ShardKey,
        base_offset: u64,
        position: u64,
    ) -> Option<Result<Vec<u8>, TransferError>> {
        let log = self.log(shard)?;
        let segment = log
            .view()
            .segments
            .iter()
            .find(|s| s.base_offset == base_offset)
            .cloned()?;
        Some(batches_from(shard, &segment, position, BATCHES_BYTES))
    }

    /// Copies closed `shard`'s log from `source` into this store, where it must be empty (or
    /// already the same copy: then nothing is done). Returns what was copied. Once this
    /// returns, the copy is checkpointed; a copy that fails leaves nothing behind.
    pub async fn import_shard(
        &self,
        shard: ShardKey,
        source: &impl SegmentSource,
    ) -> Result<ShardCheckpoint, super::StoreError> {
        use super::StoreError;
        let here = self.listing(shard).ok_or(StoreError::UnknownShard(shard))?;
        let wanted = source.listing().await?;
        if here == wanted {
            return Ok(wanted);
        }
        if self.holds_records(shard) {
            return Err(StoreError::Corrupt(format!(
                "shard {shard:?} already holds other records here: a copy is not taken over them"
            )));
        }
        let dir = super::checkpoint::shard_dir(&self.dir, shard);
        let mut written: Vec<ImportedSegment> = Vec::with_capacity(wanted.segments.len());
        let copied = self
            .copy_segments(shard, &dir, &wanted, source, &mut written)
            .await;
        let paths: Vec<PathBuf> = written.iter().map(|s| s.path.clone()).collect();
        let adopted = match copied {
            Ok(()) => {
                let listing = wanted.clone();
                self.ask(|reply| super::writer::Command::AdoptImport {
                    shard,
                    listing,
                    segments: written,
                    reply,
                })
                .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = adopted {
            for path in paths {
                let _ = remove_segment(self.fs.as_ref(), &path);
            }
            return Err(error);
        }
        Ok(wanted)
    }

    async fn copy_segments(
        &self,
        shard: ShardKey,
        dir: &Path,
        wanted: &ShardCheckpoint,
        source: &impl SegmentSource,
        written: &mut Vec<ImportedSegment>,
    ) -> Result<(), super::StoreError> {
        for expected in &wanted.segments {
            let fs = self.fs.clone();
            let (dir, expected_copy) = (dir.to_path_buf(), expected.clone());
            let mut import =
                blocking(move || SegmentImport::create(fs.as_ref(), &dir, shard, expected_copy))
                    .await?;
            while !import.complete() {
                let step = match source
                    .batches(expected.base_offset, import.position())
                    .await
                {
                    Ok(bytes) => {
                        blocking(move || {
                            let result = import.append(&bytes);
                            Ok((import, result))
                        })
                        .await
                    }
                    Err(error) => Ok((import, Err(error))),
                };
                let (back, result) = step?;
                import = back;
                if let Err(error) = result {
                    import.abandon(self.fs.as_ref());
                    return Err(error.into());
                }
            }
            let fs = self.fs.clone();
            written.push(blocking(move || import.finish(fs.as_ref())).await?);
        }
        Ok(())
    }

    /// Empties `shard` here, because another pod holds its log now; readers that already
    /// hold the log finish on its files.
    pub async fn forget_shard(&self, shard: ShardKey) -> Result<(), super::StoreError> {
        let log = self
            .ask(|reply| super::writer::Command::ForgetShard { shard, reply })
            .await?;
        self.logs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(shard, log);
        Ok(())
    }
}
