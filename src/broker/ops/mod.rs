//! The operations, one module per group: decode the request, call the stream or the store,
//! encode the response. Validation messages follow the API model's constraints.

mod admin;
mod by_stream;
pub mod channels;
pub(crate) mod consumers;
pub mod put;
pub mod queues;
mod records;
mod records_answer;
pub use records_answer::Encoding;
pub mod reshard;
mod streams;
pub use streams::list_streams_token;
pub mod subscribe;

use std::sync::Arc;

use super::protocol::body::Body;
use super::protocol::{ApiError, ErrorKind, Operation, validate};
use super::state::Broker;

/// An operation's answer body.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// JSON, which a CBOR request's answer is transcoded from.
    Json(Vec<u8>),
    /// Written as CBOR already (GetRecords to a CBOR request).
    Cbor(Vec<u8>),
}

impl Answer {
    /// An answer written in `encoding`.
    pub fn of(body: Vec<u8>, encoding: Encoding) -> Self {
        match encoding {
            Encoding::Json => Self::Json(body),
            Encoding::Cbor => Self::Cbor(body),
        }
    }
}

/// Runs one operation on a request body and returns the answer. The body is JSON, but for
/// PutRecord and PutRecords, which read a CBOR body as it came ([`Body::reads_cbor`]); the
/// request's `encoding` is the one GetRecords writes its records in.
pub async fn dispatch(
    broker: &Arc<Broker>,
    operation: Operation,
    body: Body<'_>,
    encoding: Encoding,
) -> Result<Answer, ApiError> {
    // The model's checks run before every operation but the three on the data path, whose
    // own checks cover their members and which would otherwise parse every body twice; when
    // one of those refuses a request, the model's checks word the answer.
    let data_path = matches!(
        operation,
        Operation::PutRecord | Operation::PutRecords | Operation::GetRecords
    );
    if !data_path {
        validate::check(operation.name(), &body.json()?)?;
    }
    let result = match operation {
        Operation::PutRecord => put::put_record(broker, body).await.map(Answer::Json),
        Operation::PutRecords => put::put_records(broker, body, encoding)
            .await
            .map(|answer| Answer::of(answer, encoding)),
        Operation::GetRecords if encoding == Encoding::Cbor => {
            records::get_records(broker, &body.json()?, encoding)
                .await
                .map(Answer::Cbor)
        }
        _ => run(broker, operation, &body.json()?)
            .await
            .map(Answer::Json),
    };
    match result {
        // Kinesis checks a request before it looks for its stream: a refused data-path call
        // that breaks the model answers the violation, whatever refused it here.
        Err(error) if data_path => {
            validate::check(operation.name(), &body.json()?)?;
            Err(error)
        }
        other => other,
    }
}

async fn run(broker: &Arc<Broker>, operation: Operation, body: &[u8]) -> Result<Vec<u8>, ApiError> {
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
        Operation::PutRecord => put::put_record(broker, Body::Json(body)).await,
        Operation::PutRecords => put::put_records(broker, Body::Json(body), Encoding::Json).await,
        Operation::GetShardIterator => records::get_shard_iterator(broker, body).await,
        Operation::GetRecords => records::get_records(broker, body, Encoding::Json).await,
        Operation::SplitShard => reshard::split_shard(broker, body).await,
        Operation::MergeShards => reshard::merge_shards(broker, body).await,
        Operation::UpdateShardCount => reshard::update_shard_count(broker, body).await,
        Operation::RegisterStreamConsumer => consumers::register(broker, body).await,
        Operation::DescribeStreamConsumer => consumers::describe_consumer(broker, body),
        Operation::ListStreamConsumers => consumers::list_consumers(broker, body),
        Operation::DeregisterStreamConsumer => consumers::deregister(broker, body).await,
        Operation::EnableEnhancedMonitoring => admin::monitoring(broker, body, true).await,
        Operation::DisableEnhancedMonitoring => admin::monitoring(broker, body, false).await,
        Operation::StartStreamEncryption => admin::encryption(broker, body, true).await,
        Operation::StopStreamEncryption => admin::encryption(broker, body, false).await,
        Operation::TagResource => admin::tag_resource(broker, body).await,
        Operation::UntagResource => admin::untag_resource(broker, body).await,
        Operation::ListTagsForResource => admin::list_tags_for_resource(broker, body).await,
        Operation::UpdateMaxRecordSize => admin::update_max_record_size(broker, body).await,
        Operation::UpdateStreamWarmThroughput => admin::update_warm_throughput(broker, body).await,
        Operation::DescribeAccountSettings => admin::describe_account_settings(broker).await,
        Operation::UpdateAccountSettings => admin::update_account_settings(broker, body).await,
        Operation::UpdateStreamMode => admin::update_stream_mode(broker, body).await,
        Operation::PutResourcePolicy => admin::put_resource_policy(broker, body).await,
        Operation::GetResourcePolicy => admin::get_resource_policy(broker, body).await,
        Operation::DeleteResourcePolicy => admin::delete_resource_policy(broker, body).await,
        Operation::UpdateStreamRecordDistributionStrategy => {
            admin::update_record_distribution(broker, body).await
        }
        Operation::CreateQueue => queues::create_queue(broker, body).await,
        Operation::DescribeQueue => queues::describe_queue(broker, body),
        Operation::ListQueues => queues::list_queues(broker, body),
        Operation::UpdateQueue => queues::update_queue(broker, body).await,
        Operation::DeleteQueue => queues::delete_queue(broker, body).await,
        Operation::ReceiveQueueRecords => queues::receive(broker, body, false).await,
        Operation::ReceiveDeadLetterQueueRecords => queues::receive(broker, body, true).await,
        Operation::AcknowledgeQueueRecords => {
            queues::entries(broker, body, queues::EntryAction::Acknowledge, false).await
        }
        Operation::AcknowledgeDeadLetterQueueRecords => {
            queues::entries(broker, body, queues::EntryAction::Acknowledge, true).await
        }
        Operation::UpdateQueueRecordsVisibility => {
            queues::entries(broker, body, queues::EntryAction::Visibility, false).await
        }
        Operation::UpdateDeadLetterQueueRecordsVisibility => {
            queues::entries(broker, body, queues::EntryAction::Visibility, true).await
        }
        Operation::RestoreDeadLetterQueueRecords => {
            queues::entries(broker, body, queues::EntryAction::Restore, true).await
        }
        Operation::CreateChannel => channels::create_channel(broker, body).await,
        Operation::DescribeChannel => channels::describe_channel(broker, body),
        Operation::ListChannels => channels::list_channels(broker, body),
        Operation::UpdateChannel => channels::update_channel(broker, body).await,
        Operation::DeleteChannel => channels::delete_channel(broker, body).await,
        Operation::SubscribeToShard => Err(ApiError::new(
            ErrorKind::InternalFailure,
            "SubscribeToShard answers with an event stream, not a JSON body.",
        )),
    }
}

/// The answer of an operation whose output has no members. Kinesis answers those with an
/// empty body (`Content-Length: 0`, the protocol's content type), in JSON and in CBOR: the
/// API reference says "an HTTP 200 response with an empty HTTP body" (e.g. AddTagsToStream),
/// and the AWS SDKs read an empty body as an empty output.
pub fn no_output() -> Vec<u8> {
    Vec::new()
}

/// Who sent a request, as its signature shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Nothing was checked: the broker has no keys.
    Anonymous,
    /// A client key, by access key id.
    Client(String),
    /// The operator's admin key of a managed broker.
    Admin,
}

/// The operations that change what the operator declares for a stream: a managed broker
/// takes them only from the operator. Consumer registration stays open, as the Kinesis Client
/// Library registers its own enhanced fan-out consumer.
pub fn is_declared_configuration(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::CreateStream
            | Operation::DeleteStream
            | Operation::UpdateShardCount
            | Operation::SplitShard
            | Operation::MergeShards
            | Operation::IncreaseStreamRetentionPeriod
            | Operation::DecreaseStreamRetentionPeriod
            | Operation::UpdateStreamMode
            | Operation::UpdateMaxRecordSize
    )
}

/// Refuses, on a managed broker, a change of declared configuration from anyone but the
/// operator, naming the resource to edit instead.
pub fn refuse_unmanaged_change(
    broker: &Broker,
    operation: Operation,
    caller: &Caller,
) -> Result<(), ApiError> {
    let Some(owner) = &broker.settings.managed_by else {
        return Ok(());
    };
    if *caller == Caller::Admin || !is_declared_configuration(operation) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::AccessDenied,
        managed_refusal(owner, operation.name()),
    ))
}

/// The message of a refused control-plane call: what is refused and which resource to edit.
fn managed_refusal(owner: &str, operation: &str) -> String {
    let hint = owner
        .split_once(' ')
        .and_then(|(kind, rest)| {
            let (namespace, name) = rest.split_once('/')?;
            Some(format!(
                " (kubectl -n {namespace} edit {} {name})",
                kind.to_lowercase()
            ))
        })
        .unwrap_or_default();
    format!(
        "This broker is managed by Kubernetes: {operation} through the Kinesis API is refused. Edit the {owner} resource instead{hint}; the operator applies the change."
    )
}

/// Enforces resource policies for an authenticated caller: an explicit Deny or, on a
/// resource that has a policy, the lack of a matching Allow refuses the call.
pub fn authorize(
    broker: &Broker,
    operation: Operation,
    body: Body<'_>,
    caller: &Caller,
) -> Result<(), ApiError> {
    use crate::broker::policy::{self, Caller as PolicyCaller, Decision};
    let Caller::Client(access_key) = caller else {
        return Ok(());
    };
    let access_key = access_key.as_str();
    if !broker.has_policies() {
        return Ok(());
    }
    let account = &broker.settings.account;
    let action = format!("kinesis:{}", operation.name());
    let user = format!("arn:aws:iam::{account}:user/{access_key}");
    // Authorization fails closed: what cannot be resolved or read is refused, never let by.
    let refuse = |resource: &str, why: &str| {
        ApiError::new(
            ErrorKind::AccessDenied,
            format!(
                "User: {user} is not authorized to perform: {action} on resource: {resource} because {why}"
            ),
        )
    };
    // A CBOR write is read as JSON here only when policies are set; a body that is not CBOR
    // is refused for that, as it is without policies, not for its policy.
    let body = body.json()?;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    let consumer_arn =
        field("ConsumerARN").or(field("ResourceARN").filter(|a| a.contains("/consumer/")));
    let queue_arn = field("QueueARN").or(field("ResourceARN").filter(|a| a.contains(":queue/")));
    // CreateQueue names its stream inside its one stream configuration.
    let created_on = value
        .pointer("/StreamConfigurationList/0/StreamARN")
        .and_then(serde_json::Value::as_str);
    // A queue, a consumer or a channel answers to its own policy, then to its stream's.
    let channel_arn =
        field("ChannelARN").or(field("ResourceARN").filter(|a| a.contains(":channel/")));
    let owned = match (queue_arn, consumer_arn, channel_arn) {
        (Some(arn), _, _) => Some((
            arn,
            "queue",
            queues::find_queue(broker, arn)
                .ok()
                .map(|(stream, queue)| (queue.policy, stream.record.policy.clone())),
        )),
        (None, Some(arn), _) => Some((
            arn,
            "consumer",
            consumers::resolve_consumer(broker, arn)
                .ok()
                .map(|(stream, consumer)| (consumer.policy, stream.record.policy.clone())),
        )),
        (None, None, Some(arn)) => Some((
            arn,
            "channel",
            channels::find_channel(broker, arn)
                .ok()
                .map(|(stream, channel)| (channel.policy, stream.record.policy.clone())),
        )),
        (None, None, None) => None,
    };
    let (resource, texts): (String, Vec<String>) = if let Some((arn, kind, policies)) = owned {
        let Some((own, of_stream)) = policies else {
            return Err(refuse(arn, &format!("the {kind} cannot be resolved")));
        };
        (
            arn.to_owned(),
            [own, of_stream].into_iter().flatten().collect(),
        )
    } else {
        let stream_arn = field("StreamARN").or(field("ResourceARN")).or(created_on);
        let named = field("StreamName").or(stream_arn);
        let name = match (field("StreamName"), stream_arn, field("ShardIterator")) {
            // No resource named (ListStreams, DescribeLimits, ...): no resource policy applies.
            (None, None, None) => return Ok(()),
            // An iterator that does not decode reads nothing: the operation refuses it.
            (None, None, Some(iterator)) => {
                match broker.iterators.decode(iterator, broker.clock.now_ms()) {
                    Ok(position) => Some(position.stream_name),
                    Err(_) => return Ok(()),
                }
            }
            (name, arn, _) => broker
                .resolve(name, arn)
                .ok()
                .map(|s| s.record.name.clone()),
        };
        let Some(stream) = name.and_then(|n| broker.stream(&n)) else {
            // The one operation that names a stream which does not exist yet.
            if operation == Operation::CreateStream {
                return Ok(());
            }
            return Err(refuse(
                named.unwrap_or("the stream of the shard iterator"),
                "the stream cannot be resolved",
            ));
        };
        (
            stream.arn.clone(),
            stream.record.policy.iter().cloned().collect(),
        )
    };
    let Ok(parsed) = texts
        .iter()
        .map(|text| policy::parse(text))
        .collect::<Result<Vec<policy::Policy>, _>>()
    else {
        return Err(refuse(
            &resource,
            "its resource-based policy cannot be read",
        ));
    };
    let refs: Vec<&policy::Policy> = parsed.iter().collect();
    let caller = PolicyCaller {
        access_key,
        account,
    };
    match policy::evaluate(&refs, &caller, &action, &resource) {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny => Err(ApiError::new(
            ErrorKind::AccessDenied,
            format!(
                "User: {user} is not authorized to perform: {action} on resource: {resource} with an explicit deny in a resource-based policy"
            ),
        )),
        Decision::ImplicitDeny => Err(ApiError::new(
            ErrorKind::AccessDenied,
            format!(
                "User: {user} is not authorized to perform: {action} on resource: {resource} because no resource-based policy allows the {action} action"
            ),
        )),
    }
}

/// Applies `edit` to a stream's persisted record under the catalog lock, saves the catalog
/// and swaps the live view; returns the new record and what `edit` returned.
pub async fn modify_stream<T>(
    broker: &Arc<Broker>,
    name: &str,
    edit: impl FnOnce(&mut crate::broker::catalog::StreamRecord) -> Result<T, ApiError>,
) -> Result<(crate::broker::catalog::StreamRecord, T), ApiError> {
    let mut catalog = broker.catalog.lock().await;
    let mut updated = catalog.clone();
    let record = updated
        .streams
        .get_mut(name)
        .ok_or_else(|| ApiError::stream_not_found(name, &broker.settings.account))?;
    let answer = edit(record)?;
    let record = record.clone();
    broker.save(&mut updated)?;
    *catalog = updated;
    broker.publish(&record);
    Ok((record, answer))
}

/// The first offset of `shard` whose arrival time is at or after `at_ms`, read off the async
/// runtime since it may touch segment files. Shared by GetShardIterator and SubscribeToShard.
pub(super) async fn offset_at_time(
    shard: &crate::broker::state::LiveShard,
    at_ms: u64,
) -> Result<u64, ApiError> {
    let log = shard.log.clone();
    tokio::task::spawn_blocking(move || log.offset_at_time(at_ms))
        .await
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))
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
    value.ok_or_else(|| null_member(member))
}

/// The validation error for a required member that is missing.
pub fn null_member(member: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Validation,
        format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ),
    )
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
