//! The checkpoint: each shard's durable segments and next offset, and the first journal
//! generation recovery must replay. Written atomically; everything it names is synced first.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fs::FileSystem;
use super::log::{IndexEntry, ShardKey, ShardView};

/// File name of the checkpoint in the data directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// A durable segment as the checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCheckpoint {
    /// Offset of the segment's first record.
    pub base_offset: u64,
    /// Offset one past its last durable record.
    pub end_offset: u64,
    /// Durable bytes; anything after is cut at recovery.
    pub len: u64,
    /// Arrival time of its newest durable batch.
    pub last_arrival_ms: u64,
}

/// A shard as the checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// Which shard.
    pub key: ShardKey,
    /// Offset one past the last durable record.
    pub next_offset: u64,
    /// Arrival time of the newest durable record.
    pub last_arrival_ms: u64,
    /// Segments, oldest first.
    pub segments: Vec<SegmentCheckpoint>,
}

impl ShardCheckpoint {
    /// What `view` holds of shard `key`: where it ends, its newest arrival, its segments.
    pub fn of(key: ShardKey, view: &ShardView) -> Self {
        Self {
            key,
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
}

/// The whole checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// First journal generation recovery replays.
    pub journal_generation: u64,
    /// Every shard with durable data.
    pub shards: Vec<ShardCheckpoint>,
}

/// Folder of a shard's segment files.
pub fn shard_dir(data_dir: &Path, key: ShardKey) -> PathBuf {
    data_dir
        .join("streams")
        .join(key.stream_key.to_string())
        .join(key.shard_index.to_string())
}

/// Path of the segment that starts at `base_offset`.
pub fn segment_path(shard_dir: &Path, base_offset: u64) -> PathBuf {
    shard_dir.join(format!("{base_offset:020}.seg"))
}

/// Path of a segment's persisted sparse index.
pub fn index_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("idx")
}

/// Removes a segment's file and its index file.
pub fn remove_segment(fs: &dyn FileSystem, segment: &Path) -> std::io::Result<()> {
    fs.remove_file(segment)?;
    fs.remove_file(&index_path(segment))
}

/// Path of a journal generation.
pub fn journal_path(data_dir: &Path, generation: u64) -> PathBuf {
    data_dir
        .join("journal")
        .join(format!("{generation:020}.log"))
}

/// Size of one persisted index entry.
pub const INDEX_ENTRY_LEN: usize = 24;

/// Encodes index entries for a segment's `.idx` file.
pub fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * INDEX_ENTRY_LEN);
    for entry in entries {
        out.extend_from_slice(&entry.offset.to_le_bytes());
        out.extend_from_slice(&entry.arrival_ms.to_le_bytes());
        out.extend_from_slice(&entry.position.to_le_bytes());
    }
    out
}

/// Decodes a `.idx` file, keeping entries that start before `durable_len`; a torn last
/// entry is ignored.
pub fn decode_index(bytes: &[u8], durable_len: u64) -> Vec<IndexEntry> {
    bytes
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|chunk| {
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&chunk[at..at + 8]);
                u64::from_le_bytes(w)
            };
            IndexEntry {
                offset: word(0),
                arrival_ms: word(8),
                position: word(16),
            }
        })
        .take_while(|entry| entry.position < durable_len)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_round_trip_and_stop_at_the_durable_length() {
        let entries = [
            IndexEntry {
                offset: 0,
                arrival_ms: 5,
                position: 0,
            },
            IndexEntry {
                offset: 700,
                arrival_ms: 9,
                position: 70_000,
            },
            IndexEntry {
                offset: 1400,
                arrival_ms: 12,
                position: 140_000,
            },
        ];
        let bytes = encode_index(&entries);
        assert_eq!(decode_index(&bytes, u64::MAX), entries);
        assert_eq!(decode_index(&bytes, 140_000), entries[..2]);
        assert_eq!(
            decode_index(&bytes[..bytes.len() - 3], u64::MAX),
            entries[..2]
        );
    }
}
