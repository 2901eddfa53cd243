//! ReceiveQueueRecords and ReceiveDeadLetterQueueRecords: redeliveries first (records whose
//! visibility timeout passed), then records the queue has not handed out yet, read from the
//! stream's shards in turn; when there is none, the call long-polls until a shard commits a
//! record, a request makes one visible, an invisible one's timeout passes, or the wait ends.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CopiedRecord, DEFAULT_WAIT_S, MAX_RECEIVE, active_queue, read_records, readable, record_json,
    shard_of,
};
use crate::broker::catalog::QueueRecord;
use crate::broker::ops::{bounded, required};
use crate::broker::protocol::{ApiError, ErrorKind, json};
use crate::broker::queue::Queue;
use crate::broker::queue::state::Change;
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
    let wait = bounded(input.wait_time_seconds, "waitTimeSeconds", 1, 20)?
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
        let found = {
            let (broker, stream, state) = (broker.clone(), stream.clone(), state.clone());
            tokio::task::spawn_blocking(move || attempt(&broker, &stream, &queue, &state, &ask))
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
        tokio::select! {
            _ = futures::future::select_all(wakeups) => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}

/// One look at the queue: picks, reads and receives what is visible now.
fn attempt(
    broker: &Broker,
    stream: &LiveStream,
    queue: &QueueRecord,
    state: &Queue,
    ask: &Ask,
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
                Some(shard) => read_records(shard, key.1, 1, not_before)?.0,
                None => Vec::new(),
            };
            match read.into_iter().next() {
                Some((offset, record)) if offset == key.1 => {
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
                if !readable(stream, shard, &cursors) || shard.log.tip().0 <= cursor {
                    continue;
                }
                let (found, next) =
                    read_records(shard, cursor, ask.limit - answer.len(), not_before)?;
                if found.is_empty() && next > cursor {
                    changes.push(Change::Cursor(index, next));
                }
                for (offset, record) in found {
                    let (json, change) = receive((index, offset), &record, false);
                    answer.push(json);
                    changes.push(change);
                }
            }
        }
        Ok((changes, answer))
    })
}
