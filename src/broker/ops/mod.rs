//! The operations, one module per group: decode the request, call the stream or the store,
//! encode the response. Validation messages follow the API model's constraints.

mod consumers;
mod records;
mod reshard;
mod streams;
pub mod subscribe;

use std::sync::Arc;

use super::protocol::{ApiError, ErrorKind, Operation};
use super::state::Broker;

/// Runs one operation on a request body and returns the response body.
pub async fn dispatch(
    broker: &Arc<Broker>,
    operation: Operation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match operation {
        Operation::CreateStream => streams::create_stream(broker, body).await,
        Operation::DeleteStream => streams::delete_stream(broker, body).await,
        Operation::DescribeStream => streams::describe_stream(broker, body),
        Operation::DescribeStreamSummary => streams::describe_stream_summary(broker, body),
        Operation::ListStreams => streams::list_streams(broker, body),
        Operation::ListShards => streams::list_shards(broker, body),
        Operation::IncreaseStreamRetentionPeriod => {
            streams::change_retention(broker, body, true).await
        }
        Operation::DecreaseStreamRetentionPeriod => {
            streams::change_retention(broker, body, false).await
        }
        Operation::AddTagsToStream => streams::add_tags(broker, body).await,
        Operation::RemoveTagsFromStream => streams::remove_tags(broker, body).await,
        Operation::ListTagsForStream => streams::list_tags(broker, body),
        Operation::DescribeLimits => streams::describe_limits(broker).await,
        Operation::PutRecord => records::put_record(broker, body).await,
        Operation::PutRecords => records::put_records(broker, body).await,
        Operation::GetShardIterator => records::get_shard_iterator(broker, body).await,
        Operation::GetRecords => records::get_records(broker, body).await,
        Operation::SplitShard => reshard::split_shard(broker, body).await,
        Operation::MergeShards => reshard::merge_shards(broker, body).await,
        Operation::UpdateShardCount => reshard::update_shard_count(broker, body).await,
        Operation::RegisterStreamConsumer => consumers::register(broker, body).await,
        Operation::DescribeStreamConsumer => consumers::describe_consumer(broker, body),
        Operation::ListStreamConsumers => consumers::list_consumers(broker, body),
        Operation::DeregisterStreamConsumer => consumers::deregister(broker, body).await,
        Operation::SubscribeToShard => Err(ApiError::new(
            ErrorKind::InternalFailure,
            "SubscribeToShard answers with an event stream, not a JSON body.",
        )),
    }
}

/// Checks a stream name against the model: `[a-zA-Z0-9_.-]+`, 1 to 128 characters.
pub fn validate_stream_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::constraint(
            name,
            "streamName",
            "Member must have length between 1 and 128",
        ));
    }
    if !crate::api::validation::is_kinesis_name(name) {
        return Err(ApiError::constraint(
            name,
            "streamName",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

/// A required member, or the model's "must not be null" ValidationException.
pub fn required<T>(value: Option<T>, member: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        ApiError::new(
            ErrorKind::Validation,
            format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

/// An optional integer member within `min..=max`.
pub fn bounded(
    value: Option<i64>,
    member: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    match value {
        Some(v) if v < min => Err(ApiError::constraint(
            &v.to_string(),
            member,
            &format!("Member must have value greater than or equal to {min}"),
        )),
        Some(v) if v > max => Err(ApiError::constraint(
            &v.to_string(),
            member,
            &format!("Member must have value less than or equal to {max}"),
        )),
        other => Ok(other),
    }
}
