//! The delivery pipeline: one task per source partition (a shard of the source stream, or the
//! direct-put journal) reads, buffers, and delivers batch after batch, saving its progress
//! around each delivery; for a stream source, a coordinator starts shards as their parents
//! finish.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::batch::{Batch, BufferLimits, FlushReason, SourceRecord, process};
use super::destination::{Deliverer, DestinationError};
use super::journal::{Journal, JournalError};
use super::metrics::DeliveryMetrics;
use super::progress::{PendingBatch, ProgressError, ProgressFile};
use super::source::{
    Connection, IteratorStart, SourceError, StreamClient, compare_positions, first_position,
    ready_shards,
};
use crate::api::delivery::{Processing, StartingPosition};
use crate::broker::shard::wall_clock_ms;

/// The journal's partition name.
pub const JOURNAL_PARTITION: &str = "journal";
/// Shortest time between two GetRecords on one shard that is being caught up with (Kinesis
/// allows five a second), and the longest wait for the journal's next record.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Time between two GetRecords on a shard whose last read was empty: once a second, as
/// Firehose reads, leaving most of the shard's read quota to other readers.
const EMPTY_POLL: Duration = Duration::from_secs(1);
/// How often the coordinator lists shards.
const LIST_PERIOD: Duration = Duration::from_secs(10);
/// Pause after a failed read.
const READ_RETRY: Duration = Duration::from_secs(1);

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Progress could not be saved: nothing more is delivered until it can be.
    #[error(transparent)]
    Progress(#[from] ProgressError),
    /// A batch could not be delivered or set aside.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// A partition task panicked or was cancelled.
    #[error("a delivery task ended abnormally: {0}")]
    Task(String),
    /// The source's CA bundle could not be read.
    #[error("the source CA {0}")]
    SourceCa(String),
}

/// What every partition shares.
pub struct Pipeline {
    /// Saved progress.
    pub progress: ProgressFile,
    /// The destination.
    pub deliverer: Deliverer,
    /// Processing applied to each batch.
    pub processing: Processing,
    /// Buffering hints.
    pub limits: BufferLimits,
    /// Metrics.
    pub metrics: Arc<DeliveryMetrics>,
    /// The direct-put journal, for a direct-put source.
    pub journal: Option<Arc<Journal>>,
}

/// What one read returned.
struct Read {
    records: Vec<SourceRecord>,
    ended: bool,
    behind_ms: u64,
}

/// Reads one partition.
enum Reader {
    Shard {
        connection: Box<Connection>,
        shard: String,
        iterator: Option<String>,
        start: IteratorStart,
        last_call: Option<std::time::Instant>,
        last_was_empty: bool,
    },
    Journal {
        journal: Arc<Journal>,
        next: u64,
    },
}

impl Reader {
    fn seek(&mut self, to: IteratorStart) {
        match self {
            Self::Shard {
                iterator, start, ..
            } => {
                *iterator = None;
                *start = to;
            }
            Self::Journal { journal, next } => {
                let number = |p: &str| p.parse::<u64>().unwrap_or(0);
                *next = match to {
                    IteratorStart::At(p) => number(&p),
                    IteratorStart::After(p) => number(&p) + 1,
                    IteratorStart::Latest => journal.end_offset(),
                    IteratorStart::TrimHorizon | IteratorStart::Timestamp(_) => 0,
                };
            }
        }
    }

    async fn read(&mut self, wait: Duration) -> Result<Read, String> {
        match self {
            Self::Journal { journal, next } => {
                let (records, after) = journal
                    .read(*next, 10_000, wait)
                    .await
                    .map_err(|e: JournalError| e.to_string())?;
                let behind_ms = match records.first() {
                    Some(first) => wall_clock_ms().saturating_sub(first.arrival_ms),
                    None => 0,
                };
                *next = after.max(*next);
                Ok(Read {
                    records,
                    ended: false,
                    behind_ms,
                })
            }
            Self::Shard {
                connection,
                shard,
                iterator,
                start,
                last_call,
                last_was_empty,
            } => {
                if let Some(last) = last_call {
                    let gap = if *last_was_empty {
                        EMPTY_POLL
                    } else {
                        IDLE_POLL
                    };
                    let pause = gap.min(wait).saturating_sub(last.elapsed());
                    tokio::time::sleep(pause).await;
                }
                *last_call = Some(std::time::Instant::now());
                let current = match iterator.take() {
                    Some(current) => current,
                    None => connection
                        .iterator(shard, start)
                        .await
                        .map_err(|e: SourceError| e.to_string())?,
                };
                let page = match connection.get_records(&current).await {
                    Ok(page) => page,
                    // The iterator is re-made from the last position on the next read.
                    Err(error) if error.code() == Some("ExpiredIteratorException") => {
                        return Ok(Read {
                            records: Vec::new(),
                            ended: false,
                            behind_ms: 0,
                        });
                    }
                    Err(error) => {
                        *iterator = Some(current);
                        return Err(error.to_string());
                    }
                };
                if let Some(last) = page.records.last() {
                    *start = IteratorStart::After(last.position.clone());
                }
                *iterator = page.next.clone();
                *last_was_empty = page.records.is_empty();
                Ok(Read {
                    ended: page.next.is_none(),
                    behind_ms: page.behind_ms,
                    records: page.records,
                })
            }
        }
    }
}

impl Pipeline {
    async fn read_retrying(&self, name: &str, reader: &mut Reader, wait: Duration) -> Read {
        loop {
            match reader.read(wait).await {
                Ok(read) => {
                    self.metrics.behind(name, read.behind_ms);
                    return read;
                }
                Err(error) => {
                    tracing::warn!(partition = name, %error, "reading the source failed; retrying");
                    tokio::time::sleep(READ_RETRY).await;
                }
            }
        }
    }

    fn count_in(&self, name: &str, record: &SourceRecord) {
        self.metrics.records_in.inc();
        self.metrics.bytes_in.inc_by(record.data.len() as u64);
        self.metrics.buffer_bytes.add(record.data.len() as i64);
        self.metrics.buffered(name, record.arrival_ms);
    }

    /// Delivers a batch between saving its range and saving it delivered.
    async fn deliver(
        &self,
        name: &str,
        batch: Batch,
        reason: FlushReason,
    ) -> Result<(), WorkerError> {
        let Some(identity) = batch.identity() else {
            return Ok(());
        };
        let pending = PendingBatch {
            first: identity.first.clone(),
            last: identity.last.clone(),
        };
        self.progress
            .update(name, |p| p.pending = Some(pending))
            .await?;
        let processed = process(&batch.records, &self.processing);
        self.deliverer.deliver(&batch, &identity, processed).await?;
        self.progress
            .update(name, |p| {
                p.delivered = Some(identity.last.clone());
                p.pending = None;
            })
            .await?;
        self.metrics
            .batches
            .with_label_values(&[reason.as_str()])
            .inc();
        self.metrics.buffer_bytes.sub(batch.bytes as i64);
        self.metrics.drained(name);
        if let Some(journal) = &self.journal {
            let last = identity.last.parse::<u64>().unwrap_or(0);
            if let Err(error) = journal.delivered(last, batch.bytes as u64).await {
                tracing::warn!(%error, "trimming the delivered part of the journal");
            }
        }
        tracing::debug!(
            partition = name,
            records = batch.records.len(),
            bytes = batch.bytes,
            reason = reason.as_str(),
            "delivered a batch"
        );
        Ok(())
    }

    /// Redelivers the batch a previous run sealed but may not have delivered: the same range,
    /// so the same object name.
    async fn redeliver(
        &self,
        name: &str,
        reader: &mut Reader,
        pending: PendingBatch,
    ) -> Result<(), WorkerError> {
        reader.seek(IteratorStart::At(pending.first.clone()));
        let mut batch = Batch::new(name);
        loop {
            let read = self.read_retrying(name, reader, IDLE_POLL).await;
            let mut reached = false;
            for record in read.records {
                match compare_positions(&record.position, &pending.last) {
                    Ordering::Greater => {
                        reached = true;
                        break;
                    }
                    order => {
                        reached = order == Ordering::Equal;
                        self.count_in(name, &record);
                        batch.push(record, wall_clock_ms());
                        if reached {
                            break;
                        }
                    }
                }
            }
            if reached || read.ended {
                break;
            }
        }
        tracing::info!(partition = name, first = %pending.first, last = %pending.last, "redelivering the batch in flight when the worker stopped");
        self.deliver(name, batch, FlushReason::SourceEnded).await?;
        reader.seek(IteratorStart::After(pending.last));
        Ok(())
    }

    /// Reads and delivers one partition until it ends (a closed shard), forever otherwise.
    async fn run_partition(
        &self,
        name: String,
        mut reader: Reader,
        first: IteratorStart,
    ) -> Result<(), WorkerError> {
        let progress = self.progress.partition(&name).await;
        if progress.finished {
            return Ok(());
        }
        match (progress.pending, progress.delivered) {
            (Some(pending), _) => self.redeliver(&name, &mut reader, pending).await?,
            (None, Some(delivered)) => reader.seek(IteratorStart::After(delivered)),
            (None, None) => reader.seek(first),
        }
        let mut batch = Batch::new(name.clone());
        let mut reading = false;
        loop {
            let now = wall_clock_ms();
            if let Some(reason) = batch.due(now, self.limits) {
                let full = std::mem::replace(&mut batch, Batch::new(name.clone()));
                self.deliver(&name, full, reason).await?;
                continue;
            }
            let wait = batch
                .deadline_ms(self.limits)
                .map_or(IDLE_POLL * 5, |deadline| {
                    Duration::from_millis(deadline.saturating_sub(now))
                });
            let read = self.read_retrying(&name, &mut reader, wait).await;
            if !reading {
                // Positioned and read once: from here on nothing new is skipped.
                self.metrics.partitions.inc();
                reading = true;
            }
            for record in read.records {
                self.count_in(&name, &record);
                batch.push(record, wall_clock_ms());
                if batch.due(wall_clock_ms(), self.limits) == Some(FlushReason::Size) {
                    let full = std::mem::replace(&mut batch, Batch::new(name.clone()));
                    self.deliver(&name, full, FlushReason::Size).await?;
                }
            }
            if read.ended {
                let rest = std::mem::replace(&mut batch, Batch::new(name.clone()));
                self.deliver(&name, rest, FlushReason::SourceEnded).await?;
                self.progress.update(&name, |p| p.finished = true).await?;
                self.metrics.forget(&name);
                self.metrics.partitions.dec();
                tracing::info!(partition = %name, "shard read to its end and delivered");
                return Ok(());
            }
        }
    }

    /// Delivers the direct-put journal, forever.
    pub async fn run_journal(self: Arc<Self>) -> Result<(), WorkerError> {
        let Some(journal) = self.journal.clone() else {
            return Ok(());
        };
        let reader = Reader::Journal { journal, next: 0 };
        self.run_partition(JOURNAL_PARTITION.into(), reader, IteratorStart::TrimHorizon)
            .await
    }

    /// Delivers every shard of the source stream, parents before children, forever.
    pub async fn run_stream(
        self: Arc<Self>,
        client: StreamClient,
        position: StartingPosition,
        timestamp_ms: Option<u64>,
    ) -> Result<(), WorkerError> {
        let mut running = BTreeSet::new();
        let mut tasks: JoinSet<(String, Result<(), WorkerError>)> = JoinSet::new();
        loop {
            match client.list_shards().await {
                Ok(shards) => {
                    let finished: BTreeSet<String> = self
                        .progress
                        .snapshot()
                        .await
                        .partitions
                        .into_iter()
                        .filter(|(_, p)| p.finished)
                        .map(|(name, _)| name)
                        .collect();
                    for shard_id in ready_shards(&shards, &finished, &running) {
                        let Some(info) = shards.iter().find(|s| s.shard_id == shard_id) else {
                            continue;
                        };
                        let first = match first_position(info, &shards, position) {
                            StartingPosition::TrimHorizon => IteratorStart::TrimHorizon,
                            StartingPosition::Latest => IteratorStart::Latest,
                            StartingPosition::AtTimestamp => {
                                IteratorStart::Timestamp(timestamp_ms.unwrap_or(0))
                            }
                        };
                        let reader = Reader::Shard {
                            connection: Box::new(client.connect()),
                            shard: shard_id.clone(),
                            iterator: None,
                            start: first.clone(),
                            last_call: None,
                            last_was_empty: false,
                        };
                        running.insert(shard_id.clone());
                        let pipeline = self.clone();
                        tasks.spawn(async move {
                            let result = pipeline
                                .run_partition(shard_id.clone(), reader, first)
                                .await;
                            (shard_id, result)
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(stream = client.stream(), %error, "listing the source stream's shards failed; retrying");
                }
            }
            let ended = tokio::select! {
                ended = tasks.join_next(), if !tasks.is_empty() => ended,
                _ = tokio::time::sleep(LIST_PERIOD) => None,
            };
            if let Some(ended) = ended {
                let (shard, result) = ended.map_err(|e| WorkerError::Task(e.to_string()))?;
                result?;
                running.remove(&shard);
            }
        }
    }
}
