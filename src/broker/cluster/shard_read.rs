//! Reading shards that live on other pods, for the queues pod 0 keeps: a queue's delivery
//! state lives on pod 0 (every queue call is served there), and its records are read from
//! each shard's owner over the internal port — where a queue's cursor starts, the records
//! from an offset, and a long wait until any of a set of shards has records past given
//! offsets (so a long-polling receive wakes when a record is committed on another pod).
//!
//! A shard this pod owns is read from its own store, whichever pod asked.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::shard::ReadLimits;
use crate::broker::state::{Broker, LiveShard};

/// The internal path that answers [`ShardQuery`]s.
pub const QUERY_PATH: &str = "/cluster/shard-query";

/// Most record bytes one read returns (a first record larger than this is still returned).
pub const MAX_READ_BYTES: u64 = 10 * 1024 * 1024;

/// Longest a wait is held open by the owner; the asker asks again after it.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// What pod 0 asks of a shard's owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "query")]
pub enum ShardQuery {
    /// Where a reader starting now at the tip (`at_ms` absent) or at a time starts.
    Position {
        /// The stream's key.
        stream_key: u32,
        /// The shard's index.
        shard: u32,
        /// The arrival time to start at; the tip when absent.
        at_ms: Option<u64>,
    },
    /// Records from an offset.
    Read {
        /// The stream's key.
        stream_key: u32,
        /// The shard's index.
        shard: u32,
        /// The first offset wanted.
        offset: u64,
        /// Most records.
        limit: u32,
        /// Most record bytes (a first record larger than this is still returned).
        max_bytes: u64,
        /// Records that arrived before this time are past retention and skipped.
        not_before_ms: u64,
    },
    /// Answers once any listed shard holds a record at or past its offset, or after
    /// `wait_ms`.
    Wait {
        /// The stream's key.
        stream_key: u32,
        /// Shard indexes and the offset each must reach.
        shards: Vec<(u32, u64)>,
        /// Longest wait, in milliseconds.
        wait_ms: u64,
    },
}

impl ShardQuery {
    /// How long the owner holds the query before answering, by design: a wait's longest.
    pub fn held_for(&self) -> std::time::Duration {
        match self {
            Self::Wait { wait_ms, .. } => std::time::Duration::from_millis(*wait_ms),
            Self::Position { .. } | Self::Read { .. } => std::time::Duration::ZERO,
        }
    }
}

/// A record read, copied out of the shard's store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopiedRecord {
    /// Its offset in the shard.
    pub offset: u64,
    /// Its partition key.
    pub partition_key: String,
    /// Its data, base64 between pods.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    /// When its batch arrived.
    pub arrival_ms: u64,
}

/// Records read and where reading stopped.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReadAnswer {
    /// The records, by offset.
    pub records: Vec<CopiedRecord>,
    /// Where the next read starts.
    pub next_offset: u64,
}

/// An owner's answer to a [`ShardQuery`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryAnswer {
    /// A position's offset.
    Offset(u64),
    /// A read's records.
    Read(ReadAnswer),
    /// A wait ended: whether a listed shard has records past its offset.
    Waited(bool),
}

mod base64_bytes {
    use super::{Engine, STANDARD};

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: &str = serde::Deserialize::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

fn read_failed(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "a shard read failed");
    ApiError::new(
        ErrorKind::InternalFailure,
        "The broker could not read the shard.",
    )
}

/// Reads up to `limit` records of a shard in this pod's store from `offset`.
pub fn read_here(
    shard: &LiveShard,
    offset: u64,
    limit: u32,
    max_bytes: u64,
    not_before_ms: u64,
) -> Result<ReadAnswer, ApiError> {
    let outcome = shard
        .log
        .read(
            offset,
            ReadLimits {
                max_records: limit,
                max_bytes,
                not_before_ms,
            },
        )
        .map_err(read_failed)?;
    let records = outcome
        .records()
        .map(|read| {
            let read = read.map_err(read_failed)?;
            Ok(CopiedRecord {
                offset: read.offset,
                partition_key: read.record.partition_key.to_owned(),
                data: read.record.data.to_vec(),
                arrival_ms: read.arrival_ms,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(ReadAnswer {
        records,
        next_offset: outcome.next_offset,
    })
}

/// Where a reader of a shard in this pod's store starts: its tip, or the first record at
/// or after `at_ms`.
pub fn position_here(shard: &LiveShard, at_ms: Option<u64>) -> Result<u64, ApiError> {
    match at_ms {
        None => Ok(shard.log.tip().0),
        Some(at) => shard.log.offset_at_time(at).map_err(read_failed),
    }
}

/// The refusal of a query for a shard this pod does not hold (yet: a child shard reaches its
/// owner's replica within a catalog fetch).
fn not_here(stream_key: u32, shard: u32) -> ApiError {
    ApiError::new(
        ErrorKind::ServiceUnavailable,
        format!("This pod does not hold shard {shard} of stream {stream_key}; retry."),
    )
}

/// The shard with `index` of the stream with `stream_key`, if this pod owns it.
fn owned_shard(
    broker: &Broker,
    stream_key: u32,
    index: u32,
) -> Option<(std::sync::Arc<crate::broker::state::LiveStream>, usize)> {
    let here = broker.cluster.get().map_or(super::HOME, |c| c.ordinal);
    let stream = broker
        .streams()
        .into_iter()
        .find(|s| s.record.key == stream_key)?;
    let position = stream
        .shards
        .iter()
        .position(|s| s.key.shard_index == index && s.owner == here)?;
    Some((stream, position))
}

/// Answers a query on the owner.
pub async fn answer_here(broker: &Broker, query: ShardQuery) -> Result<QueryAnswer, ApiError> {
    match query {
        ShardQuery::Position {
            stream_key,
            shard,
            at_ms,
        } => {
            let (stream, at) = owned_shard(broker, stream_key, shard)
                .ok_or_else(|| not_here(stream_key, shard))?;
            position_here(&stream.shards[at], at_ms).map(QueryAnswer::Offset)
        }
        ShardQuery::Read {
            stream_key,
            shard,
            offset,
            limit,
            max_bytes,
            not_before_ms,
        } => {
            let (stream, at) = owned_shard(broker, stream_key, shard)
                .ok_or_else(|| not_here(stream_key, shard))?;
            tokio::task::spawn_blocking(move || {
                read_here(&stream.shards[at], offset, limit, max_bytes, not_before_ms)
            })
            .await
            .map_err(read_failed)?
            .map(QueryAnswer::Read)
        }
        ShardQuery::Wait {
            stream_key,
            shards,
            wait_ms,
        } => {
            let owned: Vec<_> = shards
                .iter()
                .filter_map(|&(index, offset)| {
                    owned_shard(broker, stream_key, index).map(|found| (found, offset))
                })
                .collect();
            let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
            Ok(QueryAnswer::Waited(wait_for_records(&owned, wait).await))
        }
    }
}

type OwnedShard = (std::sync::Arc<crate::broker::state::LiveStream>, usize);

/// Waits until one of `shards` has a record at or past its offset, at most `wait`.
async fn wait_for_records(shards: &[(OwnedShard, u64)], wait: Duration) -> bool {
    let reached = || {
        shards
            .iter()
            .any(|((stream, at), offset)| stream.shards[*at].log.tip().0 > *offset)
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered before looking, so a commit in between still wakes this wait.
        let mut wakeups: Vec<_> = shards
            .iter()
            .map(|((stream, at), _)| Box::pin(stream.shards[*at].log.committed.notified()))
            .collect();
        for wakeup in &mut wakeups {
            wakeup.as_mut().enable();
        }
        if reached() {
            return true;
        }
        if wakeups.is_empty() {
            tokio::time::sleep_until(deadline).await;
            return false;
        }
        tokio::select! {
            _ = futures::future::select_all(wakeups) => {}
            _ = tokio::time::sleep_until(deadline) => return reached(),
        }
    }
}

/// Serves a query that arrived on the internal port.
pub async fn serve(broker: &Broker, body: &[u8]) -> (u16, Vec<u8>) {
    let query: ShardQuery = match serde_json::from_slice(body) {
        Ok(query) => query,
        Err(error) => return (400, error.to_string().into_bytes()),
    };
    match answer_here(broker, query).await {
        Ok(answer) => match serde_json::to_vec(&answer) {
            Ok(bytes) => (200, bytes),
            Err(error) => (500, error.to_string().into_bytes()),
        },
        Err(error) if error.kind == ErrorKind::ServiceUnavailable => {
            (503, error.message.into_bytes())
        }
        Err(error) => (500, error.message.into_bytes()),
    }
}

/// Asks pod `owner` a query; a pod that cannot be reached, or does not hold the shard yet,
/// is a retryable `ServiceUnavailable`.
pub async fn ask(
    cluster: &Cluster,
    owner: u32,
    query: &ShardQuery,
) -> Result<QueryAnswer, ApiError> {
    let unavailable = |message: String| {
        ApiError::new(
            ErrorKind::ServiceUnavailable,
            format!("The pod that holds the shard did not answer ({message}); retry."),
        )
    };
    let body = serde_json::to_vec(query).map_err(read_failed)?;
    let builder =
        http::Request::post(QUERY_PATH).header(http::header::CONTENT_TYPE, "application/json");
    let limit = cluster.answer_limit + query.held_for();
    let (status, bytes) = cluster
        .exchange_within(owner, builder, QUERY_PATH, Bytes::from(body), Some(limit))
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    if !status.is_success() {
        return Err(unavailable(format!(
            "pod {owner} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    serde_json::from_slice(&bytes).map_err(read_failed)
}

/// Where the records of a shard are read from, as seen by this pod.
pub fn is_here(broker: &Broker, shard: &LiveShard) -> bool {
    broker
        .cluster
        .get()
        .is_none_or(|c| c.ordinal == shard.owner)
}

/// Reads records of a shard on pod `owner`; `None` when the pod cannot be reached now, or
/// does not hold the shard yet.
pub async fn read_at(
    cluster: &Cluster,
    owner: u32,
    stream_key: u32,
    shard: u32,
    offset: u64,
    limit: u32,
    not_before_ms: u64,
) -> Option<ReadAnswer> {
    let query = ShardQuery::Read {
        stream_key,
        shard,
        offset,
        limit,
        max_bytes: MAX_READ_BYTES,
        not_before_ms,
    };
    match ask(cluster, owner, &query).await {
        Ok(QueryAnswer::Read(answer)) => Some(answer),
        Ok(other) => {
            tracing::error!(?other, owner, "a pod answered a read with something else");
            None
        }
        Err(error) => {
            tracing::debug!(%error, owner, shard, "a shard on another pod could not be read");
            None
        }
    }
}

/// Where a reader of `shard` starting now at its tip (or at `at_ms`) starts, here or at its
/// owner.
pub async fn position(
    broker: &Broker,
    stream_key: u32,
    shard: &LiveShard,
    at_ms: Option<u64>,
) -> Result<u64, ApiError> {
    let cluster = match broker.cluster.get() {
        Some(cluster) if cluster.ordinal != shard.owner => cluster,
        _ => return position_here(shard, at_ms),
    };
    let query = ShardQuery::Position {
        stream_key,
        shard: shard.key.shard_index,
        at_ms,
    };
    match ask(cluster, shard.owner, &query).await? {
        QueryAnswer::Offset(offset) => Ok(offset),
        other => Err(read_failed(format!("unexpected answer {other:?}"))),
    }
}

/// How long to hold off after a wait on a pod that did not answer, so a receive does not
/// ask it in a tight loop.
const UNANSWERED_BACKOFF: Duration = Duration::from_secs(1);

/// A future that ends when pod `owner` says one of `shards` has records past its offset, or
/// its wait (at most `wait`) ended; after [`UNANSWERED_BACKOFF`] when the pod did not answer.
pub fn wait_at(
    cluster: std::sync::Arc<Cluster>,
    owner: u32,
    stream_key: u32,
    shards: Vec<(u32, u64)>,
    wait: Duration,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let query = ShardQuery::Wait {
            stream_key,
            shards,
            wait_ms: wait.as_millis() as u64,
        };
        if let Err(error) = ask(&cluster, owner, &query).await {
            tracing::debug!(%error, owner, "waiting for records on another pod failed");
            tokio::time::sleep(UNANSWERED_BACKOFF.min(wait)).await;
        }
    })
}
