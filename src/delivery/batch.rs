//! Gathering records into batches and turning a batch into what is delivered — pure: no I/O,
//! times passed in.
//!
//! One batch gathers records from one source partition (a shard, or the direct-put journal),
//! so a batch is a contiguous range of positions and its identity (source, first, last) names
//! its object the same way every time it is delivered. A batch is due when its input bytes
//! reach the size hint or the interval has passed since its first record was buffered,
//! whichever comes first (Firehose's buffering hints).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;

use super::kpl;
use super::naming::BatchIdentity;
use crate::api::delivery::{Processing, RecordShape};

/// One record read from a source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Its position: a sequence number, or a journal offset.
    pub position: String,
    /// When it arrived at its source, in Unix milliseconds.
    pub arrival_ms: u64,
    /// Its data.
    pub data: Bytes,
}

/// The buffering hints, in the units the worker counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Input bytes at which a batch is due.
    pub size_bytes: usize,
    /// Time after a batch's first record at which it is due.
    pub interval: Duration,
}

/// Why a batch is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// It reached the size hint.
    Size,
    /// The interval passed.
    Interval,
    /// Its source partition ended (a closed shard is drained).
    SourceEnded,
}

impl FlushReason {
    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Interval => "interval",
            Self::SourceEnded => "source_ended",
        }
    }
}

/// A batch being gathered from one source partition.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The partition: a shard id, or `journal`.
    pub source: String,
    /// Its records, in position order.
    pub records: Vec<SourceRecord>,
    /// Their data bytes.
    pub bytes: usize,
    /// When its first record was buffered (worker clock, milliseconds).
    pub opened_ms: Option<u64>,
}

impl Batch {
    /// An empty batch of `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Adds a record buffered at `now_ms`.
    pub fn push(&mut self, record: SourceRecord, now_ms: u64) {
        self.opened_ms.get_or_insert(now_ms);
        self.bytes += record.data.len();
        self.records.push(record);
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// When it becomes due by the interval, if it holds records.
    pub fn deadline_ms(&self, limits: BufferLimits) -> Option<u64> {
        self.opened_ms
            .map(|opened| opened.saturating_add(limits.interval.as_millis() as u64))
    }

    /// Why it is due at `now_ms`, if it is.
    pub fn due(&self, now_ms: u64, limits: BufferLimits) -> Option<FlushReason> {
        if self.is_empty() {
            return None;
        }
        if self.bytes >= limits.size_bytes {
            return Some(FlushReason::Size);
        }
        match self.deadline_ms(limits) {
            Some(deadline) if now_ms >= deadline => Some(FlushReason::Interval),
            _ => None,
        }
    }

    /// Its identity: source and first and last positions.
    pub fn identity(&self) -> Option<BatchIdentity> {
        Some(BatchIdentity {
            source: self.source.clone(),
            first: self.records.first()?.position.clone(),
            last: self.records.last()?.position.clone(),
        })
    }

    /// Arrival time of its oldest record (the time its object is named by, as in Firehose).
    pub fn first_arrival_ms(&self) -> Option<u64> {
        self.records.iter().map(|r| r.arrival_ms).min()
    }
}

/// A record that could not be processed, for the error output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
    /// The source record.
    pub record: SourceRecord,
    /// Firehose's error code, such as `Kinesis.AggregatedRecordInvalid`.
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

/// A batch after processing: the records to deliver and those that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    /// Output records, in order (user records of an aggregate in their order).
    pub records: Vec<Bytes>,
    /// Records that could not be processed.
    pub failed: Vec<FailedRecord>,
}

/// Why `data` is not of the shape `require` asks for, if it is not.
fn misshapen(data: &[u8], require: RecordShape) -> Option<String> {
    match require {
        RecordShape::Any => None,
        RecordShape::Json => serde_json::from_slice::<serde::de::IgnoredAny>(data)
            .err()
            .map(|e| format!("the record is not JSON: {e}")),
        RecordShape::Utf8 => std::str::from_utf8(data)
            .err()
            .map(|e| format!("the record is not UTF-8 text: {e}")),
    }
}

/// Applies `processing` to a batch's records.
pub fn process(records: &[SourceRecord], processing: &Processing) -> Processed {
    let mut out = Processed::default();
    for record in records {
        if let Some(message) = misshapen(&record.data, processing.require) {
            out.failed.push(FailedRecord {
                record: record.clone(),
                code: "Channel.RecordFormatInvalid",
                message,
            });
            continue;
        }
        if !processing.deaggregate {
            out.records.push(record.data.clone());
            continue;
        }
        match kpl::deaggregate(&record.data) {
            Ok(None) => out.records.push(record.data.clone()),
            Ok(Some(users)) => out
                .records
                .extend(users.into_iter().map(|u| Bytes::from(u.data))),
            Err(error) => out.failed.push(FailedRecord {
                record: record.clone(),
                code: "Kinesis.AggregatedRecordInvalid",
                message: error.to_string(),
            }),
        }
    }
    out
}

/// One line of an error-output object, with Firehose's field names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine<'a> {
    attempts_made: u32,
    arrival_timestamp: u64,
    error_code: &'a str,
    error_message: &'a str,
    attempt_ending_timestamp: u64,
    raw_data: String,
    source_position: &'a str,
}

/// The error-output content for records that failed: one JSON object per line.
pub fn error_lines(
    failed: impl IntoIterator<Item = (SourceRecord, String, String)>,
    attempts: u32,
    now_ms: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (record, code, message) in failed {
        let line = ErrorLine {
            attempts_made: attempts,
            arrival_timestamp: record.arrival_ms,
            error_code: &code,
            error_message: &message,
            attempt_ending_timestamp: now_ms,
            raw_data: base64::engine::general_purpose::STANDARD.encode(&record.data),
            source_position: &record.position,
        };
        // Serializing a struct of strings and numbers cannot fail.
        if let Ok(json) = serde_json::to_vec(&line) {
            out.extend_from_slice(&json);
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(position: u64, arrival_ms: u64, data: &[u8]) -> SourceRecord {
        SourceRecord {
            position: position.to_string(),
            arrival_ms,
            data: Bytes::copy_from_slice(data),
        }
    }

    const LIMITS: BufferLimits = BufferLimits {
        size_bytes: 10,
        interval: Duration::from_secs(5),
    };

    #[test]
    fn delivery_batch_is_due_at_the_size_hint_or_the_interval() {
        let mut batch = Batch::new("shardId-000000000000");
        assert_eq!(
            batch.due(u64::MAX, LIMITS),
            None,
            "an empty batch is never due"
        );
        assert_eq!(batch.deadline_ms(LIMITS), None);
        batch.push(record(1, 100, b"12345"), 1_000);
        assert_eq!(batch.deadline_ms(LIMITS), Some(6_000));
        assert_eq!(batch.due(5_999, LIMITS), None);
        assert_eq!(batch.due(6_000, LIMITS), Some(FlushReason::Interval));
        batch.push(record(2, 200, b"67890"), 2_000);
        assert_eq!(batch.due(2_000, LIMITS), Some(FlushReason::Size));
        assert_eq!(
            batch.deadline_ms(LIMITS),
            Some(6_000),
            "the first record opens it"
        );
        let identity = batch.identity().expect("identity");
        assert_eq!(
            (identity.first.as_str(), identity.last.as_str()),
            ("1", "2")
        );
        assert_eq!(batch.first_arrival_ms(), Some(100));
    }

    #[test]
    fn delivery_interval_zero_delivers_whatever_was_read() {
        let limits = BufferLimits {
            size_bytes: 1 << 20,
            interval: Duration::ZERO,
        };
        let mut batch = Batch::new("journal");
        batch.push(record(7, 1, b"x"), 50);
        assert_eq!(batch.due(50, limits), Some(FlushReason::Interval));
    }

    #[test]
    fn delivery_processing_deaggregates_and_sets_bad_aggregates_aside() {
        let plain = record(1, 1, b"plain");
        let mut bad = kpl::MAGIC.to_vec();
        bad.extend_from_slice(&[0u8; 20]);
        let bad = record(2, 1, &bad);
        let processing = Processing {
            deaggregate: true,
            append_newline: true,
            require: RecordShape::Any,
        };
        let out = process(&[plain.clone(), bad.clone()], &processing);
        assert_eq!(out.records, vec![Bytes::from_static(b"plain")]);
        assert_eq!(out.failed.len(), 1);
        assert_eq!(out.failed[0].record, bad);
        assert_eq!(out.failed[0].code, "Kinesis.AggregatedRecordInvalid");

        let untouched = process(std::slice::from_ref(&bad), &Processing::default());
        assert_eq!(untouched.records, vec![bad.data.clone()]);
        assert!(untouched.failed.is_empty());
    }

    #[test]
    fn channel_records_of_the_wrong_format_are_set_aside() {
        let json = record(1, 1, br#"{"click":1}"#);
        let text = record(2, 1, "d\u{e9}j\u{e0} vu".as_bytes());
        let binary = record(3, 1, b"\xff\xfe\x00");
        let all = [json.clone(), text.clone(), binary.clone()];
        let shaped = |require| {
            let out = process(
                &all,
                &Processing {
                    require,
                    ..Processing::default()
                },
            );
            let failed: Vec<_> = out
                .failed
                .iter()
                .map(|f| f.record.position.clone())
                .collect();
            (out.records.len(), failed)
        };
        assert_eq!(shaped(RecordShape::Any), (3, vec![]));
        assert_eq!(shaped(RecordShape::Utf8), (2, vec!["3".to_owned()]));
        assert_eq!(
            shaped(RecordShape::Json),
            (1, vec!["2".to_owned(), "3".to_owned()])
        );
    }

    #[test]
    fn delivery_error_lines_carry_the_raw_data_in_base64() {
        let lines = error_lines(
            [(record(9, 1234, b"\x00\x01"), "Code".into(), "why".into())],
            3,
            5678,
        );
        let line: serde_json::Value =
            serde_json::from_slice(lines.strip_suffix(b"\n").expect("newline")).expect("json");
        assert_eq!(line["rawData"], "AAE=");
        assert_eq!(line["attemptsMade"], 3);
        assert_eq!(line["arrivalTimestamp"], 1234);
        assert_eq!(line["errorCode"], "Code");
        assert_eq!(line["sourcePosition"], "9");
    }
}
