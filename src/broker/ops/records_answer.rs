//! The answers that carry records — GetRecords' and SubscribeToShard's events — in JSON, or
//! written straight as CBOR for a CBOR request: the records are most of such an answer, and
//! writing them as JSON only to transcode them (base64 text parsed and decoded again) cost a
//! CBOR reader twice a JSON reader's time.

use std::io::Write;

use crate::broker::protocol::cbor::write::{self as cbor, Container};
use crate::broker::protocol::{ApiError, ErrorKind, write_base64, write_timestamp};
use crate::broker::routing::SequenceTexts;
use crate::broker::shard::ReadOutcome;

/// The encoding an answer is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON 1.1.
    Json,
    /// CBOR 1.1: blobs as byte strings, timestamps as tag 1 around epoch milliseconds.
    Cbor,
}

/// What [`RecordsAnswer::records`] wrote.
pub(super) struct Written {
    /// Records written.
    pub count: u64,
    /// Data and key bytes written.
    pub bytes: u64,
    /// Arrival time of the last batch written from.
    pub last_arrival_ms: Option<u64>,
}

/// An answer document being written, member by member, in its encoding.
pub(super) struct RecordsAnswer {
    out: Vec<u8>,
    encoding: Encoding,
    members_left: u64,
}

impl RecordsAnswer {
    /// Starts an answer of `members` members (a CBOR map says its size first) with room for
    /// the records of `outcome`.
    pub fn new(encoding: Encoding, members: u64, outcome: &ReadOutcome) -> Self {
        // JSON carries data in base64 (4/3 of its bytes) and more punctuation per record.
        let room = |body: usize, records: usize| match encoding {
            Encoding::Json => body * 4 / 3 + 160 * records,
            Encoding::Cbor => body + 120 * records,
        };
        let capacity = outcome
            .batches
            .iter()
            .map(|b| room(b.body.len(), b.take as usize))
            .sum::<usize>()
            + 512;
        let mut out = Vec::with_capacity(capacity);
        match encoding {
            Encoding::Json => out.push(b'{'),
            Encoding::Cbor => cbor::map(&mut out, members),
        }
        Self {
            out,
            encoding,
            members_left: members,
        }
    }

    /// Writes a member's name (and, in JSON, the comma before it).
    fn name(&mut self, name: &str) {
        match self.encoding {
            Encoding::Json => {
                if self.out.len() > 1 {
                    self.out.push(b',');
                }
                self.out.push(b'"');
                self.out.extend_from_slice(name.as_bytes());
                self.out.extend_from_slice(b"\":");
            }
            Encoding::Cbor => cbor::text(&mut self.out, name),
        }
        self.members_left = self.members_left.saturating_sub(1);
    }

    /// A text member (`value` needs no JSON escaping: iterators and sequence numbers).
    pub fn plain_text(&mut self, name: &str, value: &str) {
        self.name(name);
        match self.encoding {
            Encoding::Json => {
                self.out.push(b'"');
                self.out.extend_from_slice(value.as_bytes());
                self.out.push(b'"');
            }
            Encoding::Cbor => cbor::text(&mut self.out, value),
        }
    }

    /// A number member.
    pub fn number(&mut self, name: &str, value: u64) {
        self.name(name);
        match self.encoding {
            Encoding::Json => {
                let _ = write!(self.out, "{value}");
            }
            Encoding::Cbor => cbor::integer(&mut self.out, value as i64),
        }
    }

    /// A member of any shape without blobs or timestamps.
    pub fn value(&mut self, name: &str, value: &serde_json::Value) {
        self.name(name);
        let json = serde_json::to_vec(value).unwrap_or_default();
        match self.encoding {
            Encoding::Json => self.out.extend_from_slice(&json),
            Encoding::Cbor => self
                .out
                .extend_from_slice(&crate::broker::protocol::cbor::json_to_cbor(&json)),
        }
    }

    /// The `Records` member: every record of a read of shard `shard_index` of the stream
    /// with key `stream_key`.
    pub fn records(
        &mut self,
        stream_key: u32,
        shard_index: u32,
        outcome: &ReadOutcome,
    ) -> Result<Written, ApiError> {
        self.name("Records");
        let array = match self.encoding {
            Encoding::Json => {
                self.out.push(b'[');
                None
            }
            // A read returns what its batches say it takes, so the head is right at once
            // (a large answer is not moved along to widen it).
            Encoding::Cbor => Some(Container::array_of(
                &mut self.out,
                outcome.batches.iter().map(|b| u64::from(b.take)).sum(),
            )),
        };
        let mut written = Written {
            count: 0,
            bytes: 0,
            last_arrival_ms: None,
        };
        let mut sequences = SequenceTexts::default();
        for read in outcome.records() {
            let read =
                read.map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
            let record = read.record;
            let sequence = sequences.record(stream_key, shard_index, read.offset);
            match self.encoding {
                Encoding::Json => {
                    if written.count > 0 {
                        self.out.push(b',');
                    }
                    let out = &mut self.out;
                    out.extend_from_slice(b"{\"SequenceNumber\":\"");
                    out.extend_from_slice(sequence.as_str().as_bytes());
                    out.extend_from_slice(b"\",\"ApproximateArrivalTimestamp\":");
                    write_timestamp(out, read.arrival_ms);
                    out.extend_from_slice(b",\"Data\":\"");
                    write_base64(out, record.data);
                    out.extend_from_slice(b"\",\"PartitionKey\":");
                    if serde_json::to_writer(&mut *out, record.partition_key).is_err() {
                        out.extend_from_slice(b"\"\"");
                    }
                    out.extend_from_slice(b",\"EncryptionType\":\"NONE\"}");
                }
                Encoding::Cbor => {
                    let out = &mut self.out;
                    cbor::map(out, 5);
                    cbor::text(out, "SequenceNumber");
                    cbor::text(out, sequence.as_str());
                    cbor::text(out, "ApproximateArrivalTimestamp");
                    cbor::epoch_ms(out, read.arrival_ms as i64);
                    cbor::text(out, "Data");
                    cbor::bytes(out, record.data);
                    cbor::text(out, "PartitionKey");
                    cbor::text(out, record.partition_key);
                    cbor::text(out, "EncryptionType");
                    cbor::text(out, "NONE");
                }
            }
            written.count += 1;
            written.bytes += (record.data.len() + record.partition_key.len()) as u64;
            written.last_arrival_ms = Some(read.arrival_ms);
        }
        match array {
            None => self.out.push(b']'),
            Some(array) => array.close(&mut self.out, written.count),
        }
        Ok(written)
    }

    /// The finished document.
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert_eq!(self.members_left, 0, "an answer's members were miscounted");
        if self.encoding == Encoding::Json {
            self.out.push(b'}');
        }
        self.out
    }
}
