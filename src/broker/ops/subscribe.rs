//! SubscribeToShard: pushes a shard's records to an enhanced fan-out consumer as event
//! stream messages, from its starting position, for five minutes, as Kinesis does.
//!
//! Each consumer has its own 2 MiB/s per shard; one subscription per consumer and shard at a
//! time. Subscribers wait at the tip on the shard's commit notification, not by polling.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::consumers::{consumer_status, resolve_consumer};
use super::records::child_shards;
use super::records_answer::{Encoding, RecordsAnswer};
use super::required;
use crate::broker::limits::TokenBucket;
use crate::broker::protocol::eventstream;
use crate::broker::protocol::json;
use crate::broker::protocol::{ApiError, ErrorKind, timestamp_ms};
use crate::broker::routing::{SequencePosition, format_sequence, parse_sequence};
use crate::broker::shard::{ReadLimits, ShardKey};
use crate::broker::state::Broker;

/// Longest silence before an event without records.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Bytes per second one consumer reads from one shard.
const CONSUMER_BYTES_PER_SECOND: u64 = 2 * 1024 * 1024;
/// Most records in one event.
const MAX_EVENT_RECORDS: u32 = 10_000;
/// Most bytes in one event.
const MAX_EVENT_BYTES: u64 = 1024 * 1024;

/// Subscriptions in progress, by consumer ARN and shard.
#[derive(Default)]
pub struct Subscriptions {
    active: Mutex<HashSet<(String, ShardKey)>>,
}

struct Lease<'a> {
    subscriptions: &'a Subscriptions,
    key: (String, ShardKey),
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.subscriptions
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartingPosition {
    #[serde(rename = "Type")]
    position_type: Option<String>,
    sequence_number: Option<String>,
    timestamp: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SubscribeInput {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
    shard_id: Option<String>,
    starting_position: Option<StartingPosition>,
}

/// Validates a subscription and starts it; returns the stream of event messages.
pub async fn subscribe(
    broker: &Arc<Broker>,
    body: &[u8],
    cbor: bool,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let input: SubscribeInput = json::decode(body)?;
    let arn = required(input.consumer_arn, "consumerARN")?;
    let shard_id = required(input.shard_id, "shardId")?;
    let start = required(input.starting_position, "startingPosition")?;
    let kind = required(start.position_type, "startingPosition.type")?;
    let (stream, consumer) = resolve_consumer(broker, &arn)?;
    let account = &broker.settings.account;
    let status = consumer_status(
        &consumer,
        broker.clock.now_ms(),
        broker.settings.transition_ms,
    );
    if status != "ACTIVE" {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Consumer {arn} under account {account} is not ACTIVE, instead in state {status}."
            ),
        ));
    }
    let shard = stream.shard(&shard_id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Shard {shard_id} in stream {} under account {account} does not exist",
                stream.record.name
            ),
        )
    })?;
    crate::broker::cluster::check_owned(broker, shard)?;
    let (tip, _) = shard.log.tip();
    let sequence = |text: Option<&str>| -> Result<SequencePosition, ApiError> {
        let text = text.ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidArgument,
                format!("A SequenceNumber is required for {kind}."),
            )
        })?;
        parse_sequence(text)
            .filter(|p| p.stream_key == stream.record.key && p.shard_index == shard.key.shard_index)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("Invalid SequenceNumber {text} for shard {shard_id}."),
                )
            })
    };
    let offset = match kind.as_str() {
        "TRIM_HORIZON" => 0,
        "LATEST" => tip,
        "AT_SEQUENCE_NUMBER" => sequence(start.sequence_number.as_deref())?.at_offset(),
        "AFTER_SEQUENCE_NUMBER" => sequence(start.sequence_number.as_deref())?.after_offset(),
        "AT_TIMESTAMP" => {
            let at = start.timestamp.and_then(timestamp_ms).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    "A Timestamp is required for AT_TIMESTAMP.",
                )
            })?;
            super::offset_at_time(shard, at).await?
        }
        other => {
            return Err(ApiError::constraint(
                other,
                "startingPosition.type",
                "Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]",
            ));
        }
    };
    let key = (arn.clone(), shard.key);
    if !broker
        .subscriptions
        .active
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key.clone())
    {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Another active subscription exists for consumer {arn} on shard {shard_id}."),
        ));
    }
    let (sender, receiver) = mpsc::channel(4);
    let broker = broker.clone();
    let (stream_name, shard_key) = (stream.record.name.clone(), shard.key);
    tokio::spawn(async move {
        let lease = Lease {
            subscriptions: &broker.subscriptions,
            key,
        };
        push_events(&broker, &stream_name, &arn, shard_key, offset, cbor, sender).await;
        drop(lease);
    });
    Ok(receiver)
}

/// Sends events until the subscription's lifetime ends, the client goes, the shard's end is
/// delivered, or the stream or consumer disappears.
#[allow(clippy::too_many_arguments)]
async fn push_events(
    broker: &Broker,
    stream_name: &str,
    arn: &str,
    shard_key: ShardKey,
    mut offset: u64,
    cbor: bool,
    sender: mpsc::Sender<Bytes>,
) {
    // Events speak the protocol the subscription was requested in.
    let encoding = if cbor { Encoding::Cbor } else { Encoding::Json };
    let event = |kind: &str, payload: &[u8]| -> Bytes {
        if cbor {
            Bytes::from(eventstream::event_with_type(
                kind,
                payload,
                crate::broker::protocol::cbor::CONTENT_TYPE,
            ))
        } else {
            Bytes::from(eventstream::event(kind, payload))
        }
    };
    let empty: &[u8] = if cbor { &[0xa0] } else { b"{}" };
    if sender.send(event("initial-response", empty)).await.is_err() {
        return;
    }
    let deadline = Instant::now() + broker.settings.subscription_lifetime;
    let mut budget = TokenBucket::new(CONSUMER_BYTES_PER_SECOND, broker.clock.now_ms());
    let mut last_event = Instant::now();
    while Instant::now() < deadline {
        let Some(stream) = broker
            .stream(stream_name)
            .filter(|s| s.record.key == shard_key.stream_key)
        else {
            let gone = ApiError::stream_not_found(stream_name, &broker.settings.account);
            let _ = sender
                .send(Bytes::from(eventstream::exception(&gone)))
                .await;
            return;
        };
        if !stream.record.consumers.iter().any(|c| {
            arn.contains(&format!("/consumer/{}:", c.name)) && c.deleting_since_ms.is_none()
        }) {
            let gone = ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("Consumer {arn} was deregistered."),
            );
            let _ = sender
                .send(Bytes::from(eventstream::exception(&gone)))
                .await;
            return;
        }
        let Some(shard) = stream.shards.get(shard_key.shard_index as usize) else {
            return;
        };
        let waiting = shard.log.committed.notified();
        tokio::pin!(waiting);
        waiting.as_mut().enable();

        let now = broker.clock.now_ms();
        let limits = ReadLimits {
            max_records: MAX_EVENT_RECORDS,
            max_bytes: MAX_EVENT_BYTES,
            not_before_ms: now.saturating_sub(stream.record.retention_ms()),
        };
        let log = shard.log.clone();
        let outcome = match tokio::task::spawn_blocking(move || log.read(offset, limits)).await {
            Ok(Ok(outcome)) => outcome,
            _ => {
                let failed = ApiError::new(
                    ErrorKind::InternalFailure,
                    "The broker could not read the shard.",
                );
                let _ = sender
                    .send(Bytes::from(eventstream::exception(&failed)))
                    .await;
                return;
            }
        };
        let at_end = shard
            .closed_at_offset
            .is_some_and(|end| outcome.next_offset >= end);
        let has_records = !outcome.batches.is_empty();
        if has_records || at_end || last_event.elapsed() >= HEARTBEAT {
            let mut payload = RecordsAnswer::new(encoding, 3 + u64::from(at_end), &outcome);
            let Ok(written) =
                payload.records(shard_key.stream_key, shard_key.shard_index, &outcome)
            else {
                return;
            };
            let continuation = format_sequence(SequencePosition {
                stream_key: shard_key.stream_key,
                shard_index: shard_key.shard_index,
                ordinal: outcome.next_offset,
            });
            let behind = if outcome.next_offset >= outcome.committed_offset {
                0
            } else {
                outcome
                    .last_arrival_ms
                    .saturating_sub(written.last_arrival_ms.unwrap_or(outcome.last_arrival_ms))
            };
            payload.plain_text("ContinuationSequenceNumber", &continuation);
            payload.number("MillisBehindLatest", behind);
            if at_end {
                payload.value("ChildShards", &child_shards(&stream, shard_key.shard_index));
            }
            let payload = payload.finish();
            if sender
                .send(event("SubscribeToShardEvent", &payload))
                .await
                .is_err()
            {
                return;
            }
            shard.metrics.outgoing_records().inc_by(written.count);
            shard.metrics.outgoing_bytes().inc_by(written.bytes);
            budget.charge(written.bytes, now);
            offset = outcome.next_offset;
            last_event = Instant::now();
            if at_end {
                return;
            }
        }
        // Each consumer gets 2 MiB/s per shard: after a large event, wait the debt off.
        let debt = -budget.available(broker.clock.now_ms());
        if debt > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(
                debt / CONSUMER_BYTES_PER_SECOND as f64,
            ))
            .await;
            continue;
        }
        if !has_records {
            let until_heartbeat = HEARTBEAT.saturating_sub(last_event.elapsed());
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = &mut waiting => {}
                _ = tokio::time::sleep(until_heartbeat.min(remaining)) => {}
                _ = sender.closed() => return,
            }
        }
    }
}
