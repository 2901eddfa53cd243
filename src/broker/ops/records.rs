//! Record operations: PutRecord, PutRecords, GetShardIterator, GetRecords.
//!
//! The one place a record is routed to its shard is [`ingest`]; the one place records are
//! read back is [`get_records`].

use std::fmt::Write;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};

use super::{bounded, required};
use crate::broker::iterator::{ITERATOR_TTL_MS, IteratorError, IteratorPosition};
use crate::broker::protocol::json::{
    self, GetRecordsInput, GetShardIteratorInput, GetShardIteratorOutput, PutRecordInput,
    PutRecordOutput, PutRecordsEntry, PutRecordsInput, PutRecordsOutput, PutRecordsResultEntry,
};
use crate::broker::protocol::validate::string_conforms;
use crate::broker::protocol::{ApiError, ErrorKind, timestamp_ms, write_timestamp};
use crate::broker::routing::{
    SequencePosition, parse_hash_key, parse_sequence, partition_hash, record_sequence,
};
use crate::broker::shard::batch::BodyBuilder;
use crate::broker::shard::{AppendPart, Appended, ReadLimits, StoreError};
use crate::broker::state::{Broker, LiveShard, LiveStream};

/// Base64 as clients send it: standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const MAX_PUT_RECORDS: usize = 500;
const MAX_GET_RECORDS: u32 = 10_000;
const MAX_GET_BYTES: u64 = 10 * 1024 * 1024;
const MIB: usize = 1024 * 1024;
const MAX_REROUTES: u64 = 50;

/// What happened to one record of a put.
enum Outcome {
    /// Went into part `part` at position `at` within it.
    Stored { part: usize, at: u32, shard: usize },
    /// Refused by the shard's quota.
    Throttled { shard: usize },
}

/// A validated, routed and admitted put.
struct Ingest {
    parts: Vec<AppendPart>,
    part_shards: Vec<usize>,
    outcomes: Vec<Outcome>,
    /// Per part, the records and bytes it carries, counted in the metrics once stored.
    part_sizes: Vec<(u64, u64)>,
}

/// How a routing decides admission: charge the quotas (the first routing of a request), or
/// keep the outcomes the first routing decided (a routing again after a reshard: charged once).
#[derive(Clone, Copy)]
enum Admission<'a> {
    Charge,
    Decided(&'a [Outcome]),
}

fn writable(broker: &Broker, stream: &LiveStream) -> Result<(), ApiError> {
    if stream.status(broker.clock.now_ms(), broker.settings.transition_ms) == "CREATING" {
        return Err(ApiError::stream_not_found(
            &stream.record.name,
            &broker.settings.account,
        ));
    }
    Ok(())
}

/// One record decoded: its key, where its data sits in the scratch buffer, its hash and size.
type Decoded<'e> = (&'e str, std::ops::Range<usize>, u128, usize);

/// Checks and decodes every record of a put: key, data, size, hash key. Any bad record
/// refuses the whole request, as Kinesis does.
fn decode_records<'e>(
    stream: &LiveStream,
    entries: &'e [PutRecordsEntry<'_>],
    member: &str,
) -> Result<(Vec<u8>, Vec<Decoded<'e>>), ApiError> {
    let max_record = stream.record.max_record_size_kib as usize * 1024;
    let request_limit = if max_record > MIB { 10 * MIB } else { 5 * MIB };
    let mut scratch: Vec<u8> = Vec::with_capacity(
        entries
            .iter()
            .map(|e| e.data.as_ref().map_or(0, |d| d.len()))
            .sum::<usize>()
            * 3
            / 4
            + 16,
    );
    let mut decoded = Vec::with_capacity(entries.len());
    let mut total = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        let at = |field: &str| {
            if member.is_empty() {
                field.to_owned()
            } else {
                format!("{member}.{}.member.{field}", i + 1)
            }
        };
        let key = required(entry.partition_key.as_deref(), &at("partitionKey"))?;
        let key_chars = key.chars().count();
        if !(1..=256).contains(&key_chars) {
            return Err(ApiError::constraint(
                key,
                &at("partitionKey"),
                "Member must have length between 1 and 256",
            ));
        }
        let data = required(entry.data.as_deref(), &at("data"))?;
        let start = scratch.len();
        LENIENT_BASE64.decode_vec(data, &mut scratch).map_err(|_| {
            ApiError::new(
                ErrorKind::Serialization,
                format!("Base64 encoded data at '{}' is not valid.", at("data")),
            )
        })?;
        let size = scratch.len() - start + key.len();
        if size > max_record {
            return Err(ApiError::constraint(
                "java.nio.HeapByteBuffer",
                &at("data"),
                &format!("Member must have length less than or equal to {max_record}"),
            ));
        }
        total += size;
        if total > request_limit {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!("Records size exceeds {} MB limit", request_limit / MIB),
            ));
        }
        let hash = match entry.explicit_hash_key.as_deref() {
            Some(explicit) => parse_hash_key(explicit).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {explicit}"),
                )
            })?,
            None => partition_hash(key),
        };
        decoded.push((key, start..scratch.len(), hash, size));
    }

    Ok((scratch, decoded))
}

/// Validates, decodes, routes and admits records; nothing is written yet.
fn ingest(
    broker: &Broker,
    stream: &LiveStream,
    entries: &[PutRecordsEntry<'_>],
    member: &str,
    admission: Admission<'_>,
) -> Result<Ingest, ApiError> {
    let (scratch, decoded) = decode_records(stream, entries, member)?;
    let now = broker.clock.now_ms();
    let mut bodies: Vec<BodyBuilder> = Vec::new();
    let mut part_shards: Vec<usize> = Vec::new();
    let mut part_of_shard: Vec<Option<usize>> = vec![None; stream.shards.len()];
    let mut outcomes = Vec::with_capacity(decoded.len());
    let mut part_sizes: Vec<(u64, u64)> = Vec::new();
    let automatic = stream.distributes_automatically();
    let here = broker.cluster.get().map(|c| c.ordinal);
    for (i, (key, range, hash, size)) in decoded.into_iter().enumerate() {
        let shard = if automatic {
            // AUTO: the open shards this pod owns, in turn (a pod relays the records only
            // when it owns none, see `cluster::route`).
            stream.next_auto_shard(here)
        } else {
            stream.route(hash)
        };
        let shard = shard.ok_or_else(|| match broker.cluster.get() {
            // A pod that closed a reshard's parent before its map has the children: the
            // sender retries with a newer map.
            Some(cluster) => ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "Pod {}'s placement map has no open shard for this record yet (a reshard is under way); retry.",
                    cluster.ordinal
                ),
            ),
            None => ApiError::new(
                ErrorKind::InternalFailure,
                "No open shard covers the record's hash key.",
            ),
        })?;
        if let Some(cluster) = broker.cluster.get()
            && shard.owner != cluster.ordinal
        {
            // Routed here under an older placement map: the shard's log is on another pod.
            // Nothing is written; the client retries and the records go to the owner.
            return Err(crate::broker::cluster::misrouted(
                cluster.ordinal,
                crate::broker::cluster::Route::Pod(shard.owner),
            ));
        }
        let shard_position = shard.key.shard_index as usize;
        let admit = match admission {
            Admission::Charge => {
                let admit = shard.quota.admit_write(size as u64, now);
                if !admit {
                    shard.metrics.write_throttled().inc();
                }
                admit
            }
            Admission::Decided(decided) => {
                matches!(decided.get(i), Some(Outcome::Stored { .. }))
            }
        };
        if !admit {
            outcomes.push(Outcome::Throttled {
                shard: shard_position,
            });
            continue;
        }
        let part = *part_of_shard[shard_position].get_or_insert_with(|| {
            bodies.push(BodyBuilder::with_capacity(4096));
            part_shards.push(shard_position);
            part_sizes.push((0, 0));
            bodies.len() - 1
        });
        let body = &mut bodies[part];
        outcomes.push(Outcome::Stored {
            part,
            at: body.record_count(),
            shard: shard_position,
        });
        body.push(key, &scratch[range]);
        part_sizes[part].0 += 1;
        part_sizes[part].1 += size as u64;
    }
    let parts = bodies
        .into_iter()
        .zip(&part_shards)
        .map(|(body, &shard)| AppendPart {
            shard: stream.shards[shard].key,
            body: body.finish(),
        })
        .collect();
    Ok(Ingest {
        parts,
        part_shards,
        outcomes,
        part_sizes,
    })
}

fn throttled_message(broker: &Broker, stream: &LiveStream, shard: &LiveShard) -> String {
    format!(
        "Rate exceeded for shard {} in stream {} under account {}.",
        shard.id, stream.record.name, broker.settings.account
    )
}

fn store_failure(error: StoreError) -> ApiError {
    tracing::error!(%error, "a write failed");
    ApiError::new(
        ErrorKind::InternalFailure,
        "The broker could not store the records.",
    )
}

/// Routes, admits and stores records. A shard closed by a concurrent reshard refuses the
/// whole write; the records are then routed again with the stream's new shards, so none is
/// written twice and none goes to a closed shard.
async fn store_routed(
    broker: &Broker,
    mut stream: Arc<LiveStream>,
    entries: &[PutRecordsEntry<'_>],
    member: &str,
) -> Result<(Arc<LiveStream>, Ingest, Vec<Appended>), ApiError> {
    // The quotas are charged on the first routing only: a routing again after a reshard keeps
    // which records were admitted, so none is charged twice.
    let mut decided: Option<Vec<Outcome>> = None;
    for attempt in 0.. {
        let admission = match &decided {
            None => Admission::Charge,
            Some(outcomes) => Admission::Decided(outcomes),
        };
        let mut ingest = ingest(broker, &stream, entries, member, admission)?;
        if ingest.parts.is_empty() {
            return Ok((stream, ingest, Vec::new()));
        }
        let parts = std::mem::take(&mut ingest.parts);
        match broker.store.append(parts).await {
            Ok(landed) => {
                for (&shard, &(records, bytes)) in ingest.part_shards.iter().zip(&ingest.part_sizes)
                {
                    let metrics = &stream.shards[shard].metrics;
                    metrics.incoming_records().inc_by(records);
                    metrics.incoming_bytes().inc_by(bytes);
                }
                return Ok((stream, ingest, landed));
            }
            Err(StoreError::ShardClosed(_)) if attempt < MAX_REROUTES => {
                decided = Some(std::mem::take(&mut ingest.outcomes));
                broker.metrics.rerouted();
                // The reshard publishes the children right after closing the parents.
                tokio::time::sleep(std::time::Duration::from_millis(1 + attempt)).await;
                stream = broker.resolve(Some(&stream.record.name), None)?;
            }
            Err(error) => return Err(store_failure(error)),
        }
    }
    Err(ApiError::new(
        ErrorKind::InternalFailure,
        "The records could not be routed.",
    ))
}

/// The string members of a data-path request, by their model shape.
fn members_conform<'a>(members: impl IntoIterator<Item = (&'static str, Option<&'a str>)>) -> bool {
    members
        .into_iter()
        .all(|(shape, value)| value.is_none_or(|text| string_conforms(shape, text)))
}

/// Refuses a data-path request whose members break the model. The data path checks them with
/// [`members_conform`] instead of parsing each body twice; `ops::dispatch` then words the
/// refusal with every violation, as for any other operation.
fn check_members<'a>(
    members: impl IntoIterator<Item = (&'static str, Option<&'a str>)>,
) -> Result<(), ApiError> {
    if members_conform(members) {
        Ok(())
    } else {
        Err(model_refusal())
    }
}

/// The refusal of a member that breaks the model, before `ops::dispatch` words it.
fn model_refusal() -> ApiError {
    ApiError::new(
        ErrorKind::Validation,
        "1 validation error detected: a member failed to satisfy its constraint",
    )
}

fn entries_conform(entries: &[PutRecordsEntry<'_>]) -> bool {
    entries.iter().all(|entry| {
        members_conform([
            ("PartitionKey", entry.partition_key.as_deref()),
            ("HashKey", entry.explicit_hash_key.as_deref()),
        ])
    })
}

/// A PutRecords request checked as far as it can be without its records: its members, its
/// stream and the number of records.
fn checked_put_records<'i, 'a>(
    broker: &Broker,
    input: &'i PutRecordsInput<'a>,
) -> Result<(Arc<LiveStream>, &'i [PutRecordsEntry<'a>]), ApiError> {
    check_members([
        ("StreamName", input.stream_name.as_deref()),
        ("StreamARN", input.stream_arn.as_deref()),
        ("StreamId", input.stream_id.as_deref()),
    ])?;
    if input
        .records
        .as_deref()
        .is_some_and(|e| !entries_conform(e))
    {
        return Err(model_refusal());
    }
    let stream = broker.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    writable(broker, &stream)?;
    let entries = required(input.records.as_deref(), "records")?;
    if entries.is_empty() || entries.len() > MAX_PUT_RECORDS {
        return Err(ApiError::constraint(
            &format!("[{} records]", entries.len()),
            "records",
            "Member must have length between 1 and 500",
        ));
    }
    Ok((stream, entries))
}

/// Whether a PutRecords would be refused as a whole, checked as storing it would check it
/// (members, stream, every record's key, data and size), without storing or charging
/// anything: a broker of a cluster checks a request before it splits it over pods.
pub(crate) fn check_put_records(
    broker: &Broker,
    input: &PutRecordsInput<'_>,
) -> Result<(), ApiError> {
    let (stream, entries) = checked_put_records(broker, input)?;
    decode_records(&stream, entries, "records").map(|_| ())
}

pub(super) async fn put_records(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: PutRecordsInput = json::decode(body)?;
    let (stream, entries) = checked_put_records(broker, &input)?;
    let (stream, ingest, landed) = store_routed(broker, stream, entries, "records").await?;
    let mut failed = 0;
    let results = ingest
        .outcomes
        .iter()
        .map(|outcome| match *outcome {
            Outcome::Stored { part, at, shard } => PutRecordsResultEntry {
                sequence_number: Some(record_sequence(
                    stream.record.key,
                    stream.shards[ingest.part_shards[part]].key.shard_index,
                    landed[part].base_offset + u64::from(at),
                )),
                shard_id: Some(stream.shards[shard].id.clone()),
                error_code: None,
                error_message: None,
            },
            Outcome::Throttled { shard } => {
                failed += 1;
                PutRecordsResultEntry {
                    sequence_number: None,
                    shard_id: None,
                    error_code: Some(ErrorKind::ProvisionedThroughputExceeded.type_name()),
                    error_message: Some(throttled_message(broker, &stream, &stream.shards[shard])),
                }
            }
        })
        .collect();
    Ok(json::encode(&PutRecordsOutput {
        failed_record_count: failed,
        records: results,
        encryption_type: "NONE",
    }))
}

pub(super) async fn put_record(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: PutRecordInput = json::decode(body)?;
    check_members([
        ("StreamName", input.stream_name.as_deref()),
        ("StreamARN", input.stream_arn.as_deref()),
        ("StreamId", input.stream_id.as_deref()),
        (
            "SequenceNumber",
            input.sequence_number_for_ordering.as_deref(),
        ),
        ("PartitionKey", input.record.partition_key.as_deref()),
        ("HashKey", input.record.explicit_hash_key.as_deref()),
    ])?;
    let stream = broker.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    writable(broker, &stream)?;
    let (stream, ingest, landed) =
        store_routed(broker, stream, std::slice::from_ref(&input.record), "").await?;
    let (part, at, shard) = match ingest.outcomes.first() {
        Some(&Outcome::Stored { part, at, shard }) => (part, at, shard),
        Some(&Outcome::Throttled { shard }) => {
            return Err(ApiError::new(
                ErrorKind::ProvisionedThroughputExceeded,
                throttled_message(broker, &stream, &stream.shards[shard]),
            ));
        }
        None => {
            return Err(ApiError::new(
                ErrorKind::InternalFailure,
                "The record was lost before storage.",
            ));
        }
    };
    let shard = &stream.shards[shard];
    Ok(json::encode(&PutRecordOutput {
        shard_id: shard.id.clone(),
        sequence_number: record_sequence(
            stream.record.key,
            shard.key.shard_index,
            landed[part].base_offset + u64::from(at),
        ),
        encryption_type: "NONE",
    }))
}

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

pub(super) async fn get_records(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
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
            throttled_message(broker, &stream, shard),
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

    let mut out = String::with_capacity(json_capacity(&outcome));
    out.push('{');
    let written = write_records(&mut out, stream.record.key, shard.key.shard_index, &outcome)?;
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
            let _ = write!(out, ",\"MillisBehindLatest\":{behind},\"ChildShards\":");
            out.push_str(&child_shards(&stream, shard.key.shard_index).to_string());
            out.push('}');
        }
        _ => {
            let next = broker.iterators.encode(&IteratorPosition {
                stream_name: stream.record.name.clone(),
                shard: shard.key,
                offset: outcome.next_offset,
                issued_ms: now,
            });
            let _ = write!(
                out,
                ",\"NextShardIterator\":\"{next}\",\"MillisBehindLatest\":{behind}}}"
            );
        }
    }
    shard.quota.charge_read(bytes, now);
    shard.metrics.outgoing_records().inc_by(count);
    shard.metrics.outgoing_bytes().inc_by(bytes);
    shard.metrics.iterator_age().set(behind as i64);
    Ok(out.into_bytes())
}

/// The answer to a shard read that failed (logged: it means a damaged or lost file).
pub(super) fn read_failed(error: crate::broker::shard::log::ReadError) -> ApiError {
    tracing::error!(%error, "a read failed");
    ApiError::new(
        ErrorKind::InternalFailure,
        "The broker could not read the shard.",
    )
}

/// What [`write_records`] wrote.
pub(super) struct Written {
    /// Records written.
    pub count: u64,
    /// Data and key bytes written.
    pub bytes: u64,
    /// Arrival time of the last batch written from.
    pub last_arrival_ms: Option<u64>,
}

/// A capacity that holds the JSON of a read without reallocating.
pub(super) fn json_capacity(outcome: &crate::broker::shard::ReadOutcome) -> usize {
    outcome
        .batches
        .iter()
        .map(|b| b.body.len() * 4 / 3 + 160 * b.take as usize)
        .sum::<usize>()
        + 512
}

/// Writes `"Records":[...]` for a read, as GetRecords and SubscribeToShard both return it.
pub(super) fn write_records(
    out: &mut String,
    stream_key: u32,
    shard_index: u32,
    outcome: &crate::broker::shard::ReadOutcome,
) -> Result<Written, ApiError> {
    out.push_str("\"Records\":[");
    let mut written = Written {
        count: 0,
        bytes: 0,
        last_arrival_ms: None,
    };
    for read in outcome.records() {
        let read = read.map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
        let record = read.record;
        if written.count > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"SequenceNumber\":\"{}\",\"ApproximateArrivalTimestamp\":",
            record_sequence(stream_key, shard_index, read.offset)
        );
        write_timestamp(out, read.arrival_ms);
        out.push_str(",\"Data\":\"");
        STANDARD.encode_string(record.data, out);
        out.push_str("\",\"PartitionKey\":");
        out.push_str(
            &serde_json::to_string(record.partition_key).unwrap_or_else(|_| "\"\"".into()),
        );
        out.push_str(",\"EncryptionType\":\"NONE\"}");
        written.count += 1;
        written.bytes += (record.data.len() + record.partition_key.len()) as u64;
        written.last_arrival_ms = Some(read.arrival_ms);
    }
    out.push(']');
    Ok(written)
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
