//! The rest of the stream operations: monitoring, encryption settings, resource tags and
//! policies, record size, warm throughput, stream mode, distribution strategy and account
//! settings. Each persists through the catalog like every control-plane change.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::consumers::parse_consumer_arn;
use super::{modify_stream, no_output, required};
use crate::broker::catalog::{StreamMode, StreamRecord};
use crate::broker::policy;
use crate::broker::protocol::json::{self, StreamModeDetails};
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::state::Broker;

const ALL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_level_metrics: Option<Vec<String>>,
    encryption_type: Option<String>,
    key_id: Option<String>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    max_record_size_in_kib: Option<i64>,
    warm_throughput_mi_bps: Option<i64>,
    stream_mode_details: Option<StreamModeDetails>,
    record_distribution_strategy: Option<String>,
}

fn stream_name(broker: &Broker, input: &StreamInput) -> Result<String, ApiError> {
    Ok(broker
        .resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?
        .record
        .name
        .clone())
}

/// Enable- (`enable`) or DisableEnhancedMonitoring.
pub(super) async fn monitoring(
    broker: &Arc<Broker>,
    body: &[u8],
    enable: bool,
) -> Result<Vec<u8>, ApiError> {
    let input: StreamInput = json::decode(body)?;
    let metrics = required(input.shard_level_metrics.clone(), "shardLevelMetrics")?;
    if metrics.is_empty() || metrics.len() > 7 {
        return Err(ApiError::constraint(
            "[...]",
            "shardLevelMetrics",
            "Member must have length between 1 and 7",
        ));
    }
    let mut requested = Vec::new();
    for metric in &metrics {
        match metric.as_str() {
            "ALL" => requested.extend(ALL_METRICS.iter().map(|m| m.to_string())),
            m if ALL_METRICS.contains(&m) => requested.push(m.to_owned()),
            other => {
                return Err(ApiError::constraint(
                    other,
                    "shardLevelMetrics",
                    "Member must satisfy enum value set: [IncomingBytes, IncomingRecords, OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, IteratorAgeMilliseconds, ALL]",
                ));
            }
        }
    }
    let name = stream_name(broker, &input)?;
    let (record, current) = modify_stream(broker, &name, |record| {
        let current = record.enhanced_metrics.clone();
        if enable {
            for metric in &requested {
                if !record.enhanced_metrics.contains(metric) {
                    record.enhanced_metrics.push(metric.clone());
                }
            }
        } else {
            record.enhanced_metrics.retain(|m| !requested.contains(m));
        }
        record.enhanced_metrics.sort();
        Ok(current)
    })
    .await?;
    let live = broker.resolve(Some(&record.name), None)?;
    Ok(json::encode(&json!({
        "StreamName": record.name,
        "StreamARN": live.arn,
        "CurrentShardLevelMetrics": current,
        "DesiredShardLevelMetrics": record.enhanced_metrics,
    })))
}

/// Start- (`start`) or StopStreamEncryption. Brook records the key and reports KMS
/// encryption; data at rest is protected by the volume's encryption (see the README).
pub(super) async fn encryption(
    broker: &Arc<Broker>,
    body: &[u8],
    start: bool,
) -> Result<Vec<u8>, ApiError> {
    let input: StreamInput = json::decode(body)?;
    let kind = required(input.encryption_type.clone(), "encryptionType")?;
    let key = required(input.key_id.clone(), "keyId")?;
    if kind != "KMS" {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("EncryptionType {kind} is not supported; use KMS."),
        ));
    }
    if key.is_empty() || key.len() > 2048 {
        return Err(ApiError::constraint(
            &key,
            "keyId",
            "Member must have length between 1 and 2048",
        ));
    }
    let name = stream_name(broker, &input)?;
    let now = broker.clock.now_ms();
    let transition = broker.settings.transition_ms;
    modify_stream(broker, &name, |record| {
        if !start && record.encryption_key.as_deref() != Some(key.as_str()) {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!("Stream {} is not encrypted with key {key}.", record.name),
            ));
        }
        record.encryption_key = start.then_some(key.clone());
        record.updating_until_ms = Some(now + transition);
        Ok(())
    })
    .await?;
    Ok(no_output())
}

pub(super) async fn update_max_record_size(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: StreamInput = json::decode(body)?;
    let kib = super::bounded(
        Some(required(
            input.max_record_size_in_kib,
            "maxRecordSizeInKiB",
        )?),
        "maxRecordSizeInKiB",
        1024,
        10_240,
    )?
    .unwrap_or(1024);
    let name = stream_name(broker, &input)?;
    modify_stream(broker, &name, |record| {
        record.max_record_size_kib = kib as u32;
        Ok(())
    })
    .await?;
    Ok(no_output())
}

pub(super) async fn update_warm_throughput(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: StreamInput = json::decode(body)?;
    let mibps = super::bounded(
        Some(required(
            input.warm_throughput_mi_bps,
            "warmThroughputMiBps",
        )?),
        "warmThroughputMiBps",
        0,
        i64::from(u32::MAX),
    )?
    .unwrap_or(0) as u64;
    let name = stream_name(broker, &input)?;
    let (record, ()) = modify_stream(broker, &name, |record| {
        if record.mode != StreamMode::OnDemand {
            return Err(ApiError::new(
                ErrorKind::Validation,
                "Warm throughput applies to ON_DEMAND streams only.",
            ));
        }
        record.warm_throughput_mibps = Some(mibps);
        Ok(())
    })
    .await?;
    let live = broker.resolve(Some(&record.name), None)?;
    Ok(json::encode(&json!({
        "StreamName": record.name,
        "StreamARN": live.arn,
        "WarmThroughput": {"TargetMiBps": mibps, "CurrentMiBps": mibps},
    })))
}

pub(super) async fn update_stream_mode(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: StreamInput = json::decode(body)?;
    let arn = required(input.stream_arn.clone(), "streamARN")?;
    let details = required(input.stream_mode_details.clone(), "streamModeDetails")?;
    let mode = match details.stream_mode.as_str() {
        "PROVISIONED" => StreamMode::Provisioned,
        "ON_DEMAND" => StreamMode::OnDemand,
        other => {
            return Err(ApiError::constraint(
                other,
                "streamModeDetails.streamMode",
                "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
            ));
        }
    };
    let live = broker.resolve(None, Some(&arn))?;
    let now = broker.clock.now_ms();
    let status = live.status(now, broker.settings.transition_ms);
    if status != "ACTIVE" {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Stream {} is {status}, not ACTIVE.", live.record.name),
        ));
    }
    let transition = broker.settings.transition_ms;
    modify_stream(broker, &live.record.name, |record| {
        check_distribution(record.record_distribution.as_deref(), mode, &record.name)?;
        if mode == StreamMode::Provisioned
            && (!record.queues.is_empty() || !record.channels.is_empty())
        {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Stream {} has queues or channels, which need ON_DEMAND mode; delete them first.",
                    record.name
                ),
            ));
        }
        if record.mode == mode {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Stream {} is already in {} mode.",
                    record.name,
                    mode.api_name()
                ),
            ));
        }
        record.mode = mode;
        record.updating_until_ms = Some(now + transition);
        Ok(())
    })
    .await?;
    Ok(no_output())
}

pub(super) async fn update_record_distribution(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: StreamInput = json::decode(body)?;
    let strategy = required(
        input.record_distribution_strategy.clone(),
        "recordDistributionStrategy",
    )?;
    if strategy != "AUTO" && strategy != "USER_PARTITION_KEY" {
        return Err(ApiError::constraint(
            &strategy,
            "recordDistributionStrategy",
            "Member must satisfy enum value set: [AUTO, USER_PARTITION_KEY]",
        ));
    }
    let name = stream_name(broker, &input)?;
    modify_stream(broker, &name, |record| {
        check_distribution(Some(&strategy), record.mode, &record.name)?;
        record.record_distribution = Some(strategy.clone());
        Ok(())
    })
    .await?;
    Ok(no_output())
}

/// Refuses the AUTO record distribution strategy on a stream that is not ON_DEMAND, as
/// Kinesis does (it is a setting of on-demand streams only).
pub(super) fn check_distribution(
    strategy: Option<&str>,
    mode: crate::broker::catalog::StreamMode,
    stream: &str,
) -> Result<(), ApiError> {
    if strategy == Some("AUTO") && mode != crate::broker::catalog::StreamMode::OnDemand {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "The record distribution strategy AUTO is supported only for streams in ON_DEMAND capacity mode (stream {stream}); use USER_PARTITION_KEY for a PROVISIONED stream."
            ),
        ));
    }
    Ok(())
}

/// A stream, a consumer, a queue or a channel named by ARN.
enum Resource {
    Stream(String),
    Consumer(String, String),
    /// A queue: its stream's name and the queue's name and id.
    Queue(String, String, String),
    /// A channel: its stream's name and the channel's name.
    Channel(String, String),
}

fn resource(broker: &Broker, arn: &str) -> Result<Resource, ApiError> {
    if arn.contains(":channel/") {
        let (stream, channel) = super::channels::find_channel(broker, arn)?;
        return Ok(Resource::Channel(stream.record.name.clone(), channel.name));
    }
    if arn.contains(":queue/") {
        let (stream, queue) = super::queues::find_queue(broker, arn)?;
        return Ok(Resource::Queue(
            stream.record.name.clone(),
            queue.name,
            queue.id,
        ));
    }
    if parse_consumer_arn(arn).is_some() {
        let (stream, consumer) = super::consumers::resolve_consumer(broker, arn)?;
        return Ok(Resource::Consumer(
            stream.record.name.clone(),
            consumer.name,
        ));
    }
    Ok(Resource::Stream(
        broker.resolve(None, Some(arn))?.record.name.clone(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    tags: Option<std::collections::BTreeMap<String, String>>,
    tag_keys: Option<Vec<String>>,
    policy: Option<String>,
}

async fn modify_resource<T>(
    broker: &Arc<Broker>,
    arn: &str,
    edit: impl FnOnce(
        &mut std::collections::BTreeMap<String, String>,
        &mut Option<String>,
    ) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    match resource(broker, arn)? {
        Resource::Stream(name) => {
            Ok(
                modify_stream(broker, &name, |r| edit(&mut r.tags, &mut r.policy))
                    .await?
                    .1,
            )
        }
        Resource::Consumer(stream, consumer) => {
            Ok(modify_stream(broker, &stream, |r: &mut StreamRecord| {
                let entry = r
                    .consumers
                    .iter_mut()
                    .find(|c| c.name == consumer)
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorKind::ResourceNotFound,
                            format!("Consumer {consumer} not found."),
                        )
                    })?;
                edit(&mut entry.tags, &mut entry.policy)
            })
            .await?
            .1)
        }
        Resource::Queue(stream, queue, id) => {
            Ok(modify_stream(broker, &stream, |r: &mut StreamRecord| {
                let entry = r.queues.iter_mut().find(|q| q.id == id).ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::ResourceNotFound,
                        format!("Queue {queue} not found."),
                    )
                })?;
                edit(&mut entry.tags, &mut entry.policy)
            })
            .await?
            .1)
        }
        Resource::Channel(stream, channel) => {
            Ok(modify_stream(broker, &stream, |r: &mut StreamRecord| {
                let entry = r
                    .channels
                    .iter_mut()
                    .find(|c| c.name == channel)
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorKind::ResourceNotFound,
                            format!("Channel {channel} not found."),
                        )
                    })?;
                edit(&mut entry.tags, &mut entry.policy)
            })
            .await?
            .1)
        }
    }
}

pub(super) async fn tag_resource(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ResourceInput = json::decode(body)?;
    let arn = required(input.resource_arn, "resourceARN")?;
    let tags = required(input.tags, "tags")?;
    if tags.is_empty() || tags.len() > 200 {
        return Err(ApiError::constraint(
            "{...}",
            "tags",
            "Member must have length between 1 and 200",
        ));
    }
    let tagged = match resource(broker, &arn)? {
        Resource::Stream(name) => format!("stream {name}"),
        Resource::Consumer(_, consumer) => format!("consumer {consumer}"),
        Resource::Queue(_, queue, _) => format!("queue {queue}"),
        Resource::Channel(_, channel) => format!("channel {channel}"),
    };
    super::streams::check_tag_characters(
        tags.keys().chain(tags.values()),
        &tagged,
        &broker.settings.account,
    )?;
    modify_resource(broker, &arn, |existing, _| {
        let mut merged = existing.clone();
        merged.extend(tags);
        if merged.len() > 50 {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                "A resource cannot have more than 50 tags.",
            ));
        }
        *existing = merged;
        Ok(())
    })
    .await?;
    Ok(no_output())
}

pub(super) async fn untag_resource(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ResourceInput = json::decode(body)?;
    let arn = required(input.resource_arn, "resourceARN")?;
    let keys = required(input.tag_keys, "tagKeys")?;
    modify_resource(broker, &arn, |existing, _| {
        existing.retain(|k, _| !keys.contains(k));
        Ok(())
    })
    .await?;
    Ok(no_output())
}

pub(super) async fn list_tags_for_resource(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: ResourceInput = json::decode(body)?;
    let arn = required(input.resource_arn, "resourceARN")?;
    let tags = match resource(broker, &arn)? {
        Resource::Stream(name) => broker.resolve(Some(&name), None)?.record.tags.clone(),
        Resource::Consumer(..) => super::consumers::resolve_consumer(broker, &arn)?.1.tags,
        Resource::Queue(..) => super::queues::find_queue(broker, &arn)?.1.tags,
        Resource::Channel(..) => super::channels::find_channel(broker, &arn)?.1.tags,
    };
    let list: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json::encode(&json!({"Tags": list})))
}

pub(super) async fn put_resource_policy(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: ResourceInput = json::decode(body)?;
    let arn = required(input.resource_arn, "resourceARN")?;
    let text = required(input.policy, "policy")?;
    policy::parse(&text).map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e.to_string()))?;
    modify_resource(broker, &arn, |_, existing| {
        *existing = Some(text);
        Ok(())
    })
    .await?;
    Ok(no_output())
}

pub(super) async fn get_resource_policy(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: ResourceInput = json::decode(body)?;
    let arn = required(input.resource_arn, "resourceARN")?;
    let text = match resource(broker, &arn)? {
        Resource::Stream(name) => broker.resolve(Some(&name), None)?.record.policy.clone(),
        Resource::Consumer(..) => super::consumers::resolve_consumer(broker, &arn)?.1.policy,
        Resource::Queue(..) => super::queues::find_queue(broker, &arn)?.1.policy,
        Resource::Channel(..) => super::channels::find_channel(broker, &arn)?.1.policy,
    };
    // Kinesis answers an empty policy document when none is attached.
    Ok(json::encode(
        &json!({"Policy": text.unwrap_or_else(|| "{}".to_owned())}),
    ))
}

pub(super) async fn delete_resource_policy(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: ResourceInput = json::decode(body)?;
    let arn = required(input.resource_arn, "resourceARN")?;
    modify_resource(broker, &arn, |_, existing| {
        if existing.take().is_none() {
            return Err(ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("No resource policy is attached to {arn}."),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(no_output())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommitmentInput {
    minimum_throughput_billing_commitment: Option<Value>,
}

pub(super) async fn describe_account_settings(broker: &Arc<Broker>) -> Result<Vec<u8>, ApiError> {
    let catalog = broker.catalog.lock().await;
    Ok(json::encode(&commitment_json(&catalog.billing_commitment)))
}

fn commitment_json(commitment: &Option<(String, u64)>) -> Value {
    match commitment {
        Some((status, since)) => {
            json!({"MinimumThroughputBillingCommitment": {"Status": status, "StartedAt": *since as f64 / 1000.0}})
        }
        None => json!({"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}}),
    }
}

pub(super) async fn update_account_settings(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: CommitmentInput = json::decode(body)?;
    let commitment = required(
        input.minimum_throughput_billing_commitment,
        "minimumThroughputBillingCommitment",
    )?;
    let status = commitment
        .get("Status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if status != "ENABLED" && status != "DISABLED" {
        return Err(ApiError::constraint(
            &status,
            "minimumThroughputBillingCommitment.status",
            "Member must satisfy enum value set: [ENABLED, DISABLED]",
        ));
    }
    let mut catalog = broker.catalog.lock().await;
    let mut updated = catalog.clone();
    updated.billing_commitment = Some((status, broker.clock.now_ms()));
    broker.save(&mut updated)?;
    *catalog = updated;
    Ok(json::encode(&commitment_json(&catalog.billing_commitment)))
}
