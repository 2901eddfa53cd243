//! ReceiveQueueRecords and ReceiveDeadLetterQueueRecords: redeliveries first (records whose
//! visibility timeout passed), then records the queue has not handed out yet, read from the
//! stream's shards in turn; when there is none, the call long-polls until a shard commits a
//! record, a request makes one visible, an invisible one's timeout passes, or the wait ends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    DEFAULT_WAIT_S, MAX_RECEIVE, MAX_WAIT_S, active_queue, readable, record_json, shard_of,
};
use crate::broker::catalog::QueueRecord;
use crate::broker::cluster::shard_read::{
    CopiedRecord, MAX_READ_BYTES, ReadAnswer, is_here, read_at, read_here, wait_at,
};
use crate::broker::ops::{bounded, required};
use crate::broker::protocol::{ApiError, ErrorKind, json};
use crate::broker::queue::Queue;
use crate::broker::queue::state::Change;
use crate::broker::queue::state::RecordKey;
use crate::broker::state::{Broker, LiveStream};

/// Where the next receive starts its turn over the shards, so no shard is always first.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveInput {
    #[serde(rename = "QueueARN")]
    queue_arn: Option<String>,
    limit: Option<i64>,
    wait_time_seconds: Option<i64>,
    visibility_timeout_seconds: Option<i64>,
}

/// What one receive asks for.
struct Ask {
    limit: usize,
    visibility_ms: u64,
    dead_letters: bool,
}

pub(in crate::broker::ops) async fn receive(
    broker: &Arc<Broker>,
    body: &[u8],
    dead_letters: bool,
) -> Result<Vec<u8>, ApiError> {
    let input: ReceiveInput = json::decode(body)?;
    let arn = required(input.queue_arn, "queueARN")?;
    let limit =
        bounded(input.limit, "limit", 1, MAX_RECEIVE as i64)?.map_or(MAX_RECEIVE, |l| l as usize);
    let wait = bounded(
        input.wait_time_seconds,
        "waitTimeSeconds",
        1,
        MAX_WAIT_S as i64,
    )?
    .map_or(DEFAULT_WAIT_S, |w| w as u64);
    let visibility = bounded(
        input.visibility_timeout_seconds,
        "visibilityTimeoutSeconds",
        0,
        43_200,
    )?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let (stream, queue, state) = active_queue(broker, &arn)?;
        let ask = Ask {
            limit,
            visibility_ms: visibility.map_or(u64::from(queue.visibility_timeout_s), |v| v as u64)
                * 1000,
            dead_letters,
        };
        // Registered before looking, so a record committed meanwhile still wakes this call.
        let mut wakeups: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = stream
            .shards
            .iter()
            .filter(|s| !s.expired)
            .map(|s| Box::pin(s.log.committed.notified()))
            .collect();
        wakeups.push(Box::pin(state.changed.notified()));
        for wakeup in &mut wakeups {
            wakeup.as_mut().enable();
        }
        // Shards on other pods: their owners are asked to answer when a record arrives.
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
        if let Some(cluster) = broker.cluster.get() {
            let cursors: HashMap<u32, u64> = state.read(|current| {
                stream
                    .shards
                    .iter()
                    .map(|s| (s.key.shard_index, current.cursor(s.key.shard_index)))
                    .collect()
            });
            let mut by_owner: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
            for shard in stream.shards.iter().filter(|s| !is_here(broker, s)) {
                if readable(&stream, shard, &cursors)
                    && shard
                        .closed_at_offset
                        .is_none_or(|end| cursors[&shard.key.shard_index] < end)
                {
                    let index = shard.key.shard_index;
                    by_owner
                        .entry(shard.owner)
                        .or_default()
                        .push((index, cursors[&index]));
                }
            }
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            for (owner, shards) in by_owner {
                waits.push(wait_at(
                    cluster.clone(),
                    owner,
                    stream.record.key,
                    shards,
                    wait,
                ));
            }
        }
        // Records on other pods are read before the state is taken: nothing waits on the
        // network while holding it.
        let prefetched = prefetch(broker, &stream, &queue, &state, &ask).await;
        let found = {
            let (broker, stream, state) = (broker.clone(), stream.clone(), state.clone());
            tokio::task::spawn_blocking(move || {
                attempt(&broker, &stream, &queue, &state, &ask, prefetched)
            })
            .await
            .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))??
        };
        let now = tokio::time::Instant::now();
        if !found.is_empty() || now >= deadline {
            return Ok(json::encode(&json!({"QueueRecords": found})));
        }
        let now_ms = broker.clock.now_ms();
        let next_visible = state.read(|s| {
            // A record of the queue whose timeout passes may become a dead letter.
            let queue_side = s.next_visible_ms(false);
            if dead_letters {
                [queue_side, s.next_visible_ms(true)]
                    .into_iter()
                    .flatten()
                    .min()
            } else {
                queue_side
            }
        });
        let until = next_visible.map_or(deadline, |at| {
            deadline.min(now + Duration::from_millis(at.saturating_sub(now_ms)))
        });
        let remote = async {
            if waits.is_empty() {
                std::future::pending::<()>().await
            } else {
                futures::future::select_all(waits).await;
            }
        };
        tokio::select! {
            _ = futures::future::select_all(wakeups) => {}
            _ = remote => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}

/// Records of shards on other pods, read for one look at the queue.
#[derive(Default)]
struct Prefetched {
    /// New records by shard: the offset the read started at, the records, and where the
    /// read stopped.
    new: HashMap<u32, (u64, ReadAnswer)>,
    /// Records that may be picked for redelivery, by key.
    again: HashMap<RecordKey, CopiedRecord>,
}

/// Reads, from their owners, what a look at the queue may take from shards on other pods:
/// the records it would redeliver and each readable shard's records from its cursor. The
/// look itself decides again under the queue's state and takes only what still fits (a
/// concurrent receive may have taken some meanwhile).
async fn prefetch(
    broker: &Broker,
    stream: &LiveStream,
    queue: &QueueRecord,
    state: &Queue,
    ask: &Ask,
) -> Prefetched {
    let mut prefetched = Prefetched::default();
    let Some(cluster) = broker.cluster.get() else {
        return prefetched;
    };
    if stream.shards.iter().all(|s| is_here(broker, s)) {
        return prefetched;
    }
    let now = broker.clock.now_ms();
    let not_before = now.saturating_sub(stream.record.retention_ms());
    let (cursors, picked, room) = state.read(|current| {
        let cursors: HashMap<u32, u64> = stream
            .shards
            .iter()
            .map(|s| (s.key.shard_index, current.cursor(s.key.shard_index)))
            .collect();
        let (_, picked) = current.plan_redeliveries(
            now,
            not_before,
            queue.max_receive_count,
            ask.dead_letters,
            ask.limit,
        );
        (cursors, picked, current.has_room())
    });
    let key = stream.record.key;
    let again = picked.into_iter().filter_map(|record| {
        let shard = shard_of(stream, record.0).filter(|s| !is_here(broker, s))?;
        let owner = shard.owner;
        Some(async move {
            let read = read_at(cluster, owner, key, record.0, record.1, 1, not_before).await;
            (record, read)
        })
    });
    let new = stream
        .shards
        .iter()
        .filter(|shard| {
            !ask.dead_letters
                && room
                && !is_here(broker, shard)
                && readable(stream, shard, &cursors)
                && shard
                    .closed_at_offset
                    .is_none_or(|end| cursors[&shard.key.shard_index] < end)
        })
        .map(|shard| {
            let (index, owner, cursor) = (
                shard.key.shard_index,
                shard.owner,
                cursors[&shard.key.shard_index],
            );
            async move {
                let read = read_at(
                    cluster,
                    owner,
                    key,
                    index,
                    cursor,
                    ask.limit as u32,
                    not_before,
                )
                .await;
                (index, cursor, read)
            }
        });
    let (again, new) = futures::future::join(
        futures::future::join_all(again),
        futures::future::join_all(new),
    )
    .await;
    for (record, read) in again {
        if let Some(found) = read.and_then(|r| r.records.into_iter().next()) {
            prefetched.again.insert(record, found);
        }
    }
    for (index, cursor, read) in new {
        if let Some(read) = read {
            prefetched.new.insert(index, (cursor, read));
        }
    }
    prefetched
}

/// One look at the queue: picks, reads and receives what is visible now.
fn attempt(
    broker: &Broker,
    stream: &LiveStream,
    queue: &QueueRecord,
    state: &Queue,
    ask: &Ask,
    mut prefetched: Prefetched,
) -> Result<Vec<Value>, ApiError> {
    state.update(|current| {
        let now = broker.clock.now_ms();
        let not_before = now.saturating_sub(stream.record.retention_ms());
        let (mut changes, picked) = current.plan_redeliveries(
            now,
            not_before,
            queue.max_receive_count,
            ask.dead_letters,
            ask.limit,
        );
        // Each record received: its answer and its change.
        let receive = |key, record: &CopiedRecord, dead_letter| {
            let delivery =
                current.receive(key, now, ask.visibility_ms, record.arrival_ms, dead_letter);
            (
                record_json(&queue.id, stream.record.key, key, record, &delivery),
                Change::Delivered(key, delivery),
            )
        };
        let mut answer = Vec::new();
        for key in picked {
            let read = match shard_of(stream, key.0) {
                Some(shard) if is_here(broker, shard) => {
                    read_here(shard, key.1, 1, MAX_READ_BYTES, not_before)?.records
                }
                // On another pod: as read before the look, or (its owner out of reach, or
                // picked only now) left as it is for a later look.
                Some(_) => match prefetched.again.remove(&key) {
                    Some(record) => vec![record],
                    None => continue,
                },
                None => Vec::new(),
            };
            match read.into_iter().next() {
                Some(record) if record.offset == key.1 => {
                    let (json, change) = receive(key, &record, ask.dead_letters);
                    answer.push(json);
                    changes.push(change);
                }
                _ => changes.push(Change::Expired(key)),
            }
        }
        if !ask.dead_letters && current.has_room() && !stream.shards.is_empty() {
            let cursors: HashMap<u32, u64> = stream
                .shards
                .iter()
                .map(|s| (s.key.shard_index, current.cursor(s.key.shard_index)))
                .collect();
            let count = stream.shards.len();
            let start = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
            for turn in 0..count {
                if answer.len() >= ask.limit {
                    break;
                }
                let shard = &stream.shards[(start + turn) % count];
                let index = shard.key.shard_index;
                let cursor = cursors[&index];
                if !readable(stream, shard, &cursors) {
                    continue;
                }
                let room = ask.limit - answer.len();
                let (found, next) = if is_here(broker, shard) {
                    if shard.log.tip().0 <= cursor {
                        continue;
                    }
                    let read = read_here(shard, cursor, room as u32, MAX_READ_BYTES, not_before)?;
                    (read.records, read.next_offset)
                } else {
                    // Read before the look from this cursor; a read from an older cursor
                    // (another receive took records meanwhile) waits for the next look.
                    match prefetched.new.remove(&index) {
                        Some((from, mut read)) if from == cursor => {
                            read.records.truncate(room);
                            (read.records, read.next_offset)
                        }
                        _ => continue,
                    }
                };
                if found.is_empty() && next > cursor {
                    changes.push(Change::Cursor(index, next));
                }
                for record in found {
                    let (json, change) = receive((index, record.offset), &record, false);
                    answer.push(json);
                    changes.push(change);
                }
            }
        }
        Ok((changes, answer))
    })
}
