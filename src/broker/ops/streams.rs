//! Stream operations: create, delete, describe, list, retention, tags and limits.

use std::fmt::Write;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{bounded, no_output, required, validate_stream_name};
use crate::broker::catalog::{StreamMode, StreamRecord};
use crate::broker::protocol::json::{
    self, AddTagsInput, CreateStreamInput, DeleteStreamInput, DescribeStreamInput, ListShardsInput,
    ListStreamsInput, ListTagsInput, RemoveTagsInput, RetentionInput, StreamRef,
};
use crate::broker::protocol::{ApiError, ErrorKind, timestamp_ms};
use crate::broker::routing::{parse_shard_id, record_sequence, shard_id, shard_start_sequence};
use crate::broker::state::{Broker, LiveShard, LiveStream};

/// Tags per stream. Today's Kinesis takes 50 (API reference, AddTagsToStream: "You can assign
/// up to 50 tags to a data stream"); older documentation, SDK docs and kinesalite say 10.
const MAX_TAGS: usize = 50;
const NEXT_TOKEN_TTL_MS: u64 = 300_000;
const ON_DEMAND_SHARDS: u32 = 4;
const ON_DEMAND_STREAM_LIMIT: u64 = 50;

fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// Whether Kinesis takes `c` in a tag key or value: letters (Latin, and the Unicode blocks
/// Kinesis accepts), digits, space and `_ . / = + - @ %`.
fn tag_character_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '.' | '/' | '=' | '+' | '-' | ' ' | '@' | '%')
        || ('\u{C0}'..='\u{1FFF}').contains(&c)
        || ('\u{2C00}'..='\u{D7FF}').contains(&c)
}

/// Refuses tags with characters Kinesis refuses, with its two messages: one for characters it
/// never takes, one for `%`, which passes the first check but not the second.
/// `resource` names what is tagged as the message does: `stream orders`.
pub(super) fn check_tag_characters<'a>(
    mut texts: impl Iterator<Item = &'a String> + Clone,
    resource: &str,
    account: &str,
) -> Result<(), ApiError> {
    if texts.clone().any(|t| !t.chars().all(tag_character_allowed)) {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.",
        ));
    }
    if texts.any(|t| t.contains('%')) {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "Failed to add tags to {resource} under account {account} because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
            ),
        ));
    }
    Ok(())
}

pub(super) async fn create_stream(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: CreateStreamInput = json::decode(body)?;
    let name = required(input.stream_name, "streamName")?;
    validate_stream_name(&name)?;
    let mode = match input
        .stream_mode_details
        .as_ref()
        .map(|m| m.stream_mode.as_str())
    {
        None | Some("PROVISIONED") => StreamMode::Provisioned,
        Some("ON_DEMAND") => StreamMode::OnDemand,
        Some(other) => {
            return Err(ApiError::constraint(
                other,
                "streamModeDetails.streamMode",
                "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
            ));
        }
    };
    let shard_count = bounded(input.shard_count, "shardCount", 1, i64::from(i32::MAX))?;
    let shard_count = match (mode, shard_count) {
        (StreamMode::OnDemand, None) => ON_DEMAND_SHARDS,
        (_, Some(count)) => count as u32,
        (StreamMode::Provisioned, None) => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "ShardCount is required for streams in PROVISIONED mode.",
            ));
        }
    };
    super::admin::check_distribution(input.record_distribution_strategy.as_deref(), mode, &name)?;
    let max_record_kib = bounded(
        input.max_record_size_in_kib,
        "maxRecordSizeInKiB",
        1024,
        10_240,
    )?;
    // Tag counts and lengths are the model's constraints, checked before any operation.
    let tags = input.tags.unwrap_or_default();
    check_tag_characters(
        tags.keys().chain(tags.values()),
        &format!("stream {name}"),
        &broker.settings.account,
    )?;
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("A stream cannot have more than {MAX_TAGS} tags."),
        ));
    }

    let mut catalog = broker.catalog.lock().await;
    if catalog.streams.contains_key(&name) {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {name} under account {} already exists.",
                broker.settings.account
            ),
        ));
    }
    let open = catalog.open_shards() as u64;
    if open + u64::from(shard_count) > u64::from(broker.settings.shard_limit) {
        return Err(ApiError::new(
            ErrorKind::LimitExceeded,
            format!(
                "This request would exceed the shard limit for the account {} in {}. Current limit of shards is {}. Number of shards that would have resulted from this request is {}.",
                broker.settings.account,
                broker.settings.region,
                broker.settings.shard_limit,
                open + u64::from(shard_count)
            ),
        ));
    }
    let mut updated = catalog.clone();
    let key = updated.next_key;
    updated.next_key += 1;
    let mut record = StreamRecord::new(name.clone(), key, shard_count, broker.clock.now_ms());
    record.mode = mode;
    record.tags = tags;
    record.record_distribution = input.record_distribution_strategy;
    if let Some(kib) = max_record_kib {
        record.max_record_size_kib = kib as u32;
    }
    crate::broker::cluster::place_new_stream(broker, &updated, &mut record);
    updated.streams.insert(name, record.clone());
    broker.save(&mut updated)?;
    *catalog = updated;
    let internal = |e: crate::broker::shard::StoreError| {
        tracing::error!(error = %e, "could not create shards");
        ApiError::new(
            ErrorKind::InternalFailure,
            "The broker could not create the stream's shards.",
        )
    };
    broker
        .store
        .add_shards(record.shard_keys().collect())
        .await
        .map_err(internal)?;
    broker
        .store
        .set_retention(key, record.retention_ms())
        .await
        .map_err(internal)?;
    broker.publish(&record);
    tracing::info!(stream = %record.name, shards = shard_count, "stream created");
    Ok(no_output())
}

pub(super) async fn delete_stream(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: DeleteStreamInput = json::decode(body)?;
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let mut catalog = broker.catalog.lock().await;
    let mut updated = catalog.clone();
    let Some(record) = updated.streams.get_mut(&stream.record.name) else {
        return Err(ApiError::stream_not_found(
            &stream.record.name,
            &broker.settings.account,
        ));
    };
    if record.deleting_since_ms.is_some() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {} under account {} is being deleted.",
                record.name, broker.settings.account
            ),
        ));
    }
    if !record.queues.is_empty() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {} under account {} has queues; delete every queue on it first.",
                record.name, broker.settings.account
            ),
        ));
    }
    if !record.channels.is_empty() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {} under account {} has channels; delete every channel on it first (ListChannels with a StreamFilter finds them).",
                record.name, broker.settings.account
            ),
        ));
    }
    if !record.consumers.is_empty() && input.enforce_consumer_deletion != Some(true) {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {} under account {} has registered consumers; deregister them or set EnforceConsumerDeletion.",
                record.name, broker.settings.account
            ),
        ));
    }
    record.deleting_since_ms = Some(broker.clock.now_ms());
    let record = record.clone();
    broker.save(&mut updated)?;
    *catalog = updated;
    broker.publish(&record);
    drop(catalog);
    let broker = broker.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(
            broker.settings.transition_ms,
        ))
        .await;
        if let Err(error) = finish_delete(&broker, &record.name, record.key).await {
            tracing::error!(stream = %record.name, %error, "could not finish deleting a stream");
        }
    });
    Ok(no_output())
}

/// Removes a stream marked for deletion from the catalog, the live view and the store.
pub async fn finish_delete(broker: &Broker, name: &str, key: u32) -> Result<(), ApiError> {
    let mut catalog = broker.catalog.lock().await;
    if catalog.streams.get(name).is_none_or(|r| r.key != key) {
        return Ok(());
    }
    let mut updated = catalog.clone();
    let Some(record) = updated.streams.remove(name) else {
        return Ok(());
    };
    broker.save(&mut updated)?;
    *catalog = updated;
    broker.unpublish(&record);
    broker
        .store
        .drop_stream(key)
        .await
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    tracing::info!(stream = %name, "stream deleted");
    Ok(())
}

fn shard_json(stream: &LiveStream, shard: &LiveShard) -> Value {
    let (stream_key, index) = (stream.record.key, shard.key.shard_index);
    let start = shard_start_sequence(stream_key, index);
    let mut range = json!({"StartingSequenceNumber": start});
    if let Some(closed) = shard.closed_at_offset {
        // The last record's sequence number; a shard closed empty ends where it starts.
        let end = match closed {
            0 => shard_start_sequence(stream_key, index),
            n => record_sequence(stream_key, index, n - 1),
        };
        range["EndingSequenceNumber"] = json!(end);
    }
    let mut out = json!({
        "ShardId": shard.id,
        "HashKeyRange": {
            "StartingHashKey": shard.range.start.to_string(),
            "EndingHashKey": shard.range.end.to_string(),
        },
        "SequenceNumberRange": range,
    });
    if let Some(parent) = shard.parent {
        out["ParentShardId"] = json!(shard_id(parent));
    }
    if let Some(adjacent) = shard.adjacent_parent {
        out["AdjacentParentShardId"] = json!(shard_id(adjacent));
    }
    out
}

fn stream_mode_json(stream: &LiveStream) -> Value {
    json!({"StreamMode": stream.record.mode.api_name()})
}

pub(super) fn describe_stream(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: DescribeStreamInput = json::decode(body)?;
    let limit = bounded(input.limit, "limit", 1, 10_000)?.unwrap_or(100) as usize;
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let after = input
        .exclusive_start_shard_id
        .as_deref()
        .map(|id| parse_shard_id(id).unwrap_or(0));
    let candidates: Vec<&LiveShard> = stream
        .shards
        .iter()
        .filter(|s| !s.expired && after.is_none_or(|a| s.key.shard_index > a))
        .collect();
    let shards: Vec<Value> = candidates
        .iter()
        .take(limit)
        .map(|s| shard_json(&stream, s))
        .collect();
    let now = broker.clock.now_ms();
    // StreamModeDetails is in today's DescribeStream output (the current API model's
    // StreamDescription shape); older emulators leave it out.
    let description = json!({
        "StreamName": stream.record.name,
        "StreamARN": stream.arn,
        "StreamStatus": stream.status(now, broker.settings.transition_ms),
        "StreamModeDetails": stream_mode_json(&stream),
        "Shards": shards,
        "HasMoreShards": candidates.len() > limit,
        "RetentionPeriodHours": stream.record.retention_hours,
        "StreamCreationTimestamp": seconds(stream.record.created_ms),
        "EnhancedMonitoring": [{"ShardLevelMetrics": stream.record.enhanced_metrics}],
        "EncryptionType": if stream.record.encryption_key.is_some() { "KMS" } else { "NONE" },
    });
    let mut description = description;
    if let Some(key) = &stream.record.encryption_key {
        description["KeyId"] = json!(key);
    }
    Ok(json::encode(&json!({"StreamDescription": description})))
}

pub(super) fn describe_stream_summary(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: StreamRef = json::decode(body)?;
    let stream = broker.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    let now = broker.clock.now_ms();
    let summary = json!({
        "StreamName": stream.record.name,
        "StreamARN": stream.arn,
        "StreamStatus": stream.status(now, broker.settings.transition_ms),
        "StreamModeDetails": stream_mode_json(&stream),
        "RetentionPeriodHours": stream.record.retention_hours,
        "StreamCreationTimestamp": seconds(stream.record.created_ms),
        "EnhancedMonitoring": [{"ShardLevelMetrics": stream.record.enhanced_metrics}],
        "EncryptionType": if stream.record.encryption_key.is_some() { "KMS" } else { "NONE" },
        "OpenShardCount": stream.record.open_shard_count(),
        "ConsumerCount": stream.record.consumers.len(),
        "MaxRecordSizeInKiB": stream.record.max_record_size_kib,
    });
    let mut summary = summary;
    if let Some(key) = &stream.record.encryption_key {
        summary["KeyId"] = json!(key);
    }
    if let Some(mibps) = stream.record.warm_throughput_mibps {
        summary["WarmThroughput"] = json!({"TargetMiBps": mibps, "CurrentMiBps": mibps});
    }
    if let Some(strategy) = &stream.record.record_distribution {
        summary["RecordDistributionStrategy"] = json!(strategy);
    }
    Ok(json::encode(&json!({"StreamDescriptionSummary": summary})))
}

/// A pagination token: what to continue after, for which stream, issued when.
fn encode_token(parts: &[&str], now_ms: u64) -> String {
    let mut text = String::new();
    for part in parts {
        let _ = writeln!(text, "{part}");
    }
    let _ = write!(text, "{now_ms}");
    URL_SAFE_NO_PAD.encode(text)
}

/// ListStreams's `NextToken` that continues after the stream `after`, as every broker reads
/// it (`brook gateway` gives it for the page it merged from several brokers).
pub fn list_streams_token(after: &str, now_ms: u64) -> String {
    encode_token(&[after], now_ms)
}

fn decode_token(token: &str, fields: usize, now_ms: u64) -> Result<Vec<String>, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorKind::InvalidArgument,
            format!("Invalid NextToken: {token}"),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if parts.len() != fields + 1 {
        return Err(invalid());
    }
    let issued: u64 = parts
        .pop()
        .and_then(|t| t.parse().ok())
        .ok_or_else(invalid)?;
    if now_ms.saturating_sub(issued) > NEXT_TOKEN_TTL_MS {
        return Err(ApiError::new(
            ErrorKind::ExpiredNextToken,
            "The NextToken has expired.",
        ));
    }
    Ok(parts)
}

pub(super) fn list_streams(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ListStreamsInput = json::decode(body)?;
    let limit = bounded(input.limit, "limit", 1, 10_000)?.unwrap_or(100) as usize;
    let now = broker.clock.now_ms();
    let after = match (&input.next_token, &input.exclusive_start_stream_name) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "NextToken and ExclusiveStartStreamName cannot be provided together.",
            ));
        }
        (Some(token), None) => decode_token(token, 1, now)?.pop(),
        (None, start) => start.clone(),
    };
    let streams: Vec<Arc<LiveStream>> = broker
        .streams()
        .into_iter()
        .filter(|s| after.as_deref().is_none_or(|a| s.record.name.as_str() > a))
        .collect();
    let page = &streams[..streams.len().min(limit)];
    let has_more = streams.len() > limit;
    let summaries: Vec<Value> = page
        .iter()
        .map(|s| {
            json!({
                "StreamName": s.record.name,
                "StreamARN": s.arn,
                "StreamStatus": s.status(now, broker.settings.transition_ms),
                "StreamModeDetails": stream_mode_json(s),
                "StreamCreationTimestamp": seconds(s.record.created_ms),
            })
        })
        .collect();
    // Today's ListStreams answers StreamSummaries next to StreamNames (the current API model's
    // ListStreamsOutput; AWS added it in 2022), which older emulators do not send.
    let mut out = json!({
        "StreamNames": page.iter().map(|s| s.record.name.clone()).collect::<Vec<_>>(),
        "HasMoreStreams": has_more,
        "StreamSummaries": summaries,
    });
    if let (true, Some(last)) = (has_more, page.last()) {
        out["NextToken"] = json!(list_streams_token(&last.record.name, now));
    }
    Ok(json::encode(&out))
}

pub(super) fn list_shards(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ListShardsInput = json::decode(body)?;
    let max = bounded(input.max_results, "maxResults", 1, 10_000)?.unwrap_or(1000) as usize;
    let now = broker.clock.now_ms();
    let (stream, after) = match &input.next_token {
        Some(token) => {
            if input.stream.stream_name.is_some()
                || input.exclusive_start_shard_id.is_some()
                || input.shard_filter.is_some()
            {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "NextToken and StreamName, ExclusiveStartShardId or ShardFilter cannot be provided together.",
                ));
            }
            let parts = decode_token(token, 3, now)?;
            let stream = broker.resolve(Some(&parts[0]), None)?;
            if parts[1] != stream.record.key.to_string() {
                return Err(ApiError::new(
                    ErrorKind::ExpiredNextToken,
                    "The stream of this NextToken no longer exists.",
                ));
            }
            (stream, parts[2].parse::<u32>().ok())
        }
        None => {
            let stream = broker.resolve(
                input.stream.stream_name.as_deref(),
                input.stream.stream_arn.as_deref(),
            )?;
            let after = input
                .exclusive_start_shard_id
                .as_deref()
                .and_then(parse_shard_id);
            (stream, after)
        }
    };
    if let Some(created) = input.stream_creation_timestamp.and_then(timestamp_ms)
        && created / 1000 != stream.record.created_ms / 1000
    {
        return Err(ApiError::stream_not_found(
            &stream.record.name,
            &broker.settings.account,
        ));
    }
    let filter = shard_filter(&input, &stream, now)?;
    let after = after.or(filter.after);
    let candidates: Vec<&LiveShard> = stream
        .shards
        .iter()
        .filter(|s| !s.expired && after.is_none_or(|a| s.key.shard_index > a))
        .filter(|s| (filter.keep)(s))
        .collect();
    let page = &candidates[..candidates.len().min(max)];
    let mut out =
        json!({"Shards": page.iter().map(|s| shard_json(&stream, s)).collect::<Vec<_>>()});
    if let (true, Some(last)) = (candidates.len() > max, page.last()) {
        let index = last.key.shard_index.to_string();
        let key = stream.record.key.to_string();
        out["NextToken"] = json!(encode_token(&[&stream.record.name, &key, &index], now));
    }
    Ok(json::encode(&out))
}

struct Filter {
    after: Option<u32>,
    keep: Box<dyn Fn(&LiveShard) -> bool>,
}

fn shard_filter(
    input: &ListShardsInput,
    stream: &LiveStream,
    now_ms: u64,
) -> Result<Filter, ApiError> {
    let Some(filter) = &input.shard_filter else {
        return Ok(Filter {
            after: None,
            keep: Box::new(|_| true),
        });
    };
    let created: Vec<(u64, Option<u64>)> = stream
        .record
        .shards
        .iter()
        .map(|s| (s.created_ms, s.closed_ms))
        .collect();
    let lifetime = move |shard: &LiveShard| {
        created
            .get(shard.key.shard_index as usize)
            .copied()
            .unwrap_or((0, None))
    };
    let retention_start = now_ms.saturating_sub(stream.record.retention_ms());
    let trim_horizon = retention_start.max(stream.record.created_ms);
    let timestamp = || {
        filter.timestamp.and_then(timestamp_ms).ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidArgument,
                "A Timestamp is required for this ShardFilter type.",
            )
        })
    };
    let keep: Box<dyn Fn(&LiveShard) -> bool> = match filter.filter_type.as_deref() {
        Some("AFTER_SHARD_ID") => {
            let id = filter.shard_id.as_deref().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    "A ShardId is required for the AFTER_SHARD_ID ShardFilter.",
                )
            })?;
            let after = parse_shard_id(id).unwrap_or(0);
            return Ok(Filter {
                after: Some(after),
                keep: Box::new(|_| true),
            });
        }
        Some("AT_LATEST") => Box::new(|s: &LiveShard| s.closed_at_offset.is_none()),
        Some("AT_TRIM_HORIZON") => Box::new(move |s: &LiveShard| {
            let (created, closed) = lifetime(s);
            created <= trim_horizon && closed.is_none_or(|c| c > trim_horizon)
        }),
        Some("FROM_TRIM_HORIZON") => {
            Box::new(move |s: &LiveShard| lifetime(s).1.is_none_or(|c| c >= retention_start))
        }
        Some("AT_TIMESTAMP") => {
            let at = timestamp()?;
            Box::new(move |s: &LiveShard| {
                let (created, closed) = lifetime(s);
                created <= at && closed.is_none_or(|c| c > at)
            })
        }
        Some("FROM_TIMESTAMP") => {
            let at = timestamp()?;
            Box::new(move |s: &LiveShard| lifetime(s).1.is_none_or(|c| c > at))
        }
        other => {
            return Err(ApiError::constraint(
                other.unwrap_or("null"),
                "shardFilter.type",
                "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
            ));
        }
    };
    Ok(Filter { after: None, keep })
}

pub(super) async fn change_retention(
    broker: &Arc<Broker>,
    body: &[u8],
    increase: bool,
) -> Result<Vec<u8>, ApiError> {
    let input: RetentionInput = json::decode(body)?;
    let hours = required(input.retention_period_hours, "retentionPeriodHours")?;
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let name = &stream.record.name;
    if hours < 24 {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
            ),
        ));
    }
    if hours > 8760 {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is too long."
            ),
        ));
    }
    if stream.status(broker.clock.now_ms(), broker.settings.transition_ms) != "ACTIVE" {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {name} under account {} not ACTIVE.",
                broker.settings.account
            ),
        ));
    }
    let (record, ()) = super::modify_stream(broker, name, |record| {
        let current = i64::from(record.retention_hours);
        if increase && hours < current {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
                ),
            ));
        }
        if !increase && hours > current {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
                ),
            ));
        }
        record.retention_hours = hours as u32;
        Ok(())
    })
    .await?;
    broker
        .store
        .set_retention(record.key, record.retention_ms())
        .await
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    Ok(no_output())
}

/// Applies `edit` to the stream a request names, through the shared catalog path.
async fn edit_tags(
    broker: &Arc<Broker>,
    stream: &StreamRef,
    edit: impl FnOnce(&mut StreamRecord) -> Result<(), ApiError>,
) -> Result<Vec<u8>, ApiError> {
    let live = broker.resolve(stream.stream_name.as_deref(), stream.stream_arn.as_deref())?;
    super::modify_stream(broker, &live.record.name, edit).await?;
    Ok(no_output())
}

pub(super) async fn add_tags(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: AddTagsInput = json::decode(body)?;
    let tags = required(input.tags, "tags")?;
    let account = broker.settings.account.clone();
    edit_tags(broker, &input.stream, |record| {
        check_tag_characters(
            tags.keys().chain(tags.values()),
            &format!("stream {}", record.name),
            &account,
        )?;
        let mut merged = record.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!("Failed to add tags to stream {} because a given stream cannot have more than {MAX_TAGS} tags associated with it.", record.name),
            ));
        }
        record.tags = merged;
        Ok(())
    })
    .await
}

pub(super) async fn remove_tags(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: RemoveTagsInput = json::decode(body)?;
    let keys = required(input.tag_keys, "tagKeys")?;
    edit_tags(broker, &input.stream, |record| {
        for key in &keys {
            record.tags.remove(key);
        }
        Ok(())
    })
    .await
}

pub(super) fn list_tags(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ListTagsInput = json::decode(body)?;
    let limit = bounded(input.limit, "limit", 1, 50)?.unwrap_or(50) as usize;
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let after = input.exclusive_start_tag_key;
    let tags: Vec<(&String, &String)> = stream
        .record
        .tags
        .iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
        .collect();
    let page: Vec<Value> = tags
        .iter()
        .take(limit)
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json::encode(
        &json!({"Tags": page, "HasMoreTags": tags.len() > limit}),
    ))
}

pub(super) async fn describe_limits(broker: &Arc<Broker>) -> Result<Vec<u8>, ApiError> {
    let catalog = broker.catalog.lock().await;
    let on_demand = catalog
        .streams
        .values()
        .filter(|s| s.mode == StreamMode::OnDemand)
        .count();
    Ok(json::encode(&json!({
        "ShardLimit": broker.settings.shard_limit,
        "OpenShardCount": catalog.open_shards(),
        "OnDemandStreamCount": on_demand,
        "OnDemandStreamCountLimit": ON_DEMAND_STREAM_LIMIT,
    })))
}
