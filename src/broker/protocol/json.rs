//! The JSON 1.1 codec: request and response shapes named exactly as in the Kinesis API model.
//!
//! Required members are `Option`s here so a missing one gets the model's ValidationException
//! instead of a serde error; data blobs stay borrowed base64 text until the request task
//! decodes them straight into a batch body.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use super::{ApiError, ErrorKind};

/// What a client makes of a failed answer of the JSON 1.1 API (the operator's admin calls and a
/// delivery worker's reads, both talking to Brook's brokers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedAnswer {
    /// 503: the broker (or the pod a request was relayed to) is not there; retry later.
    Unavailable(String),
    /// A Kinesis error: its code (the `__type` after any `#` namespace) and message.
    Api {
        /// Such as `ResourceNotFoundException`.
        code: String,
        /// The message, `message` or `Message`.
        message: String,
    },
}

/// Reads the error out of an answer with a non-2xx `status` and JSON `answer`.
pub fn failed_answer(status: http::StatusCode, answer: &serde_json::Value) -> FailedAnswer {
    let message = answer["message"]
        .as_str()
        .or(answer["Message"].as_str())
        .unwrap_or_default()
        .to_owned();
    if status == http::StatusCode::SERVICE_UNAVAILABLE {
        return FailedAnswer::Unavailable(if message.is_empty() {
            "503".to_owned()
        } else {
            message
        });
    }
    let code = answer["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| format!("HTTP {status}"));
    FailedAnswer::Api { code, message }
}

/// Decodes a request body; an empty body counts as `{}`.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| {
        let message = if error.is_data() {
            format!("Invalid request shape: {error}")
        } else {
            format!("Malformed JSON: {error}")
        };
        ApiError::new(ErrorKind::Serialization, message)
    })
}

/// Reads an optional string member, borrowing it from the body when it holds no escapes.
/// serde borrows into a bare `Cow<str>` field marked `borrow`, but an `Option<Cow<str>>` it
/// always copies; a field deserialized with this borrows — for PutRecords, no allocation per
/// record for its data and partition key. For fields `#[serde(borrow, default,
/// deserialize_with = "...")]` (`default`, as a missing member is `None`).
pub fn borrowed_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'de>>::deserialize(deserializer)?.map(|text| text.0))
}

/// A blob member as the client sent it: base64 text in JSON, bytes in CBOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob<'a> {
    /// Base64 text, still encoded.
    Base64(Cow<'a, str>),
    /// The bytes themselves.
    Bytes(Cow<'a, [u8]>),
}

impl Blob<'_> {
    /// An upper bound of the blob's decoded length.
    pub fn decoded_len_bound(&self) -> usize {
        match self {
            Self::Base64(text) => text.len() / 4 * 3 + 3,
            Self::Bytes(bytes) => bytes.len(),
        }
    }
}

/// Reads an optional blob member, borrowing it from the body where it can (as
/// [`borrowed_text`] does). For fields `#[serde(borrow, default, deserialize_with = "...")]`.
pub fn borrowed_blob<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Blob<'de>>, D::Error> {
    struct BlobVisitor;

    impl<'de> serde::de::Visitor<'de> for BlobVisitor {
        type Value = Blob<'de>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            // What a string member of the wrong type is told, as a JSON client always was.
            formatter.write_str("a string")
        }

        fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
            Ok(Blob::Base64(Cow::Borrowed(text)))
        }

        fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Blob::Base64(Cow::Owned(text.to_owned())))
        }

        fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
            Ok(Blob::Base64(Cow::Owned(text)))
        }

        fn visit_borrowed_bytes<E>(self, bytes: &'de [u8]) -> Result<Self::Value, E> {
            Ok(Blob::Bytes(Cow::Borrowed(bytes)))
        }

        fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Self::Value, E> {
            Ok(Blob::Bytes(Cow::Owned(bytes.to_vec())))
        }

        fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
            Ok(Blob::Bytes(Cow::Owned(bytes)))
        }
    }

    struct Member<'a>(Blob<'a>);

    impl<'de> Deserialize<'de> for Member<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(BlobVisitor).map(Member)
        }
    }

    Ok(Option::<Member<'de>>::deserialize(deserializer)?.map(|member| member.0))
}

/// Encodes a response body.
pub fn encode<T: Serialize>(response: &T) -> Vec<u8> {
    serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec())
}

/// Epoch milliseconds, serialized as epoch seconds with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub u64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0 as f64 / 1000.0)
    }
}

/// A stream named by name or ARN, as most operations accept it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamRef {
    /// The stream's name.
    pub stream_name: Option<String>,
    /// The stream's ARN.
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
}

/// CreateStream's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateStreamInput {
    /// Name of the new stream.
    pub stream_name: Option<String>,
    /// Shards to start with (required for provisioned streams).
    pub shard_count: Option<i64>,
    /// Provisioned or on-demand.
    pub stream_mode_details: Option<StreamModeDetails>,
    /// Tags to set on the new stream.
    pub tags: Option<BTreeMap<String, String>>,
    /// Largest record size, in KiB.
    #[serde(rename = "MaxRecordSizeInKiB")]
    pub max_record_size_in_kib: Option<i64>,
    /// AUTO or USER_PARTITION_KEY (the model checks the value).
    pub record_distribution_strategy: Option<String>,
}

/// A stream's capacity mode.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamModeDetails {
    /// `PROVISIONED` or `ON_DEMAND`.
    pub stream_mode: String,
}

/// DeleteStream's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteStreamInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// Delete even if consumers are registered.
    pub enforce_consumer_deletion: Option<bool>,
}

/// DescribeStream's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// Most shards to describe.
    pub limit: Option<i64>,
    /// Describe shards after this one.
    pub exclusive_start_shard_id: Option<String>,
}

/// ListStreams's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsInput {
    /// Most streams to list.
    pub limit: Option<i64>,
    /// List streams after this name.
    pub exclusive_start_stream_name: Option<String>,
    /// Continue a previous listing.
    pub next_token: Option<String>,
}

/// ListShards's filter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardFilter {
    /// The filter type.
    #[serde(rename = "Type")]
    pub filter_type: Option<String>,
    /// With `AFTER_SHARD_ID`: the shard.
    pub shard_id: Option<String>,
    /// With `AT_TIMESTAMP` and `FROM_TIMESTAMP`: the time, epoch seconds.
    pub timestamp: Option<f64>,
}

/// ListShards's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// Continue a previous listing.
    pub next_token: Option<String>,
    /// List shards after this one.
    pub exclusive_start_shard_id: Option<String>,
    /// Most shards to list.
    pub max_results: Option<i64>,
    /// The stream's creation time, to tell apart streams of the same name.
    pub stream_creation_timestamp: Option<f64>,
    /// Which shards to list.
    pub shard_filter: Option<ShardFilter>,
}

/// One record of a put, with its data as the client sent it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsEntry<'a> {
    /// The data blob: base64 text (JSON) or bytes (CBOR).
    #[serde(borrow, default, deserialize_with = "borrowed_blob")]
    pub data: Option<Blob<'a>>,
    /// Partition key.
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub partition_key: Option<Cow<'a, str>>,
    /// Hash key overriding the partition key's.
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub explicit_hash_key: Option<Cow<'a, str>>,
}

/// PutRecord's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordInput<'a> {
    /// The stream's name.
    pub stream_name: Option<String>,
    /// The stream's ARN.
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
    /// The record.
    #[serde(flatten, borrow)]
    pub record: PutRecordsEntry<'a>,
    /// Accepted and ignored: Brook's sequence numbers always increase per shard.
    pub sequence_number_for_ordering: Option<String>,
    /// The stream's id (checked against the model, not used).
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub stream_id: Option<Cow<'a, str>>,
    /// Accepted and ignored (read so a value of the wrong type is refused).
    pub dry_run: Option<bool>,
}

/// PutRecords's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsInput<'a> {
    /// The stream's name.
    pub stream_name: Option<String>,
    /// The stream's ARN.
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
    /// The records.
    #[serde(borrow)]
    pub records: Option<Vec<PutRecordsEntry<'a>>>,
    /// The stream's id (checked against the model, not used).
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub stream_id: Option<Cow<'a, str>>,
    /// Accepted and ignored (read so a value of the wrong type is refused).
    pub dry_run: Option<bool>,
}

/// PutRecord's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    /// The shard the record went to.
    pub shard_id: String,
    /// The record's sequence number.
    pub sequence_number: String,
    /// Always `NONE`.
    pub encryption_type: &'static str,
}

/// One result of PutRecords: a sequence number or an error.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsResultEntry<'a> {
    /// The record's sequence number, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<crate::broker::routing::SequenceText>,
    /// The shard the record went to, on success (borrowed from the stream: the 500 results
    /// of a request name a few shards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_id: Option<std::borrow::Cow<'a, str>>,
    /// The error type, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    /// The error message, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// PutRecords's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutput<'a> {
    /// Records that failed.
    pub failed_record_count: u32,
    /// One result per record, in request order.
    pub records: Vec<PutRecordsResultEntry<'a>>,
    /// Always `NONE`.
    pub encryption_type: &'static str,
}

/// GetShardIterator's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// The shard.
    pub shard_id: Option<String>,
    /// Where to start.
    pub shard_iterator_type: Option<String>,
    /// With `AT_`/`AFTER_SEQUENCE_NUMBER`: the sequence number.
    pub starting_sequence_number: Option<String>,
    /// With `AT_TIMESTAMP`: the time, epoch seconds.
    pub timestamp: Option<f64>,
}

/// GetShardIterator's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorOutput {
    /// The iterator.
    pub shard_iterator: String,
}

/// GetRecords's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsInput {
    /// The iterator.
    pub shard_iterator: Option<String>,
    /// Most records to return.
    pub limit: Option<i64>,
    /// The stream's ARN, which must match the iterator's stream.
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
    /// The stream's id (checked against the model, not used).
    pub stream_id: Option<String>,
    /// Accepted and ignored (read so a value of the wrong type is refused).
    pub dry_run: Option<bool>,
}

/// Increase- and DecreaseStreamRetentionPeriod's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetentionInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// The new retention, in hours.
    pub retention_period_hours: Option<i64>,
}

/// AddTagsToStream's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddTagsInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// Tags to add or overwrite.
    pub tags: Option<BTreeMap<String, String>>,
}

/// RemoveTagsFromStream's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoveTagsInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// Keys of the tags to remove.
    pub tag_keys: Option<Vec<String>>,
}

/// ListTagsForStream's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// List tags after this key.
    pub exclusive_start_tag_key: Option<String>,
    /// Most tags to list.
    pub limit: Option<i64>,
}

/// A tag.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// A shard's hash key range, as decimal strings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HashKeyRange {
    /// First hash key.
    pub starting_hash_key: String,
    /// Last hash key.
    pub ending_hash_key: String,
}

/// A shard's sequence number range.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceNumberRange {
    /// First sequence number.
    pub starting_sequence_number: String,
    /// Last sequence number, for a closed shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ending_sequence_number: Option<String>,
}

/// A shard, as DescribeStream and ListShards show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Shard {
    /// The shard's id.
    pub shard_id: String,
    /// The shard it was split from or merged into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_shard_id: Option<String>,
    /// The other parent of a merge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjacent_parent_shard_id: Option<String>,
    /// Its hash keys.
    pub hash_key_range: HashKeyRange,
    /// Its sequence numbers.
    pub sequence_number_range: SequenceNumberRange,
}

/// Enhanced monitoring settings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnhancedMetrics {
    /// Enabled shard-level metrics.
    pub shard_level_metrics: Vec<String>,
}

/// SplitShard's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SplitShardInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// The shard to split.
    pub shard_to_split: Option<String>,
    /// The first hash key of the upper child.
    pub new_starting_hash_key: Option<String>,
}

/// MergeShards's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MergeShardsInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// One shard.
    pub shard_to_merge: Option<String>,
    /// The shard adjacent to it.
    pub adjacent_shard_to_merge: Option<String>,
}

/// UpdateShardCount's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountInput {
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamRef,
    /// Open shards wanted.
    pub target_shard_count: Option<i64>,
    /// Only `UNIFORM_SCALING`.
    pub scaling_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_records_members_are_borrowed_from_the_body_unless_escaped() {
        let body = br#"{"StreamName":"s","Records":[
            {"Data":"AAEC","PartitionKey":"key-1"},
            {"Data":"AAEC","PartitionKey":"a\"b","ExplicitHashKey":"7"},
            {"PartitionKey":"k"}]}"#;
        let input: PutRecordsInput = decode(body).expect("decodes");
        let records = input.records.expect("records");
        let borrowed = |text: &Option<Cow<'_, str>>| matches!(text, Some(Cow::Borrowed(_)));
        assert!(matches!(
            records[0].data,
            Some(Blob::Base64(Cow::Borrowed("AAEC")))
        ));
        assert!(borrowed(&records[0].partition_key));
        assert_eq!(records[0].partition_key.as_deref(), Some("key-1"));
        assert_eq!(records[1].partition_key.as_deref(), Some("a\"b"));
        assert!(matches!(records[1].partition_key, Some(Cow::Owned(_))));
        assert_eq!(records[1].explicit_hash_key.as_deref(), Some("7"));
        assert_eq!(
            (
                records[2].data.as_ref(),
                records[0].explicit_hash_key.as_deref()
            ),
            (None, None)
        );
        let single: PutRecordInput =
            decode(br#"{"StreamName":"s","Data":"AAEC","PartitionKey":"p"}"#).expect("decodes");
        assert_eq!(
            (single.record.data, single.record.partition_key.as_deref()),
            (Some(Blob::Base64("AAEC".into())), Some("p"))
        );
    }

    #[test]
    fn a_borrowed_member_of_the_wrong_type_is_a_serialization_error() {
        let error = decode::<PutRecordsInput>(br#"{"Records":[{"PartitionKey":5}]}"#)
            .expect_err("a number is no partition key");
        assert_eq!(error.kind, ErrorKind::Serialization);
        let null_data =
            decode::<PutRecordsInput>(br#"{"Records":[{"Data":null,"PartitionKey":"k"}]}"#)
                .map(|input| input.records.map(|r| r[0].data.is_none()));
        assert_eq!(
            null_data.ok().flatten(),
            Some(true),
            "null reads as absent, as before"
        );
    }

    #[test]
    fn a_failed_answer_names_its_code_without_namespace_or_says_the_brokers_are_away() {
        let answer = serde_json::json!({
            "__type": "com.amazonaws.kinesis#ResourceNotFoundException",
            "message": "Stream x under account 000000000000 not found."
        });
        assert_eq!(
            failed_answer(http::StatusCode::BAD_REQUEST, &answer),
            FailedAnswer::Api {
                code: "ResourceNotFoundException".into(),
                message: "Stream x under account 000000000000 not found.".into(),
            }
        );
        let unnamed = serde_json::json!({"Message": "odd"});
        assert_eq!(
            failed_answer(http::StatusCode::INTERNAL_SERVER_ERROR, &unnamed),
            FailedAnswer::Api {
                code: "HTTP 500 Internal Server Error".into(),
                message: "odd".into(),
            }
        );
        assert_eq!(
            failed_answer(
                http::StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({})
            ),
            FailedAnswer::Unavailable("503".into())
        );
    }
}
