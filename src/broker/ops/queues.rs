//! Queues: CreateQueue, DescribeQueue, ListQueues, UpdateQueue, DeleteQueue, and the record
//! operations on them — ReceiveQueueRecords, AcknowledgeQueueRecords,
//! UpdateQueueRecordsVisibility and their dead-letter counterparts. The delivery state and
//! its decisions are in [`crate::broker::queue`]; this module reads the stream's records,
//! long-polls, and speaks the wire shapes.
//!
//! ARNs: `arn:aws:kinesis:<region>:<account>:queue/<stream>/<id>`, the id generated at
//! creation; the stream's name in it lets a gateway route queue calls to the stream's
//! brokers.
//! Receipt handles name the queue, the record and its delivery, URL-safe base64.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Value, json};

use super::by_stream::{ListByStreamInput, random_id};
use super::consumers::MAX_CONSUMERS;
use super::{modify_stream, no_output, required};
use crate::broker::catalog::{QueueRecord, StreamMode};
use crate::broker::cluster::shard_read::{CopiedRecord, position};
use crate::broker::protocol::{ApiError, ErrorKind, json, timestamp_ms};
use crate::broker::queue::state::{Change, QueueState, Receipt, ReceiptRefusal, RecordKey};
use crate::broker::routing::record_sequence;
use crate::broker::state::{Broker, LiveShard, LiveStream};

/// The visibility timeout of a queue created without one.
const DEFAULT_VISIBILITY_S: u32 = 30;
/// Receives before a dead letter, when the queue does not say.
const DEFAULT_MAX_RECEIVE_COUNT: u32 = 6;
/// Records one receive returns at most, and by default.
const MAX_RECEIVE: usize = 10;
/// How long a receive waits for a record by default.
const DEFAULT_WAIT_S: u64 = 9;
/// The longest a receive may long-poll, in seconds: a broker holds such a call this long
/// before it answers, by design.
pub const MAX_WAIT_S: u64 = 20;

fn queue_arn(broker: &Broker, stream: &str, queue: &QueueRecord) -> String {
    format!(
        "arn:aws:kinesis:{}:{}:queue/{stream}/{}",
        broker.settings.region, broker.settings.account, queue.id
    )
}

/// The stream name and queue id a queue ARN carries.
pub fn parse_queue_arn(arn: &str) -> Option<(&str, &str)> {
    let (_, path) = arn.split_once(":queue/")?;
    path.split_once('/')
}

fn status(broker: &Broker, queue: &QueueRecord) -> &'static str {
    super::consumers::lifecycle_status(
        queue.created_ms,
        queue.deleting_since_ms.is_some(),
        broker.clock.now_ms(),
        broker.settings.transition_ms,
    )
}

/// Finds a queue by ARN: its stream and definition.
pub(crate) fn find_queue(
    broker: &Broker,
    arn: &str,
) -> Result<(Arc<LiveStream>, QueueRecord), ApiError> {
    parse_queue_arn(arn)
        .and_then(|(stream, id)| {
            let stream = broker.stream(stream)?;
            let queue = stream.record.queues.iter().find(|q| q.id == id)?.clone();
            Some((stream, queue))
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Queue {arn} under account {} not found.",
                    broker.settings.account
                ),
            )
        })
}

fn describe(broker: &Broker, stream: &LiveStream, queue: &QueueRecord) -> Value {
    let mut position = json!({"Type": queue.start_type});
    if let Some(at) = queue.start_timestamp_ms {
        position["Timestamp"] = json!(at as f64 / 1000.0);
    }
    let dead_letters = match queue.max_receive_count {
        Some(max) => json!({"TargetType": "BUILT_IN", "MaxReceiveCount": max}),
        None => json!({"TargetType": "NONE"}),
    };
    json!({
        "QueueName": queue.name,
        "QueueARN": queue_arn(broker, &stream.record.name, queue),
        "QueueStatus": status(broker, queue),
        "QueueCreationTimestamp": queue.created_ms as f64 / 1000.0,
        "StreamConfigurationList": [{"StreamARN": stream.arn, "StartingPosition": position}],
        "QueueAttributes": {
            "VisibilityTimeoutSeconds": queue.visibility_timeout_s,
            "DeadLetterConfiguration": dead_letters,
        },
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartingPosition {
    r#type: String,
    timestamp: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamConfiguration {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    starting_position: Option<StartingPosition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeadLetterConfiguration {
    target_type: String,
    max_receive_count: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attributes {
    visibility_timeout_seconds: Option<u32>,
    dead_letter_configuration: Option<DeadLetterConfiguration>,
}

impl DeadLetterConfiguration {
    /// The MaxReceiveCount it sets (`None`: dead-letter handling off).
    fn max_receive_count(&self) -> Result<Option<u32>, ApiError> {
        match (self.target_type.as_str(), self.max_receive_count) {
            ("BUILT_IN", Some(max)) => Ok(Some(max)),
            ("BUILT_IN", None) => Err(ApiError::new(
                ErrorKind::Validation,
                "MaxReceiveCount is required when the DeadLetterConfiguration's TargetType is BUILT_IN.",
            )),
            (_, Some(_)) => Err(ApiError::new(
                ErrorKind::Validation,
                "MaxReceiveCount can only be specified when the DeadLetterConfiguration's TargetType is BUILT_IN.",
            )),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateQueueInput {
    queue_name: Option<String>,
    stream_configuration_list: Option<Vec<StreamConfiguration>>,
    queue_attributes: Option<Attributes>,
    tags: Option<BTreeMap<String, String>>,
}

/// Where each shard's cursor starts for a queue created now (a shard on another pod is
/// asked of its owner).
async fn starting_cursors(
    broker: &Broker,
    stream: &LiveStream,
    start_type: &str,
    at_ms: Option<u64>,
) -> Result<BTreeMap<u32, u64>, ApiError> {
    let mut cursors = BTreeMap::new();
    for shard in &stream.shards {
        let offset = match (start_type, at_ms) {
            ("LATEST", _) => position(broker, stream.record.key, shard, None).await?,
            ("AT_TIMESTAMP", Some(at)) => {
                position(broker, stream.record.key, shard, Some(at)).await?
            }
            _ => 0,
        };
        cursors.insert(shard.key.shard_index, offset);
    }
    Ok(cursors)
}

pub(super) async fn create_queue(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: CreateQueueInput = json::decode(body)?;
    let name = required(input.queue_name, "queueName")?;
    let mut configurations = required(input.stream_configuration_list, "streamConfigurationList")?;
    if configurations.len() != 1 {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "StreamConfigurationList must contain exactly one entry: a queue delivers records from a single data stream.",
        ));
    }
    let configuration = configurations.remove(0);
    let stream = broker.resolve(None, Some(&configuration.stream_arn))?;
    if stream.record.mode != StreamMode::OnDemand {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "Queues are supported only on streams in ON_DEMAND capacity mode; stream {} under account {} is PROVISIONED.",
                stream.record.name, broker.settings.account
            ),
        ));
    }
    let (start_type, start_timestamp) = match configuration.starting_position {
        None => ("LATEST".to_owned(), None),
        Some(position) => (position.r#type, position.timestamp),
    };
    let start_timestamp_ms = match (start_type.as_str(), start_timestamp) {
        ("AT_TIMESTAMP", Some(seconds)) => Some(timestamp_ms(seconds).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Validation,
                "Timestamp must be a time after 1970.",
            )
        })?),
        ("AT_TIMESTAMP", None) => {
            return Err(ApiError::new(
                ErrorKind::Validation,
                "Timestamp is required when the StartingPosition's Type is AT_TIMESTAMP.",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::new(
                ErrorKind::Validation,
                "Timestamp can only be specified when the StartingPosition's Type is AT_TIMESTAMP.",
            ));
        }
        _ => None,
    };
    let attributes = input.queue_attributes.unwrap_or_default();
    let max_receive_count = match &attributes.dead_letter_configuration {
        Some(configuration) => configuration.max_receive_count()?,
        None => Some(DEFAULT_MAX_RECEIVE_COUNT),
    };
    let account = broker.settings.account.clone();
    if broker
        .streams()
        .iter()
        .any(|s| s.record.queues.iter().any(|q| q.name == name))
    {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Queue {name} under account {account} already exists."),
        ));
    }
    let queue = QueueRecord {
        id: random_id(12)?,
        name,
        created_ms: broker.clock.now_ms(),
        deleting_since_ms: None,
        start_type,
        start_timestamp_ms,
        visibility_timeout_s: attributes
            .visibility_timeout_seconds
            .unwrap_or(DEFAULT_VISIBILITY_S),
        max_receive_count,
        tags: input.tags.unwrap_or_default(),
        policy: None,
    };
    let cursors =
        starting_cursors(broker, &stream, &queue.start_type, queue.start_timestamp_ms).await?;
    let created = {
        let (broker, id) = (broker.clone(), queue.id.clone());
        tokio::task::spawn_blocking(move || {
            broker.queues.create(&id, QueueState::starting_at(cursors))
        })
    };
    created
        .await
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))??;
    let added = modify_stream(broker, &stream.record.name, |record| {
        if record.queues.iter().any(|q| q.name == queue.name) {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!("Queue {} under account {account} already exists.", queue.name),
            ));
        }
        if record.consumers.len() + record.queues.len() >= MAX_CONSUMERS {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Stream {} under account {account} already has {MAX_CONSUMERS} consumers and queues.",
                    record.name
                ),
            ));
        }
        if record.mode != StreamMode::OnDemand {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "Queues are supported only on streams in ON_DEMAND capacity mode.",
            ));
        }
        record.queues.push(queue.clone());
        Ok(())
    })
    .await;
    if let Err(error) = added {
        broker.queues.remove(&queue.id);
        return Err(error);
    }
    let stream = broker
        .stream(&stream.record.name)
        .ok_or_else(|| ApiError::stream_not_found(&stream.record.name, &account))?;
    Ok(json::encode(
        &json!({"QueueDescription": describe(broker, &stream, &queue)}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueRefInput {
    #[serde(rename = "QueueARN")]
    queue_arn: Option<String>,
}

pub(super) fn describe_queue(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: QueueRefInput = json::decode(body)?;
    let (stream, queue) = find_queue(broker, &required(input.queue_arn, "queueARN")?)?;
    Ok(json::encode(
        &json!({"QueueDescription": describe(broker, &stream, &queue)}),
    ))
}

pub(super) fn list_queues(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ListByStreamInput = json::decode(body)?;
    let streams = broker.streams();
    let page = input.page(&streams, |s| &s.record.queues, |q| &q.name)?;
    let summaries: Vec<Value> = page
        .items
        .iter()
        .map(|(stream, queue)| {
            json!({
                "QueueName": queue.name,
                "QueueARN": queue_arn(broker, &stream.record.name, queue),
                "QueueStatus": status(broker, queue),
                "QueueCreationTimestamp": queue.created_ms as f64 / 1000.0,
                "Streams": [{
                    "StreamARN": stream.arn,
                    "StreamCreationTimestamp": stream.record.created_ms as f64 / 1000.0,
                }],
            })
        })
        .collect();
    let mut out = json!({"QueueSummaries": summaries});
    if let Some(token) = page.next_token {
        out["NextToken"] = json!(token);
    }
    Ok(json::encode(&out))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateQueueInput {
    #[serde(rename = "QueueARN")]
    queue_arn: Option<String>,
    queue_attributes: Option<Attributes>,
}

pub(super) async fn update_queue(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: UpdateQueueInput = json::decode(body)?;
    let arn = required(input.queue_arn, "queueARN")?;
    let attributes = required(input.queue_attributes, "queueAttributes")?;
    let max_receive_count = attributes
        .dead_letter_configuration
        .as_ref()
        .map(DeadLetterConfiguration::max_receive_count)
        .transpose()?;
    let (stream, queue) = find_queue(broker, &arn)?;
    let (record, updated) = modify_stream(broker, &stream.record.name, |record| {
        let entry = record
            .queues
            .iter_mut()
            .find(|q| q.id == queue.id && q.deleting_since_ms.is_none())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::ResourceInUse,
                    format!("Queue {} is being deleted.", queue.name),
                )
            })?;
        if let Some(visibility) = attributes.visibility_timeout_seconds {
            entry.visibility_timeout_s = visibility;
        }
        if let Some(max) = max_receive_count {
            entry.max_receive_count = max;
        }
        Ok(entry.clone())
    })
    .await?;
    let stream = broker
        .stream(&record.name)
        .ok_or_else(|| ApiError::stream_not_found(&record.name, &broker.settings.account))?;
    Ok(json::encode(
        &json!({"QueueDescription": describe(broker, &stream, &updated)}),
    ))
}

pub(super) async fn delete_queue(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: QueueRefInput = json::decode(body)?;
    let (stream, queue) = find_queue(broker, &required(input.queue_arn, "queueARN")?)?;
    let now = broker.clock.now_ms();
    modify_stream(broker, &stream.record.name, |record| {
        if let Some(entry) = record.queues.iter_mut().find(|q| q.id == queue.id) {
            entry.deleting_since_ms.get_or_insert(now);
        }
        Ok(())
    })
    .await?;
    let broker = broker.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(broker.settings.transition_ms)).await;
        let removed = modify_stream(&broker, &stream.record.name, |record| {
            record.queues.retain(|q| q.id != queue.id);
            Ok(())
        })
        .await;
        // A stream deleted meanwhile took the queue's definition with it.
        let _ = removed;
        broker.queues.remove(&queue.id);
    });
    Ok(no_output())
}

/// Resolves a queue for a record operation: it must be ACTIVE.
fn active_queue(
    broker: &Broker,
    arn: &str,
) -> Result<
    (
        Arc<LiveStream>,
        QueueRecord,
        Arc<crate::broker::queue::Queue>,
    ),
    ApiError,
> {
    let (stream, queue) = find_queue(broker, arn)?;
    let status = status(broker, &queue);
    if status != "ACTIVE" {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "Queue {} under account {} is {status}, not ACTIVE.",
                queue.name, broker.settings.account
            ),
        ));
    }
    let state = broker.queues.get(&queue.id)?;
    Ok((stream, queue, state))
}

mod receive;
pub(super) use receive::receive;

/// A receipt handle for a delivery of `key` by queue `queue_id`.
fn receipt_handle(queue_id: &str, key: RecordKey, generation: u32) -> String {
    URL_SAFE_NO_PAD.encode(format!("{queue_id}:{}:{}:{generation}", key.0, key.1))
}

/// The delivery a receipt handle names, if it is one of queue `queue_id`'s.
fn parse_receipt(queue_id: &str, handle: &str) -> Option<Receipt> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(handle).ok()?).ok()?;
    let mut parts = text.split(':');
    let (id, shard, offset, generation) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if id != queue_id || parts.next().is_some() {
        return None;
    }
    Some(Receipt {
        key: (shard.parse().ok()?, offset.parse().ok()?),
        generation: generation.parse().ok()?,
    })
}

/// What an entry operation does with a record whose receipt checks out.
#[derive(Clone, Copy)]
pub(super) enum EntryAction {
    Acknowledge,
    Visibility,
    Restore,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    receipt_handle: String,
    visibility_timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntriesInput {
    #[serde(rename = "QueueARN")]
    queue_arn: Option<String>,
    entries: Option<Vec<Entry>>,
}

/// Acknowledge, change visibility or restore, entry by entry: per-entry results.
pub(super) async fn entries(
    broker: &Arc<Broker>,
    body: &[u8],
    action: EntryAction,
    dead_letters: bool,
) -> Result<Vec<u8>, ApiError> {
    let input: EntriesInput = json::decode(body)?;
    let arn = required(input.queue_arn, "queueARN")?;
    let entries = required(input.entries, "entries")?;
    let (_, queue, state) = active_queue(broker, &arn)?;
    let now = broker.clock.now_ms();
    // The changes are synced before the answer: off the runtime's threads.
    let (successful, failed) = tokio::task::spawn_blocking(move || {
        let mut made_visible = false;
        let answer = state.update(|current| {
            let mut changes = Vec::new();
            let (mut successful, mut failed) = (Vec::new(), Vec::new());
            for entry in &entries {
                let checked = parse_receipt(&queue.id, &entry.receipt_handle)
                    .ok_or(ReceiptRefusal::Stale)
                    .and_then(|receipt| {
                        current.check_receipt(receipt, dead_letters)?;
                        Ok(receipt.key)
                    });
                match checked {
                    Ok(key) => {
                        changes.push(match action {
                            EntryAction::Acknowledge => Change::Acknowledged(key),
                            EntryAction::Restore => {
                                made_visible = true;
                                Change::Restored(key, now)
                            }
                            EntryAction::Visibility => {
                                let seconds = entry.visibility_timeout_seconds.unwrap_or(0);
                                made_visible |= seconds == 0;
                                Change::Visibility(key, now + seconds * 1000)
                            }
                        });
                        successful.push(json!({"ReceiptHandle": entry.receipt_handle}));
                    }
                    Err(refusal) => failed.push(json!({
                        "ReceiptHandle": entry.receipt_handle,
                        "ErrorCode": "InvalidArgumentException",
                        "ErrorMessage": refusal_message(refusal, dead_letters),
                    })),
                }
            }
            Ok((changes, (successful, failed)))
        });
        if made_visible {
            state.changed.notify_waiters();
        }
        answer
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))??;
    Ok(json::encode(
        &json!({"Successful": successful, "Failed": failed}),
    ))
}

fn refusal_message(refusal: ReceiptRefusal, dead_letters: bool) -> &'static str {
    match (refusal, dead_letters) {
        (ReceiptRefusal::Stale, _) => {
            "The receipt handle is not valid: the record was acknowledged, passed the stream's retention, or was received again with a newer handle."
        }
        (ReceiptRefusal::WrongKind, true) => {
            "The receipt handle is of a record in the queue, not of a dead-letter record."
        }
        (ReceiptRefusal::WrongKind, false) => {
            "The receipt handle is of a dead-letter record; use the dead-letter operations."
        }
    }
}

/// The shard of `stream` with index `index`.
fn shard_of(stream: &LiveStream, index: u32) -> Option<&LiveShard> {
    stream.shards.iter().find(|s| s.key.shard_index == index)
}

/// Whether a queue may read `shard`: it is not past retention, and every parent's records
/// were all handed out (a queue follows the lineage as readers of the shards do).
fn readable(stream: &LiveStream, shard: &LiveShard, cursors: &HashMap<u32, u64>) -> bool {
    !shard.expired
        && [shard.parent, shard.adjacent_parent]
            .into_iter()
            .flatten()
            .all(|parent| {
                shard_of(stream, parent).is_none_or(|p| {
                    p.expired
                        || p.closed_at_offset
                            .is_some_and(|end| cursors.get(&parent).copied().unwrap_or(0) >= end)
                })
            })
}

/// One record of a receive's answer.
fn record_json(
    queue_id: &str,
    stream_key: u32,
    key: RecordKey,
    record: &CopiedRecord,
    delivery: &crate::broker::queue::state::Delivery,
) -> Value {
    json!({
        "ReceiptHandle": receipt_handle(queue_id, key, delivery.generation),
        "RecordId": record_sequence(stream_key, key.0, key.1),
        "PartitionKey": record.partition_key,
        "Data": STANDARD.encode(&record.data),
        "ApproximateArrivalTimestamp": record.arrival_ms as f64 / 1000.0,
        "FirstReceiveTimestamp": delivery.first_receive_ms as f64 / 1000.0,
        "ReceiveCount": delivery.receive_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_handle_names_its_queue_record_and_delivery() {
        let handle = receipt_handle("abc", (3, 42), 7);
        assert_eq!(
            parse_receipt("abc", &handle),
            Some(Receipt {
                key: (3, 42),
                generation: 7
            })
        );
        assert_eq!(parse_receipt("other", &handle), None);
        assert_eq!(parse_receipt("abc", "not a handle"), None);
    }
}
