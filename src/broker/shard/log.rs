//! What readers see of a shard: its committed segments with their sparse indexes, and the
//! read path over them (`pread` in chunks, checksums verified, retention applied).
//!
//! The writer publishes into a [`ShardLog`] after each commit; readers take its lock only to
//! copy what they need, never across I/O.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::batch::{BatchError, BatchHeader, HEADER_LEN, RecordRef, records, verify_body};
use super::fs::ReadFile;

/// Bytes of log between two sparse index entries.
pub const INDEX_STRIDE: u64 = 64 * 1024;
/// Of a sealed segment's index entries, one in this many stays in memory (one per MiB of
/// log), so memory stays small however much a shard holds; the `.idx` file keeps them all.
pub const SEALED_INDEX_THINNING: usize = 16;

/// The in-memory index of a sealed segment: every [`SEALED_INDEX_THINNING`]th entry, always
/// keeping the first.
pub fn thin_index(index: &[IndexEntry]) -> Vec<IndexEntry> {
    index
        .iter()
        .step_by(SEALED_INDEX_THINNING)
        .copied()
        .collect()
}
const READ_CHUNK: usize = 256 * 1024;

/// Identifies a shard across the broker: its stream's key and its index.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ShardKey {
    /// The stream's internal key.
    pub stream_key: u32,
    /// The shard's index in its stream.
    pub shard_index: u32,
}

/// One sparse index entry: where a batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// The batch's base offset.
    pub offset: u64,
    /// The batch's arrival time.
    pub arrival_ms: u64,
    /// The batch's position in its segment file.
    pub position: u64,
}

/// A committed segment as readers see it.
#[derive(Clone)]
pub struct SegmentView {
    /// Offset of the segment's first record.
    pub base_offset: u64,
    /// Offset one past the segment's last committed record.
    pub end_offset: u64,
    /// Committed bytes.
    pub len: u64,
    /// Arrival time of the newest committed batch.
    pub last_arrival_ms: u64,
    /// The file, for positional reads.
    pub file: Arc<dyn ReadFile>,
    /// Sparse index, ascending in offset, position and arrival time.
    pub index: Vec<IndexEntry>,
    /// The segment's path.
    pub path: PathBuf,
}

/// A shard's committed state.
#[derive(Clone, Default)]
pub struct ShardView {
    /// Offset one past the last committed record.
    pub next_offset: u64,
    /// Arrival time of the newest committed record (0 when empty).
    pub last_arrival_ms: u64,
    /// Segments, oldest first.
    pub segments: Vec<SegmentView>,
}

impl ShardView {
    /// Whether the shard holds no record here and never did.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.next_offset == 0
    }
}

/// A shard's log as readers share it.
pub struct ShardLog {
    /// Which shard.
    pub key: ShardKey,
    view: RwLock<ShardView>,
    /// Woken after every commit, for subscribers waiting at the tip.
    pub committed: tokio::sync::Notify,
}

/// One batch read back, with the records of it a reader asked for.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    /// The batch's header.
    pub header: BatchHeader,
    /// The verified body.
    pub body: Bytes,
    /// Records at the start of the body to skip (they precede the requested offset).
    pub skip: u32,
    /// Records to return after the skipped ones.
    pub take: u32,
}

/// The outcome of a read.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    /// Batches in offset order.
    pub batches: Vec<ReadBatch>,
    /// Offset after the last record returned (or where reading should resume).
    pub next_offset: u64,
    /// Arrival time of the newest committed record when the read began.
    pub last_arrival_ms: u64,
    /// Offset one past the last committed record when the read began.
    pub committed_offset: u64,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("reading a segment: {0}")]
    Io(#[from] io::Error),
    /// Stored bytes do not check out.
    #[error("corrupt batch at offset {offset}: {source}")]
    Corrupt {
        /// The offset being read.
        offset: u64,
        /// What was wrong.
        source: BatchError,
    },
}

/// Limits of one read.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Most records to return.
    pub max_records: u32,
    /// Most data and key bytes to return (a first record larger than this is still returned).
    pub max_bytes: u64,
    /// Records that arrived before this time are past retention and skipped.
    pub not_before_ms: u64,
}

/// A record a read returned: its offset, its batch's arrival time, and the record.
pub struct ReadRecord<'a> {
    /// The record's offset in its shard.
    pub offset: u64,
    /// When its batch arrived, epoch milliseconds.
    pub arrival_ms: u64,
    /// Its partition key and data.
    pub record: RecordRef<'a>,
}

impl ReadOutcome {
    /// The records the read returned, in offset order.
    pub fn records(&self) -> impl Iterator<Item = Result<ReadRecord<'_>, BatchError>> {
        self.batches.iter().flat_map(|batch| {
            records(&batch.body)
                .skip(batch.skip as usize)
                .take(batch.take as usize)
                .enumerate()
                .map(move |(i, record)| {
                    record.map(|record| ReadRecord {
                        offset: batch.header.base_offset + u64::from(batch.skip) + i as u64,
                        arrival_ms: batch.header.arrival_ms,
                        record,
                    })
                })
        })
    }
}

impl ShardLog {
    /// A shard log with the given committed state.
    pub fn new(key: ShardKey, view: ShardView) -> Self {
        Self {
            key,
            view: RwLock::new(view),
            committed: tokio::sync::Notify::new(),
        }
    }

    /// The committed state, for reading.
    pub fn view(&self) -> RwLockReadGuard<'_, ShardView> {
        self.view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The committed state, for the writer to publish into.
    pub fn view_mut(&self) -> RwLockWriteGuard<'_, ShardView> {
        self.view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offset one past the last committed record, and the newest arrival time.
    pub fn tip(&self) -> (u64, u64) {
        let view = self.view();
        (view.next_offset, view.last_arrival_ms)
    }

    /// The first offset of the first batch that arrived at or after `arrival_ms`, or the tip.
    pub fn offset_at_time(&self, arrival_ms: u64) -> Result<u64, ReadError> {
        let (segments, tip) = {
            let view = self.view();
            (view.segments.clone(), view.next_offset)
        };
        let Some(segment) = segments.iter().find(|s| s.last_arrival_ms >= arrival_ms) else {
            return Ok(tip);
        };
        let start = segment
            .index
            .partition_point(|e| e.arrival_ms < arrival_ms)
            .saturating_sub(1);
        let mut reader = ChunkReader::new(segment);
        let mut position = segment.index.get(start).map_or(0, |e| e.position);
        while position < segment.len {
            let header = reader.header(position)?;
            if header.arrival_ms >= arrival_ms {
                return Ok(header.base_offset);
            }
            position += header.total_len();
        }
        Ok(segment.end_offset)
    }

    /// Reads committed records from `offset` within `limits`.
    pub fn read(&self, offset: u64, limits: ReadLimits) -> Result<ReadOutcome, ReadError> {
        let (segments, committed_offset, last_arrival_ms) = {
            let view = self.view();
            let first = view.segments.partition_point(|s| s.end_offset <= offset);
            (
                view.segments[first..].to_vec(),
                view.next_offset,
                view.last_arrival_ms,
            )
        };
        let mut outcome = ReadOutcome {
            batches: Vec::new(),
            next_offset: offset.max(segments.first().map_or(committed_offset, |s| s.base_offset)),
            last_arrival_ms,
            committed_offset,
        };
        let (mut records, mut bytes) = (0u32, 0u64);
        'segments: for segment in &segments {
            let entry = segment
                .index
                .partition_point(|e| e.offset <= outcome.next_offset);
            let mut position = segment
                .index
                .get(entry.wrapping_sub(1))
                .map_or(0, |e| e.position);
            let mut reader = ChunkReader::new(segment);
            while position < segment.len {
                let header = reader.header(position)?;
                position += header.total_len();
                if header.end_offset() <= outcome.next_offset {
                    continue;
                }
                if header.arrival_ms < limits.not_before_ms {
                    outcome.next_offset = header.end_offset();
                    continue;
                }
                let body = reader.body(position - u64::from(header.body_len), &header)?;
                let skip = outcome.next_offset.saturating_sub(header.base_offset) as u32;
                let mut take = 0u32;
                for record in super::batch::records(&body).skip(skip as usize) {
                    let record = record.map_err(|source| ReadError::Corrupt {
                        offset: outcome.next_offset,
                        source,
                    })?;
                    let size = (record.data.len() + record.partition_key.len()) as u64;
                    if records >= limits.max_records
                        || (records > 0 && bytes + size > limits.max_bytes)
                    {
                        break;
                    }
                    records += 1;
                    bytes += size;
                    take += 1;
                }
                if take > 0 {
                    outcome.next_offset = header.base_offset + u64::from(skip + take);
                    outcome.batches.push(ReadBatch {
                        header,
                        body,
                        skip,
                        take,
                    });
                }
                if skip + take < header.record_count {
                    break 'segments;
                }
            }
        }
        Ok(outcome)
    }
}

/// Reads a segment in large chunks so that small batches cost no syscall each.
struct ChunkReader<'a> {
    segment: &'a SegmentView,
    chunk: Bytes,
    chunk_start: u64,
}

impl<'a> ChunkReader<'a> {
    fn new(segment: &'a SegmentView) -> Self {
        Self {
            segment,
            chunk: Bytes::new(),
            chunk_start: 0,
        }
    }

    fn slice(&mut self, position: u64, len: usize) -> Result<Bytes, ReadError> {
        let end = position + len as u64;
        if end > self.segment.len {
            return Err(ReadError::Corrupt {
                offset: self.segment.base_offset,
                source: BatchError::Truncated,
            });
        }
        let covered =
            position >= self.chunk_start && end <= self.chunk_start + self.chunk.len() as u64;
        if !covered {
            let want = (len.max(READ_CHUNK) as u64).min(self.segment.len - position) as usize;
            let mut buf = vec![0u8; want];
            self.segment.file.read_exact_at(&mut buf, position)?;
            self.chunk = Bytes::from(buf);
            self.chunk_start = position;
        }
        let at = (position - self.chunk_start) as usize;
        Ok(self.chunk.slice(at..at + len))
    }

    fn header(&mut self, position: u64) -> Result<BatchHeader, ReadError> {
        let bytes = self.slice(position, HEADER_LEN)?;
        BatchHeader::decode(&bytes).map_err(|source| ReadError::Corrupt {
            offset: self.segment.base_offset,
            source,
        })
    }

    fn body(&mut self, position: u64, header: &BatchHeader) -> Result<Bytes, ReadError> {
        let body = self.slice(position, header.body_len as usize)?;
        verify_body(header, &body).map_err(|source| ReadError::Corrupt {
            offset: header.base_offset,
            source,
        })?;
        Ok(body)
    }
}
