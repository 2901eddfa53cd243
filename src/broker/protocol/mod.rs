//! The Kinesis wire protocol: operations named by `X-Amz-Target`, the JSON 1.1 codec, and
//! errors in the shape Kinesis gives them. Nothing outside this module parses request bytes.

pub mod body;
pub mod cbor;
pub mod eventstream;
pub mod front;
pub mod json;
pub mod validate;

/// The target prefix of every Kinesis Data Streams operation.
pub const TARGET_PREFIX: &str = "Kinesis_20131202.";
/// Content type of the JSON 1.1 protocol.
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The error types Brook answers with, named as in the Kinesis API model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The stream, shard or consumer does not exist.
    ResourceNotFound,
    /// The resource is not in a state that allows the call.
    ResourceInUse,
    /// A parameter breaks the operation's rules.
    InvalidArgument,
    /// A parameter breaks the API model's constraints (length, pattern, range).
    Validation,
    /// A count limit (streams, shards, tags, consumers) would be exceeded.
    LimitExceeded,
    /// A shard's throughput quota is exhausted.
    ProvisionedThroughputExceeded,
    /// The shard iterator is older than five minutes.
    ExpiredIterator,
    /// A pagination token is too old.
    ExpiredNextToken,
    /// The body is not JSON of the right shape.
    Serialization,
    /// The target names no operation Brook serves.
    UnknownOperation,
    /// The caller may not do this.
    AccessDenied,
    /// The request body exceeds what any operation accepts.
    RequestEntityTooLarge,
    /// The broker failed; the request may be retried.
    InternalFailure,
    /// The broker that holds the stream cannot be reached right now; retry.
    ServiceUnavailable,
    /// The request carries no signature.
    MissingAuthenticationToken,
    /// The Authorization header is malformed or incomplete.
    IncompleteSignature,
    /// The signature does not match, or its date is outside the allowed skew.
    InvalidSignature,
    /// The access key id is unknown.
    UnrecognizedClient,
}

impl ErrorKind {
    /// The `__type` Kinesis clients match on.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ResourceInUse => "ResourceInUseException",
            Self::InvalidArgument => "InvalidArgumentException",
            Self::Validation => "ValidationException",
            Self::LimitExceeded => "LimitExceededException",
            Self::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            Self::ExpiredIterator => "ExpiredIteratorException",
            Self::ExpiredNextToken => "ExpiredNextTokenException",
            Self::Serialization => "SerializationException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::AccessDenied => "AccessDeniedException",
            Self::RequestEntityTooLarge => "RequestEntityTooLargeException",
            Self::InternalFailure => "InternalFailure",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
        }
    }

    /// The HTTP status Kinesis answers with.
    pub fn status(self) -> u16 {
        match self {
            Self::InternalFailure => 500,
            Self::ServiceUnavailable => 503,
            Self::RequestEntityTooLarge => 413,
            // Kinesis answers its JSON and CBOR protocols' authentication errors with 400 too
            // (403 is for requests outside them, answered in XML by the front end).
            _ => 400,
        }
    }
}

/// An error answer: its type and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.type_name())]
pub struct ApiError {
    /// The error type.
    pub kind: ErrorKind,
    /// The message for humans.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// ResourceNotFoundException for a stream, worded as Kinesis words it.
    pub fn stream_not_found(name: &str, account: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!("Stream {name} under account {account} not found."),
        )
    }

    /// A ValidationException for one member breaking one constraint, worded as AWS does.
    pub fn constraint(value: &str, member: &str, constraint: &str) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
            ),
        )
    }

    /// The JSON body of the error.
    pub fn body(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + self.message.len());
        out.push_str("{\"__type\":\"");
        out.push_str(self.kind.type_name());
        // Kinesis capitalizes the key of a SerializationException's message only.
        out.push_str(if self.kind == ErrorKind::Serialization {
            "\",\"Message\":"
        } else {
            "\",\"message\":"
        });
        out.push_str(&serde_json::to_string(&self.message).unwrap_or_else(|_| "\"\"".into()));
        out.push('}');
        out.into_bytes()
    }
}

/// Every Kinesis Data Streams operation Brook serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// CreateStream.
    CreateStream,
    /// DeleteStream.
    DeleteStream,
    /// DescribeStream.
    DescribeStream,
    /// DescribeStreamSummary.
    DescribeStreamSummary,
    /// ListStreams.
    ListStreams,
    /// ListShards.
    ListShards,
    /// PutRecord.
    PutRecord,
    /// PutRecords.
    PutRecords,
    /// GetShardIterator.
    GetShardIterator,
    /// GetRecords.
    GetRecords,
    /// IncreaseStreamRetentionPeriod.
    IncreaseStreamRetentionPeriod,
    /// DecreaseStreamRetentionPeriod.
    DecreaseStreamRetentionPeriod,
    /// AddTagsToStream.
    AddTagsToStream,
    /// RemoveTagsFromStream.
    RemoveTagsFromStream,
    /// ListTagsForStream.
    ListTagsForStream,
    /// DescribeLimits.
    DescribeLimits,
    /// SplitShard.
    SplitShard,
    /// MergeShards.
    MergeShards,
    /// UpdateShardCount.
    UpdateShardCount,
    /// RegisterStreamConsumer.
    RegisterStreamConsumer,
    /// DescribeStreamConsumer.
    DescribeStreamConsumer,
    /// ListStreamConsumers.
    ListStreamConsumers,
    /// DeregisterStreamConsumer.
    DeregisterStreamConsumer,
    /// SubscribeToShard.
    SubscribeToShard,
    /// EnableEnhancedMonitoring.
    EnableEnhancedMonitoring,
    /// DisableEnhancedMonitoring.
    DisableEnhancedMonitoring,
    /// StartStreamEncryption.
    StartStreamEncryption,
    /// StopStreamEncryption.
    StopStreamEncryption,
    /// TagResource.
    TagResource,
    /// UntagResource.
    UntagResource,
    /// ListTagsForResource.
    ListTagsForResource,
    /// UpdateMaxRecordSize.
    UpdateMaxRecordSize,
    /// UpdateStreamWarmThroughput.
    UpdateStreamWarmThroughput,
    /// DescribeAccountSettings.
    DescribeAccountSettings,
    /// UpdateAccountSettings.
    UpdateAccountSettings,
    /// UpdateStreamMode.
    UpdateStreamMode,
    /// PutResourcePolicy.
    PutResourcePolicy,
    /// GetResourcePolicy.
    GetResourcePolicy,
    /// DeleteResourcePolicy.
    DeleteResourcePolicy,
    /// UpdateStreamRecordDistributionStrategy.
    UpdateStreamRecordDistributionStrategy,
    /// CreateQueue.
    CreateQueue,
    /// DescribeQueue.
    DescribeQueue,
    /// ListQueues.
    ListQueues,
    /// UpdateQueue.
    UpdateQueue,
    /// DeleteQueue.
    DeleteQueue,
    /// ReceiveQueueRecords.
    ReceiveQueueRecords,
    /// AcknowledgeQueueRecords.
    AcknowledgeQueueRecords,
    /// UpdateQueueRecordsVisibility.
    UpdateQueueRecordsVisibility,
    /// ReceiveDeadLetterQueueRecords.
    ReceiveDeadLetterQueueRecords,
    /// AcknowledgeDeadLetterQueueRecords.
    AcknowledgeDeadLetterQueueRecords,
    /// RestoreDeadLetterQueueRecords.
    RestoreDeadLetterQueueRecords,
    /// UpdateDeadLetterQueueRecordsVisibility.
    UpdateDeadLetterQueueRecordsVisibility,
    /// CreateChannel.
    CreateChannel,
    /// DescribeChannel.
    DescribeChannel,
    /// ListChannels.
    ListChannels,
    /// UpdateChannel.
    UpdateChannel,
    /// DeleteChannel.
    DeleteChannel,
}

impl Operation {
    /// Every operation, for metrics registration.
    pub const ALL: [Operation; 57] = [
        Self::CreateStream,
        Self::DeleteStream,
        Self::DescribeStream,
        Self::DescribeStreamSummary,
        Self::ListStreams,
        Self::ListShards,
        Self::PutRecord,
        Self::PutRecords,
        Self::GetShardIterator,
        Self::GetRecords,
        Self::IncreaseStreamRetentionPeriod,
        Self::DecreaseStreamRetentionPeriod,
        Self::AddTagsToStream,
        Self::RemoveTagsFromStream,
        Self::ListTagsForStream,
        Self::DescribeLimits,
        Self::SplitShard,
        Self::MergeShards,
        Self::UpdateShardCount,
        Self::RegisterStreamConsumer,
        Self::DescribeStreamConsumer,
        Self::ListStreamConsumers,
        Self::DeregisterStreamConsumer,
        Self::SubscribeToShard,
        Self::EnableEnhancedMonitoring,
        Self::DisableEnhancedMonitoring,
        Self::StartStreamEncryption,
        Self::StopStreamEncryption,
        Self::TagResource,
        Self::UntagResource,
        Self::ListTagsForResource,
        Self::UpdateMaxRecordSize,
        Self::UpdateStreamWarmThroughput,
        Self::DescribeAccountSettings,
        Self::UpdateAccountSettings,
        Self::UpdateStreamMode,
        Self::PutResourcePolicy,
        Self::GetResourcePolicy,
        Self::DeleteResourcePolicy,
        Self::UpdateStreamRecordDistributionStrategy,
        Self::CreateQueue,
        Self::DescribeQueue,
        Self::ListQueues,
        Self::UpdateQueue,
        Self::DeleteQueue,
        Self::ReceiveQueueRecords,
        Self::AcknowledgeQueueRecords,
        Self::UpdateQueueRecordsVisibility,
        Self::ReceiveDeadLetterQueueRecords,
        Self::AcknowledgeDeadLetterQueueRecords,
        Self::RestoreDeadLetterQueueRecords,
        Self::UpdateDeadLetterQueueRecordsVisibility,
        Self::CreateChannel,
        Self::DescribeChannel,
        Self::ListChannels,
        Self::UpdateChannel,
        Self::DeleteChannel,
    ];

    /// The operation's name as in the API model.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateStream => "CreateStream",
            Self::DeleteStream => "DeleteStream",
            Self::DescribeStream => "DescribeStream",
            Self::DescribeStreamSummary => "DescribeStreamSummary",
            Self::ListStreams => "ListStreams",
            Self::ListShards => "ListShards",
            Self::PutRecord => "PutRecord",
            Self::PutRecords => "PutRecords",
            Self::GetShardIterator => "GetShardIterator",
            Self::GetRecords => "GetRecords",
            Self::IncreaseStreamRetentionPeriod => "IncreaseStreamRetentionPeriod",
            Self::DecreaseStreamRetentionPeriod => "DecreaseStreamRetentionPeriod",
            Self::AddTagsToStream => "AddTagsToStream",
            Self::RemoveTagsFromStream => "RemoveTagsFromStream",
            Self::ListTagsForStream => "ListTagsForStream",
            Self::DescribeLimits => "DescribeLimits",
            Self::SplitShard => "SplitShard",
            Self::MergeShards => "MergeShards",
            Self::UpdateShardCount => "UpdateShardCount",
            Self::RegisterStreamConsumer => "RegisterStreamConsumer",
            Self::DescribeStreamConsumer => "DescribeStreamConsumer",
            Self::ListStreamConsumers => "ListStreamConsumers",
            Self::DeregisterStreamConsumer => "DeregisterStreamConsumer",
            Self::SubscribeToShard => "SubscribeToShard",
            Self::EnableEnhancedMonitoring => "EnableEnhancedMonitoring",
            Self::DisableEnhancedMonitoring => "DisableEnhancedMonitoring",
            Self::StartStreamEncryption => "StartStreamEncryption",
            Self::StopStreamEncryption => "StopStreamEncryption",
            Self::TagResource => "TagResource",
            Self::UntagResource => "UntagResource",
            Self::ListTagsForResource => "ListTagsForResource",
            Self::UpdateMaxRecordSize => "UpdateMaxRecordSize",
            Self::UpdateStreamWarmThroughput => "UpdateStreamWarmThroughput",
            Self::DescribeAccountSettings => "DescribeAccountSettings",
            Self::UpdateAccountSettings => "UpdateAccountSettings",
            Self::UpdateStreamMode => "UpdateStreamMode",
            Self::PutResourcePolicy => "PutResourcePolicy",
            Self::GetResourcePolicy => "GetResourcePolicy",
            Self::DeleteResourcePolicy => "DeleteResourcePolicy",
            Self::UpdateStreamRecordDistributionStrategy => {
                "UpdateStreamRecordDistributionStrategy"
            }
            Self::CreateQueue => "CreateQueue",
            Self::DescribeQueue => "DescribeQueue",
            Self::ListQueues => "ListQueues",
            Self::UpdateQueue => "UpdateQueue",
            Self::DeleteQueue => "DeleteQueue",
            Self::ReceiveQueueRecords => "ReceiveQueueRecords",
            Self::AcknowledgeQueueRecords => "AcknowledgeQueueRecords",
            Self::UpdateQueueRecordsVisibility => "UpdateQueueRecordsVisibility",
            Self::ReceiveDeadLetterQueueRecords => "ReceiveDeadLetterQueueRecords",
            Self::AcknowledgeDeadLetterQueueRecords => "AcknowledgeDeadLetterQueueRecords",
            Self::RestoreDeadLetterQueueRecords => "RestoreDeadLetterQueueRecords",
            Self::UpdateDeadLetterQueueRecordsVisibility => {
                "UpdateDeadLetterQueueRecordsVisibility"
            }
            Self::CreateChannel => "CreateChannel",
            Self::DescribeChannel => "DescribeChannel",
            Self::ListChannels => "ListChannels",
            Self::UpdateChannel => "UpdateChannel",
            Self::DeleteChannel => "DeleteChannel",
        }
    }

    /// The operation an `X-Amz-Target` header names.
    pub fn from_target(target: Option<&str>) -> Result<Self, ApiError> {
        let unknown = || ApiError::new(ErrorKind::UnknownOperation, "");
        let name = target
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
            .ok_or_else(unknown)?;
        Self::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(unknown)
    }
}

/// Writes epoch milliseconds as Kinesis's epoch seconds with three decimals, never in
/// exponent notation (some clients cannot parse `1.7E9`).
pub fn write_timestamp(out: &mut Vec<u8>, epoch_ms: u64) {
    use std::io::Write;
    let _ = write!(out, "{}.{:03}", epoch_ms / 1000, epoch_ms % 1000);
}

/// Appends `data` in base64, as JSON carries blobs, without a string in between.
pub fn write_base64(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine;
    let start = out.len();
    out.resize(
        start + base64::encoded_len(data.len(), true).unwrap_or(0),
        0,
    );
    // The room is exactly what the encoding takes, so it cannot fall short.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// Epoch milliseconds from a JSON timestamp in epoch seconds (fractions allowed).
pub fn timestamp_ms(seconds: f64) -> Option<u64> {
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_operations() {
        assert_eq!(
            Operation::from_target(Some("Kinesis_20131202.PutRecords")),
            Ok(Operation::PutRecords)
        );
        for bad in [
            None,
            Some("PutRecords"),
            Some("Kinesis_20131202.Nope"),
            Some(""),
        ] {
            assert_eq!(
                Operation::from_target(bad).map_err(|e| e.kind),
                Err(ErrorKind::UnknownOperation)
            );
        }
    }

    #[test]
    fn timestamps_have_milliseconds_and_no_exponent() {
        let mut out = Vec::new();
        write_timestamp(&mut out, 1_700_000_000_005);
        assert_eq!(out, b"1700000000.005");
        assert_eq!(timestamp_ms(1_700_000_000.005), Some(1_700_000_000_005));
        assert_eq!(timestamp_ms(-1.0), None);
    }

    #[test]
    fn error_bodies_carry_type_and_escaped_message() {
        let body = ApiError::new(ErrorKind::InvalidArgument, "bad \"key\"").body();
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(parsed["__type"], "InvalidArgumentException");
        assert_eq!(parsed["message"], "bad \"key\"");
    }
}
