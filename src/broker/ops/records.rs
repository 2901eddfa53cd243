//! Reading records: GetShardIterator and GetRecords, the one place records are read back
//! ([`get_records`]); writing them is [`super::put`].

use std::sync::Arc;

use super::put::{check_members, throttled_message};
use super::records_answer::{Encoding, RecordsAnswer};
use super::{bounded, required};
use crate::broker::iterator::{ITERATOR_TTL_MS, IteratorError, IteratorPosition};
use crate::broker::protocol::json::{
    self, GetRecordsInput, GetShardIteratorInput, GetShardIteratorOutput,
};
use crate::broker::protocol::{ApiError, ErrorKind, timestamp_ms};
use crate::broker::routing::{SequencePosition, parse_sequence};
use crate::broker::shard::ReadLimits;
use crate::broker::state::{Broker, LiveStream};

const MAX_GET_RECORDS: u32 = 10_000;
const MAX_GET_BYTES: u64 = 10 * 1024 * 1024;
pub(super) async fn get_shard_iterator(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: GetShardIteratorInput = json::decode(body)?;
    let shard_id = required(input.shard_id, "shardId")?;
    let iterator_type = required(input.shard_iterator_type, "shardIteratorType")?;
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let shard = stream.shard(&shard_id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Shard {shard_id} in stream {} under account {} does not exist",
                stream.record.name, broker.settings.account
            ),
        )
    })?;
    crate::broker::cluster::check_owned(broker, shard)?;
    let (tip, _) = shard.log.tip();
    let sequence_position = |kind: &str| -> Result<SequencePosition, ApiError> {
        let text = input.starting_sequence_number.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidArgument,
                format!("Must specify a StartingSequenceNumber for {kind}"),
            )
        })?;
        let position = parse_sequence(text).ok_or_else(|| {
            ApiError::new(ErrorKind::InvalidArgument, format!("StartingSequenceNumber {text} used in GetShardIterator on shard {shard_id} in stream {} under account {} is invalid.", stream.record.name, broker.settings.account))
        })?;
        if position.stream_key != stream.record.key || position.shard_index != shard.key.shard_index
        {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {shard_id}",
                    crate::broker::routing::shard_id(position.shard_index)
                ),
            ));
        }
        Ok(position)
    };
    let within_tip = |offset: u64| -> Result<u64, ApiError> {
        if offset > tip {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "StartingSequenceNumber used in GetShardIterator on shard {shard_id} in stream {} under account {} is beyond the shard's last record.",
                    stream.record.name, broker.settings.account
                ),
            ));
        }
        Ok(offset)
    };
    let offset = match iterator_type.as_str() {
        "TRIM_HORIZON" => 0,
        "LATEST" => tip,
        "AT_SEQUENCE_NUMBER" => within_tip(sequence_position("AT_SEQUENCE_NUMBER")?.at_offset())?,
        "AFTER_SEQUENCE_NUMBER" => {
            within_tip(sequence_position("AFTER_SEQUENCE_NUMBER")?.after_offset())?
        }
        "AT_TIMESTAMP" => {
            let at = input.timestamp.and_then(timestamp_ms).ok_or_else(|| {
                ApiError::new(ErrorKind::InvalidArgument, "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")
            })?;
            if at > broker.clock.now_ms() {
                tip
            } else {
                super::offset_at_time(shard, at).await?
            }
        }
        other => {
            return Err(ApiError::constraint(
                other,
                "shardIteratorType",
                "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
            ));
        }
    };
    let iterator = broker.iterators.encode(&IteratorPosition {
        stream_name: stream.record.name.clone(),
        shard: shard.key,
        offset,
        issued_ms: broker.clock.now_ms(),
    });
    Ok(json::encode(&GetShardIteratorOutput {
        shard_iterator: iterator,
    }))
}

/// GetRecords, answered in `encoding`.
pub(super) async fn get_records(
    broker: &Arc<Broker>,
    body: &[u8],
    encoding: Encoding,
) -> Result<Vec<u8>, ApiError> {
    let input: GetRecordsInput = json::decode(body)?;
    check_members([
        ("ShardIterator", input.shard_iterator.as_deref()),
        ("StreamARN", input.stream_arn.as_deref()),
        ("StreamId", input.stream_id.as_deref()),
    ])?;
    let token = required(input.shard_iterator, "shardIterator")?;
    let limit = bounded(input.limit, "limit", 1, i64::from(MAX_GET_RECORDS))?
        .map_or(MAX_GET_RECORDS, |l| l as u32);
    let now = broker.clock.now_ms();
    let position = broker.iterators.decode(&token, now).map_err(|error| match error {
        IteratorError::Invalid => ApiError::new(ErrorKind::InvalidArgument, "Invalid ShardIterator."),
        IteratorError::Expired => ApiError::new(
            ErrorKind::ExpiredIterator,
            format!("Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.", iso(now.saturating_sub(ITERATOR_TTL_MS + 1)), iso(now)),
        ),
    })?;
    let stream = broker.resolve(Some(&position.stream_name), input.stream_arn.as_deref())?;
    let shard = stream
        .shards
        .get(position.shard.shard_index as usize)
        .filter(|s| stream.record.key == position.shard.stream_key && s.key == position.shard)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Shard {} in stream {} under account {} does not exist",
                    crate::broker::routing::shard_id(position.shard.shard_index),
                    stream.record.name,
                    broker.settings.account
                ),
            )
        })?;
    crate::broker::cluster::check_owned(broker, shard)?;
    if !shard.quota.admit_read(now) {
        shard.metrics.read_throttled().inc();
        return Err(ApiError::new(
            ErrorKind::ProvisionedThroughputExceeded,
            throttled_message(broker, &stream, shard.key.shard_index),
        ));
    }
    let limits = ReadLimits {
        max_records: limit,
        max_bytes: MAX_GET_BYTES,
        not_before_ms: now.saturating_sub(stream.record.retention_ms()),
    };
    let log = shard.log.clone();
    let offset = position.offset;
    let outcome = tokio::task::spawn_blocking(move || log.read(offset, limits))
        .await
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?
        .map_err(read_failed)?;

    let mut answer = RecordsAnswer::new(encoding, 3, &outcome);
    let written = answer.records(stream.record.key, shard.key.shard_index, &outcome)?;
    let (count, bytes, last_arrival) = (written.count, written.bytes, written.last_arrival_ms);
    let caught_up = outcome.next_offset >= outcome.committed_offset;
    let behind = if caught_up {
        0
    } else {
        outcome
            .last_arrival_ms
            .saturating_sub(last_arrival.unwrap_or(outcome.last_arrival_ms))
    };
    match shard.closed_at_offset {
        // The end of a closed shard: no next iterator, and the children to read next.
        Some(end) if outcome.next_offset >= end => {
            answer.number("MillisBehindLatest", behind);
            answer.value("ChildShards", &child_shards(&stream, shard.key.shard_index));
        }
        _ => {
            let next = broker.iterators.encode(&IteratorPosition {
                stream_name: stream.record.name.clone(),
                shard: shard.key,
                offset: outcome.next_offset,
                issued_ms: now,
            });
            answer.plain_text("NextShardIterator", &next);
            answer.number("MillisBehindLatest", behind);
        }
    }
    shard.quota.charge_read(bytes, now);
    shard.metrics.outgoing_records().inc_by(count);
    shard.metrics.outgoing_bytes().inc_by(bytes);
    shard.metrics.iterator_age().set(behind as i64);
    Ok(answer.finish())
}

/// The answer to a shard read that failed (logged: it means a damaged or lost file).
pub(super) fn read_failed(error: crate::broker::shard::log::ReadError) -> ApiError {
    tracing::error!(%error, "a read failed");
    ApiError::new(
        ErrorKind::InternalFailure,
        "The broker could not read the shard.",
    )
}

/// The shards a closed shard split or merged into, as GetRecords reports them.
pub fn child_shards(stream: &LiveStream, parent: u32) -> serde_json::Value {
    let children: Vec<serde_json::Value> = stream
        .record
        .shards
        .iter()
        .filter(|s| s.parent == Some(parent) || s.adjacent_parent == Some(parent))
        .map(|s| {
            let parents: Vec<String> = [s.parent, s.adjacent_parent]
                .into_iter()
                .flatten()
                .map(crate::broker::routing::shard_id)
                .collect();
            serde_json::json!({
                "ShardId": crate::broker::routing::shard_id(s.index),
                "ParentShards": parents,
                "HashKeyRange": {
                    "StartingHashKey": s.hash_range.start.to_string(),
                    "EndingHashKey": s.hash_range.end.to_string(),
                },
            })
        })
        .collect();
    serde_json::Value::Array(children)
}

/// A compact UTC rendering of epoch milliseconds for messages.
fn iso(epoch_ms: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(epoch_ms as i64)
        .map_or_else(|_| epoch_ms.to_string(), |t| t.to_string())
}
