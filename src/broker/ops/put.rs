//! Writing records: PutRecord and PutRecords. The one place a record is routed to its shard
//! is [`ingest`]; a clustered broker decodes a PutRecords once ([`decode_put_records`]) and
//! stores the records its pod owns with [`store_records`].

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use super::Encoding;
use super::{null_member, required};
use crate::broker::protocol::body::Body;
use crate::broker::protocol::cbor::write::{self as cbor, Container};
use crate::broker::protocol::json::{
    self, Blob, PutRecordInput, PutRecordOutput, PutRecordsEntry, PutRecordsInput,
    PutRecordsOutput, PutRecordsResultEntry,
};
use crate::broker::protocol::validate::string_conforms;
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::routing::{
    SequenceTexts, parse_hash_key, partition_hash, record_sequence, shard_id,
};
use crate::broker::shard::batch::BodyBuilder;
use crate::broker::shard::{AppendPart, Appended, StoreError};
use crate::broker::state::{Broker, LiveStream};

/// Base64 as clients send it: standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const MAX_PUT_RECORDS: usize = 500;
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

/// One record of a put, checked and decoded: what is stored and how it is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutRecord<'a> {
    /// The partition key.
    pub key: &'a str,
    /// The data, decoded.
    pub data: &'a [u8],
    /// The hash key the record is routed by (the explicit one, or the key's MD5).
    pub hash: u128,
}

impl PutRecord<'_> {
    /// The record's size as quotas and limits count it: data and key.
    pub fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

/// The records of a put, decoded once: their data sits in one buffer.
pub struct DecodedRecords<'e> {
    scratch: Vec<u8>,
    records: Vec<(&'e str, std::ops::Range<usize>, u128)>,
}

impl DecodedRecords<'_> {
    /// Each record, in the request's order.
    pub fn records(&self) -> Vec<PutRecord<'_>> {
        self.records
            .iter()
            .map(|(key, range, hash)| PutRecord {
                key,
                data: &self.scratch[range.clone()],
                hash: *hash,
            })
            .collect()
    }
}

/// Checks and decodes every record of a put: key, data, size, hash key. Any bad record
/// refuses the whole request, as Kinesis does.
fn decode_records<'e>(
    stream: &LiveStream,
    entries: &'e [PutRecordsEntry<'_>],
    member: &str,
) -> Result<DecodedRecords<'e>, ApiError> {
    let max_record = stream.record.max_record_size_kib as usize * 1024;
    let request_limit = if max_record > MIB { 10 * MIB } else { 5 * MIB };
    let mut scratch: Vec<u8> = Vec::with_capacity(
        entries
            .iter()
            .map(|e| e.data.as_ref().map_or(0, Blob::decoded_len_bound))
            .sum::<usize>()
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
        // The member's name is spelled out only for an error: a record costs no formatting.
        let key = entry
            .partition_key
            .as_deref()
            .ok_or_else(|| null_member(&at("partitionKey")))?;
        let key_chars = key.chars().count();
        if !(1..=256).contains(&key_chars) {
            return Err(ApiError::constraint(
                key,
                &at("partitionKey"),
                "Member must have length between 1 and 256",
            ));
        }
        let data = entry
            .data
            .as_ref()
            .ok_or_else(|| null_member(&at("data")))?;
        let start = scratch.len();
        match data {
            Blob::Base64(text) => {
                LENIENT_BASE64
                    .decode_vec(&**text, &mut scratch)
                    .map_err(|_| {
                        ApiError::new(
                            ErrorKind::Serialization,
                            format!("Base64 encoded data at '{}' is not valid.", at("data")),
                        )
                    })?
            }
            Blob::Bytes(bytes) => scratch.extend_from_slice(bytes),
        }
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
        decoded.push((key, start..scratch.len(), hash));
    }

    Ok(DecodedRecords {
        scratch,
        records: decoded,
    })
}

/// Validates, decodes, routes and admits records; nothing is written yet.
fn ingest(
    broker: &Broker,
    stream: &LiveStream,
    records: &[PutRecord<'_>],
    admission: Admission<'_>,
) -> Result<Ingest, ApiError> {
    let now = broker.clock.now_ms();
    let mut bodies: Vec<BodyBuilder> = Vec::new();
    let mut part_shards: Vec<usize> = Vec::new();
    let mut part_of_shard: Vec<Option<usize>> = vec![None; stream.shards.len()];
    let mut outcomes = Vec::with_capacity(records.len());
    let mut part_sizes: Vec<(u64, u64)> = Vec::new();
    let automatic = stream.distributes_automatically();
    let here = broker.cluster.get().map(|c| c.ordinal);
    for (i, record) in records.iter().enumerate() {
        let size = record.size();
        let shard = if automatic {
            // AUTO: the open shards this pod owns, in turn (a pod relays the records only
            // when it owns none, see `cluster::route`).
            stream.next_auto_shard(here)
        } else {
            stream.route(record.hash)
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
        body.push(record.key, record.data);
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

pub(super) fn throttled_message(broker: &Broker, stream: &LiveStream, shard_index: u32) -> String {
    format!(
        "Rate exceeded for shard {} in stream {} under account {}.",
        shard_id(shard_index),
        stream.record.name,
        broker.settings.account
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
    records: &[PutRecord<'_>],
) -> Result<(Arc<LiveStream>, Ingest, Vec<Appended>), ApiError> {
    // The quotas are charged on the first routing only: a routing again after a reshard keeps
    // which records were admitted, so none is charged twice.
    let mut decided: Option<Vec<Outcome>> = None;
    for attempt in 0.. {
        let admission = match &decided {
            None => Admission::Charge,
            Some(outcomes) => Admission::Decided(outcomes),
        };
        let mut ingest = ingest(broker, &stream, records, admission)?;
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
pub(super) fn check_members<'a>(
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

/// A PutRecords request checked and decoded as storing it checks it (members, stream, every
/// record's key, data and size), with nothing stored or charged yet: a broker of a cluster
/// decodes a request once, stores the records whose shards are here and sends the others to
/// their pods.
pub fn decode_put_records<'i>(
    broker: &Broker,
    input: &'i PutRecordsInput<'_>,
) -> Result<(Arc<LiveStream>, DecodedRecords<'i>), ApiError> {
    let (stream, entries) = checked_put_records(broker, input)?;
    let decoded = decode_records(&stream, entries, "records")?;
    Ok((stream, decoded))
}

/// What became of one record of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    /// Stored at this offset of this shard.
    Stored {
        /// The shard's index.
        shard_index: u32,
        /// The record's offset in the shard.
        offset: u64,
    },
    /// Refused by the shard's quota.
    Throttled {
        /// The shard's index.
        shard_index: u32,
    },
    /// Not stored for this reason (its pod could not be reached or refused it): an
    /// `InternalFailure` the client retries.
    Failed(String),
}

/// Stores records of `stream` whose shards this broker holds, charging their quotas, and
/// says what became of each, in order.
pub async fn store_records(
    broker: &Broker,
    stream: Arc<LiveStream>,
    records: &[PutRecord<'_>],
) -> Result<Vec<RecordResult>, ApiError> {
    let (stream, ingest, landed) = store_routed(broker, stream, records).await?;
    let index = |shard: usize| stream.shards[shard].key.shard_index;
    Ok(ingest
        .outcomes
        .iter()
        .map(|outcome| match *outcome {
            Outcome::Stored { part, at, shard } => RecordResult::Stored {
                shard_index: index(shard),
                offset: landed[part].base_offset + u64::from(at),
            },
            Outcome::Throttled { shard } => RecordResult::Throttled {
                shard_index: index(shard),
            },
        })
        .collect())
}

/// A shard's id: the stream's own copy when its map has the shard (a record stored on
/// another pod may have gone to a child this pod's map does not have yet).
fn shard_name(stream: &LiveStream, shard_index: u32) -> Cow<'_, str> {
    match stream.shards.get(shard_index as usize) {
        Some(shard) if shard.key.shard_index == shard_index => Cow::Borrowed(&shard.id),
        _ => Cow::Owned(shard_id(shard_index)),
    }
}

/// PutRecords's answer in `encoding`: each record's result, in the request's order.
pub fn put_records_answer(
    broker: &Broker,
    stream: &LiveStream,
    results: &[RecordResult],
    encoding: Encoding,
) -> Vec<u8> {
    let mut failed = 0;
    let mut sequences = SequenceTexts::default();
    let records = results
        .iter()
        .map(|result| match result {
            RecordResult::Stored {
                shard_index,
                offset,
            } => PutRecordsResultEntry {
                sequence_number: Some(sequences.record(stream.record.key, *shard_index, *offset)),
                shard_id: Some(shard_name(stream, *shard_index)),
                error_code: None,
                error_message: None,
            },
            RecordResult::Throttled { shard_index } => {
                failed += 1;
                PutRecordsResultEntry {
                    sequence_number: None,
                    shard_id: None,
                    error_code: Some(ErrorKind::ProvisionedThroughputExceeded.type_name()),
                    error_message: Some(throttled_message(broker, stream, *shard_index)),
                }
            }
            RecordResult::Failed(why) => {
                failed += 1;
                PutRecordsResultEntry {
                    sequence_number: None,
                    shard_id: None,
                    error_code: Some(ErrorKind::InternalFailure.type_name()),
                    error_message: Some(why.clone()),
                }
            }
        })
        .collect();
    let output = PutRecordsOutput {
        failed_record_count: failed,
        records,
        encryption_type: "NONE",
    };
    match encoding {
        Encoding::Json => json::encode(&output),
        Encoding::Cbor => put_records_cbor(&output),
    }
}

/// PutRecords's answer written as CBOR, its members in the JSON answer's order: a CBOR client's
/// 500 results are not written as JSON to be transcoded.
fn put_records_cbor(output: &PutRecordsOutput<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 96 * output.records.len());
    cbor::map(&mut out, 3);
    cbor::text(&mut out, "FailedRecordCount");
    cbor::integer(&mut out, i64::from(output.failed_record_count));
    cbor::text(&mut out, "Records");
    let count = output.records.len() as u64;
    let records = Container::array_of(&mut out, count);
    for entry in &output.records {
        let members = [
            entry
                .sequence_number
                .as_ref()
                .map(|s| ("SequenceNumber", s.as_str())),
            entry.shard_id.as_deref().map(|id| ("ShardId", id)),
            entry.error_code.map(|code| ("ErrorCode", code)),
            entry.error_message.as_deref().map(|m| ("ErrorMessage", m)),
        ];
        cbor::map(&mut out, members.iter().flatten().count() as u64);
        for (name, value) in members.into_iter().flatten() {
            cbor::text(&mut out, name);
            cbor::text(&mut out, value);
        }
    }
    records.close(&mut out, count);
    cbor::text(&mut out, "EncryptionType");
    cbor::text(&mut out, output.encryption_type);
    out
}

pub(super) async fn put_records(
    broker: &Arc<Broker>,
    body: Body<'_>,
    encoding: Encoding,
) -> Result<Vec<u8>, ApiError> {
    let input: PutRecordsInput = body.decode()?;
    let (stream, decoded) = decode_put_records(broker, &input)?;
    let results = store_records(broker, stream.clone(), &decoded.records()).await?;
    Ok(put_records_answer(broker, &stream, &results, encoding))
}

pub(super) async fn put_record(broker: &Arc<Broker>, body: Body<'_>) -> Result<Vec<u8>, ApiError> {
    let input: PutRecordInput = body.decode()?;
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
    let decoded = decode_records(&stream, std::slice::from_ref(&input.record), "")?;
    let (stream, ingest, landed) = store_routed(broker, stream, &decoded.records()).await?;
    let (part, at, shard) = match ingest.outcomes.first() {
        Some(&Outcome::Stored { part, at, shard }) => (part, at, shard),
        Some(&Outcome::Throttled { shard }) => {
            return Err(ApiError::new(
                ErrorKind::ProvisionedThroughputExceeded,
                throttled_message(broker, &stream, stream.shards[shard].key.shard_index),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::routing::{SequencePosition, SequenceText};

    #[test]
    fn a_put_records_answer_in_cbor_is_the_json_answer_transcoded() {
        let stored = |ordinal: u64, shard: &'static str| PutRecordsResultEntry {
            sequence_number: Some(SequenceText::of(SequencePosition {
                stream_key: 7,
                shard_index: 1,
                ordinal,
            })),
            shard_id: Some(Cow::Borrowed(shard)),
            error_code: None,
            error_message: None,
        };
        let failed = |code: &'static str, message: &str| PutRecordsResultEntry {
            sequence_number: None,
            shard_id: None,
            error_code: Some(code),
            error_message: Some(message.to_owned()),
        };
        // Every kind of result, and more than a one-byte array head holds.
        let mut records: Vec<PutRecordsResultEntry<'_>> = (1..=30)
            .map(|i| stored(i, "shardId-000000000001"))
            .collect();
        records.push(failed(
            "ProvisionedThroughputExceededException",
            "Rate exceeded for shard \"é\".",
        ));
        records.push(failed("InternalFailure", "Pod 2 is not there; retry."));
        for records in [records, Vec::new()] {
            let output = PutRecordsOutput {
                failed_record_count: records.iter().filter(|r| r.error_code.is_some()).count()
                    as u32,
                records,
                encryption_type: "NONE",
            };
            assert_eq!(
                put_records_cbor(&output),
                crate::broker::protocol::cbor::json_to_cbor(&json::encode(&output))
            );
        }
    }
}
