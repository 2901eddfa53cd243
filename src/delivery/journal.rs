//! The direct-put journal: records put through the Firehose API are appended to a one-shard
//! log of the broker's own storage (group-committed, fsynced journal) before they are
//! acknowledged, and the delivery reads them back by offset. Records not yet delivered are
//! counted, and past the limit a put is refused, so memory and disk stay bounded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::batch::SourceRecord;
use crate::broker::shard::batch::{self as log_batch, BodyBuilder};
use crate::broker::shard::fs::RealFs;
use crate::broker::shard::{
    AppendPart, Clock, ReadLimits, ShardKey, ShardLog, Store, StoreOptions,
};

/// The journal's one shard.
const JOURNAL_SHARD: ShardKey = ShardKey {
    stream_key: 0,
    shard_index: 0,
};
/// How long undelivered records are kept: Firehose keeps undeliverable data for a day; the
/// journal keeps it a week. Delivered records go sooner, a segment at a time.
const RETENTION_MS: u64 = 7 * 24 * 3_600_000;
/// Size of a journal segment: small, so delivered records free their space soon.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Why the journal refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// More undelivered bytes than the limit: the destination is behind.
    #[error(
        "{pending} bytes wait for delivery, the limit is {limit}: slow down until the destination catches up"
    )]
    Full {
        /// Undelivered bytes.
        pending: u64,
        /// The limit.
        limit: u64,
    },
    /// The storage failed.
    #[error("journal: {0}")]
    Store(String),
}

/// The direct-put journal.
pub struct Journal {
    store: Store,
    log: Arc<ShardLog>,
    pending_bytes: AtomicU64,
    limit_bytes: u64,
}

impl Journal {
    /// Opens (recovering) the journal in `dir`; puts are refused while more than
    /// `limit_bytes` wait for delivery.
    pub fn open(dir: &Path, limit_bytes: u64) -> Result<Self, JournalError> {
        let store_error = |e: crate::broker::shard::StoreError| JournalError::Store(e.to_string());
        let (store, _report) = Store::open(
            dir,
            Arc::new(RealFs),
            StoreOptions {
                segment_bytes: SEGMENT_BYTES,
                ..StoreOptions::default()
            },
            Clock::default(),
            &[JOURNAL_SHARD],
            HashMap::from([(JOURNAL_SHARD.stream_key, RETENTION_MS)]),
        )
        .map_err(store_error)?;
        let log = store
            .log(JOURNAL_SHARD)
            .ok_or_else(|| JournalError::Store("the journal's shard did not open".into()))?;
        Ok(Self {
            store,
            log,
            pending_bytes: AtomicU64::new(0),
            limit_bytes,
        })
    }

    /// Appends `records` atomically and durably; returns the offset of the first.
    pub async fn append(&self, records: &[Bytes]) -> Result<u64, JournalError> {
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        let pending = self.pending_bytes.load(Ordering::Relaxed);
        if pending > self.limit_bytes {
            return Err(JournalError::Full {
                pending,
                limit: self.limit_bytes,
            });
        }
        let mut body = BodyBuilder::with_capacity(bytes as usize + records.len() * 8);
        for record in records {
            body.push("", record);
        }
        let appended = self
            .store
            .append(vec![AppendPart {
                shard: JOURNAL_SHARD,
                body: body.finish(),
            }])
            .await
            .map_err(|e| JournalError::Store(e.to_string()))?;
        self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        appended
            .first()
            .map(|a| a.base_offset)
            .ok_or_else(|| JournalError::Store("the append landed nowhere".into()))
    }

    /// Counts the records through `last_offset`, `bytes` of data, as delivered, and deletes
    /// the journal's segments that hold only delivered records.
    pub async fn delivered(&self, last_offset: u64, bytes: u64) -> Result<(), JournalError> {
        let _ = self
            .pending_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(bytes))
            });
        self.store
            .trim_before(JOURNAL_SHARD, last_offset + 1)
            .await
            .map_err(|e| JournalError::Store(e.to_string()))
    }

    /// Counts the records from `offset` on as waiting for delivery (at start, after the last
    /// delivered one), so a restarted worker pushes back as the one before it did.
    pub async fn count_pending_from(&self, mut offset: u64) -> Result<u64, JournalError> {
        let mut bytes = 0;
        while offset < self.end_offset() {
            let (records, next) = self.read(offset, 10_000, Duration::ZERO).await?;
            if next <= offset {
                break;
            }
            bytes += records.iter().map(|r| r.data.len() as u64).sum::<u64>();
            offset = next;
        }
        self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Offset one past the last committed record.
    pub fn end_offset(&self) -> u64 {
        self.log.tip().0
    }

    /// Up to `max_records` records from `offset`, and the offset after them; waits up to
    /// `wait` for one to be committed when there is none yet.
    pub async fn read(
        &self,
        offset: u64,
        max_records: u32,
        wait: Duration,
    ) -> Result<(Vec<SourceRecord>, u64), JournalError> {
        let committed = self.log.committed.notified();
        if self.end_offset() <= offset {
            let _ = tokio::time::timeout(wait, committed).await;
        }
        let limits = ReadLimits {
            max_records,
            max_bytes: 16 * 1024 * 1024,
            not_before_ms: 0,
        };
        let outcome = self
            .log
            .read(offset, limits)
            .map_err(|e| JournalError::Store(e.to_string()))?;
        let mut records = Vec::new();
        for batch in &outcome.batches {
            let items = log_batch::records(&batch.body)
                .skip(batch.skip as usize)
                .take(batch.take as usize);
            for (index, item) in items.enumerate() {
                let item = item.map_err(|e| JournalError::Store(e.to_string()))?;
                let position = batch.header.base_offset + u64::from(batch.skip) + index as u64;
                records.push(SourceRecord {
                    position: position.to_string(),
                    arrival_ms: batch.header.arrival_ms,
                    data: batch.body.slice_ref(item.data),
                });
            }
        }
        Ok((records, outcome.next_offset))
    }

    /// Checkpoints and stops the storage writer.
    pub async fn shutdown(&self) -> Result<(), JournalError> {
        self.store
            .shutdown()
            .await
            .map_err(|e| JournalError::Store(e.to_string()))
    }
}
