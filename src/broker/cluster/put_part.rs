//! The records of a PutRecords that one pod stores, as the pod the client reached sends them
//! to it: decoded already (data as bytes, hash key computed), in a compact binary body on the
//! internal port, answered with each record's shard and offset. The owner neither parses JSON
//! nor decodes base64 again, and the sender formats the sequence numbers.
//!
//! Request (`POST /cluster/put`, little-endian): the stream's key (`u32`), its name (`u16`
//! length, UTF-8), the record count (`u32`), then per record its partition key (`u16` length,
//! UTF-8), its hash key (`u128`) and its data (`u32` length, bytes). Answer (200): the count
//! (`u32`), then per record a tag — `0` stored, with the shard index (`u32`) and offset
//! (`u64`); `1` throttled, with the shard index. Any other status carries the refusal as
//! a Kinesis error document, and every record of the part fails with its message.

use std::sync::Arc;

use serde_json::json;

use super::Cluster;
use crate::broker::ops::put::{self, PutRecord, RecordResult};
use crate::broker::ops::{self, Caller};
use crate::broker::protocol::body::Body;
use crate::broker::protocol::json;
use crate::broker::protocol::{ApiError, ErrorKind, Operation};
use crate::broker::state::Broker;

/// The internal path parts are sent to.
pub const PUT_PATH: &str = "/cluster/put";

/// Why a part's body or answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// The body ends inside a field.
    #[error("the part ends early, in {0}")]
    Truncated(&'static str),
    /// A text field is not UTF-8.
    #[error("the part's {0} is not UTF-8")]
    NotText(&'static str),
    /// Bytes follow the last record.
    #[error("the part has {0} bytes after its last record")]
    Trailing(usize),
    /// A field is longer than its length prefix can say.
    #[error("the part's {0} is too long")]
    TooLong(&'static str),
}

/// A part as the owner reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// The stream's key, so a stream deleted and made again under its name is not written.
    pub stream_key: u32,
    /// The stream's name.
    pub stream_name: &'a str,
    /// The records, in the order their results go back.
    pub records: Vec<PutRecord<'a>>,
}

/// A part's body with the record count still open: parts of the same stream and caller for
/// the same pod join into one body ([`EncodedPart::join`]) and go in one exchange.
#[derive(Debug)]
pub struct EncodedPart {
    /// The header (the count field last) and the records.
    bytes: Vec<u8>,
    /// Where the records begin.
    records_at: usize,
    /// How many records it holds.
    count: usize,
}

impl EncodedPart {
    /// How many records it holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The body's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// One body holding this part's records and then `more`'s (parts of the same stream),
    /// in order.
    pub fn join(mut self, more: &[EncodedPart]) -> Result<Vec<u8>, PartError> {
        let extra: usize = more.iter().map(|p| p.bytes.len() - p.records_at).sum();
        self.bytes.reserve(extra);
        for part in more {
            self.bytes.extend_from_slice(&part.bytes[part.records_at..]);
            self.count += part.count;
        }
        let count = u32::try_from(self.count).map_err(|_| PartError::TooLong("record list"))?;
        self.bytes[self.records_at - 4..self.records_at].copy_from_slice(&count.to_le_bytes());
        Ok(self.bytes)
    }
}

/// Encodes a part of `stream`'s records, its count left to [`EncodedPart::join`].
pub fn encode_part(
    stream_key: u32,
    stream_name: &str,
    records: &[PutRecord<'_>],
) -> Result<EncodedPart, PartError> {
    let size: usize = records
        .iter()
        .map(|r| 22 + r.key.len() + r.data.len())
        .sum();
    let mut bytes = Vec::with_capacity(size + stream_name.len() + 10);
    bytes.extend_from_slice(&stream_key.to_le_bytes());
    put_short(&mut bytes, stream_name, "stream name")?;
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let records_at = bytes.len();
    for record in records {
        put_short(&mut bytes, record.key, "partition key")?;
        bytes.extend_from_slice(&record.hash.to_le_bytes());
        let len = u32::try_from(record.data.len()).map_err(|_| PartError::TooLong("data"))?;
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(record.data);
    }
    Ok(EncodedPart {
        bytes,
        records_at,
        count: records.len(),
    })
}

fn put_short(out: &mut Vec<u8>, text: &str, field: &'static str) -> Result<(), PartError> {
    let len = u16::try_from(text.len()).map_err(|_| PartError::TooLong(field))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Reads fields off the front of a body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PartError> {
        if self.rest.len() < n {
            return Err(PartError::Truncated(field));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PartError> {
        let bytes = self.take(N, field)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, PartError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, PartError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, PartError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn text(&mut self, field: &'static str) -> Result<&'a str, PartError> {
        let len = u16::from_le_bytes(self.array(field)?);
        let bytes = self.take(usize::from(len), field)?;
        std::str::from_utf8(bytes).map_err(|_| PartError::NotText(field))
    }

    fn finish(self) -> Result<(), PartError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(PartError::Trailing(n)),
        }
    }
}

/// Reads a part's body.
pub fn decode(body: &[u8]) -> Result<Part<'_>, PartError> {
    let mut reader = Reader { rest: body };
    let stream_key = reader.u32("stream key")?;
    let stream_name = reader.text("stream name")?;
    let count = reader.u32("record count")?;
    // Each record takes at least 22 bytes: a count the body cannot hold is refused before
    // anything is reserved for it.
    if usize::try_from(count).map_or(true, |c| c.saturating_mul(22) > reader.rest.len()) {
        return Err(PartError::Truncated("records"));
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key = reader.text("partition key")?;
        let hash = u128::from_le_bytes(reader.array("hash key")?);
        let len = reader.u32("data length")?;
        let data = reader.take(len as usize, "data")?;
        records.push(PutRecord { key, data, hash });
    }
    reader.finish()?;
    Ok(Part {
        stream_key,
        stream_name,
        records,
    })
}

/// Encodes the owner's answer: each record stored or throttled.
pub fn encode_answer(results: &[RecordResult]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + results.len() * 13);
    out.extend_from_slice(&(results.len() as u32).to_le_bytes());
    for result in results {
        match result {
            RecordResult::Stored {
                shard_index,
                offset,
            } => {
                out.push(0);
                out.extend_from_slice(&shard_index.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
            RecordResult::Throttled { shard_index } => {
                out.push(1);
                out.extend_from_slice(&shard_index.to_le_bytes());
            }
            RecordResult::Failed(why) => {
                out.push(2);
                out.extend_from_slice(&u32::MAX.to_le_bytes());
                let why = truncated(why, usize::from(u16::MAX));
                out.extend_from_slice(&(why.len() as u16).to_le_bytes());
                out.extend_from_slice(why.as_bytes());
            }
        }
    }
    out
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads the owner's answer.
pub fn decode_answer(body: &[u8]) -> Result<Vec<RecordResult>, PartError> {
    let mut reader = Reader { rest: body };
    let count = reader.u32("result count")?;
    if usize::try_from(count).map_or(true, |c| c.saturating_mul(5) > reader.rest.len()) {
        return Err(PartError::Truncated("results"));
    }
    let mut results = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let tag = reader.u8("result tag")?;
        let shard_index = reader.u32("shard index")?;
        results.push(match tag {
            0 => RecordResult::Stored {
                shard_index,
                offset: reader.u64("offset")?,
            },
            1 => RecordResult::Throttled { shard_index },
            _ => RecordResult::Failed(reader.text("failure")?.to_owned()),
        });
    }
    reader.finish()?;
    Ok(results)
}

/// Serves a part on the owner: stores its records here (a record whose shard this pod's map
/// places elsewhere refuses the whole part, as a misrouted request is refused) and answers.
pub async fn serve(broker: &Arc<Broker>, caller: Option<Caller>, body: &[u8]) -> (u16, Vec<u8>) {
    match store(broker, caller, body).await {
        Ok(results) => (200, encode_answer(&results)),
        Err(error) => (error.kind.status(), error.body()),
    }
}

async fn store(
    broker: &Arc<Broker>,
    caller: Option<Caller>,
    body: &[u8],
) -> Result<Vec<RecordResult>, ApiError> {
    let caller = caller.ok_or_else(|| {
        ApiError::new(
            ErrorKind::AccessDenied,
            "An internal write must name its caller.",
        )
    })?;
    let part = decode(body).map_err(|e| ApiError::new(ErrorKind::Serialization, e.to_string()))?;
    match store_part(broker, &caller, &part).await {
        // This pod's map places a record elsewhere or nowhere: the sender's map may be newer.
        // Once caught up, the part is tried again.
        Err(refused) if super::replica::catch_up_after_refusal(broker, &refused).await => {
            store_part(broker, &caller, &part).await
        }
        stored => stored,
    }
}

/// Stores a part's records under this pod's map as it is.
async fn store_part(
    broker: &Arc<Broker>,
    caller: &Caller,
    part: &Part<'_>,
) -> Result<Vec<RecordResult>, ApiError> {
    let stream = broker.resolve(Some(part.stream_name), None)?;
    if stream.record.key != part.stream_key {
        return Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Stream {} was deleted and created again since the records were sent.",
                part.stream_name
            ),
        ));
    }
    // The pod the client reached verified its signature and authorized the write; the
    // stream's policy is checked again here, against this pod's replica of it.
    let named = serde_json::to_vec(&json!({"StreamName": part.stream_name})).unwrap_or_default();
    ops::authorize(broker, Operation::PutRecords, Body::Json(&named), caller)?;
    put::store_records(broker, stream, &part.records).await
}

/// Sends a part's `body` of `count` records to pod `owner` and reads what became of each.
pub async fn exchange(
    cluster: &Cluster,
    owner: u32,
    body: Vec<u8>,
    count: usize,
    caller: &str,
) -> Result<Vec<RecordResult>, String> {
    let request = http::Request::post(PUT_PATH)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(super::CALLER_HEADER, caller);
    let (status, bytes) = cluster
        .exchange(owner, request, PUT_PATH, body.into())
        .await
        .map_err(|e| e.to_string())?;
    if status != http::StatusCode::OK {
        let refusal: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let (json::FailedAnswer::Unavailable(why) | json::FailedAnswer::Api { message: why, .. }) =
            json::failed_answer(status, &refusal);
        return Err(format!("Pod {owner} refused the records: {why}"));
    }
    let results = decode_answer(&bytes).map_err(|e| format!("Pod {owner} answered badly: {e}"))?;
    if results.len() != count {
        return Err(format!(
            "Pod {owner} answered {} results for {count} records.",
            results.len(),
        ));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part of `stream`'s records, sent alone.
    fn encode(
        stream_key: u32,
        stream_name: &str,
        records: &[PutRecord<'_>],
    ) -> Result<Vec<u8>, PartError> {
        encode_part(stream_key, stream_name, records)?.join(&[])
    }

    fn record<'a>(key: &'a str, data: &'a [u8], hash: u128) -> PutRecord<'a> {
        PutRecord { key, data, hash }
    }

    #[test]
    fn cluster_a_part_reads_back_as_it_was_written() {
        let records = vec![
            record("k1", b"first", 1),
            record("ключ", b"", u128::MAX),
            record("k3", &[0u8, 255, 7], 1u128 << 100),
        ];
        let body = encode(7, "orders", &records).expect("encodes");
        let part = decode(&body).expect("decodes");
        assert_eq!(
            part,
            Part {
                stream_key: 7,
                stream_name: "orders",
                records: records.clone()
            }
        );
        // Every cut short of the end is refused, never read as fewer records.
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut} was read");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(PartError::Trailing(1)));
        // A count the body cannot hold reserves nothing.
        let mut huge = 7u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&0u16.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Err(PartError::Truncated("records")));
    }

    #[test]
    fn cluster_a_part_answer_reads_back_in_order() {
        let results = vec![
            RecordResult::Stored {
                shard_index: 3,
                offset: 41,
            },
            RecordResult::Throttled { shard_index: 2 },
            RecordResult::Stored {
                shard_index: 3,
                offset: u64::MAX,
            },
            RecordResult::Failed("the shard's pod is restarting".to_owned()),
        ];
        let body = encode_answer(&results);
        assert_eq!(decode_answer(&body), Ok(results));
        for cut in 0..body.len() {
            assert!(
                decode_answer(&body[..cut]).is_err(),
                "cut at {cut} was read"
            );
        }
    }

    #[test]
    fn cluster_a_key_or_name_too_long_for_its_prefix_is_refused() {
        let long = "k".repeat(70_000);
        assert_eq!(
            encode(1, "s", &[record(&long, b"", 0)]),
            Err(PartError::TooLong("partition key"))
        );
    }
}
