//! Channels: CreateChannel, DescribeChannel, ListChannels, UpdateChannel, DeleteChannel. A
//! channel delivers a stream's records to an S3-compatible bucket with the delivery worker of
//! the Firehose API, run in-process (see [`crate::delivery::control`]); its definition lives
//! in its stream's catalog record, its worker's progress in `firehose/channels/<id>/`.
//!
//! ARNs: `arn:aws:kinesis:<region>:<account>:channel/<name>` (names are unique per account).
//! S3 Tables (Apache Iceberg) destinations append to an Iceberg table (`delivery::table`).

mod config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::by_stream::{ListByStreamInput, random_id};
use super::{modify_stream, no_output, required};
use crate::broker::catalog::{ChannelRecord, StreamMode};
use crate::broker::protocol::{ApiError, ErrorKind, json};
use crate::broker::state::{Broker, LiveStream};
pub use config::channel_run;

fn channel_arn(broker: &Broker, channel: &ChannelRecord) -> String {
    format!(
        "arn:aws:kinesis:{}:{}:channel/{}",
        broker.settings.region, broker.settings.account, channel.name
    )
}

/// The channel name a channel ARN carries.
pub fn parse_channel_arn(arn: &str) -> Option<&str> {
    arn.split_once(":channel/")
        .map(|(_, name)| name)
        .filter(|name| !name.is_empty())
}

fn not_found(broker: &Broker, arn: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceNotFound,
        format!(
            "Channel {arn} under account {} not found.",
            broker.settings.account
        ),
    )
}

/// Finds a channel by ARN: its stream and definition.
pub(crate) fn find_channel(
    broker: &Broker,
    arn: &str,
) -> Result<(Arc<LiveStream>, ChannelRecord), ApiError> {
    let name = parse_channel_arn(arn).ok_or_else(|| not_found(broker, arn))?;
    broker
        .streams()
        .into_iter()
        .find_map(|stream| {
            let channel = stream.record.channels.iter().find(|c| c.name == name)?;
            let channel = channel.clone();
            Some((stream, channel))
        })
        .ok_or_else(|| not_found(broker, arn))
}

/// The channel's status, and the reason when it FAILED: the lifecycle of consumers and
/// queues, FAILED while its worker cannot deliver, UPDATING for a while after an update.
fn status(broker: &Broker, channel: &ChannelRecord) -> (&'static str, Option<String>) {
    let now = broker.clock.now_ms();
    let deleting = channel.deleting_since_ms.is_some();
    let failure = broker
        .firehose
        .get()
        .and_then(|control| control.channel_failure(&channel.id));
    match super::consumers::lifecycle_status(
        channel.created_ms,
        deleting,
        now,
        broker.settings.transition_ms,
    ) {
        "DELETING" => ("DELETING", None),
        _ if failure.is_some() => ("FAILED", failure),
        "ACTIVE" if channel.updating_until_ms.is_some_and(|until| now < until) => {
            ("UPDATING", None)
        }
        lifecycle => (lifecycle, None),
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The members a description and a summary share, with `rest`.
fn with_identity(broker: &Broker, channel: &ChannelRecord, mut rest: Value) -> Value {
    let (status, reason) = status(broker, channel);
    rest["ChannelName"] = json!(channel.name);
    rest["ChannelARN"] = json!(channel_arn(broker, channel));
    rest["ChannelId"] = json!(channel.id);
    rest["ChannelStatus"] = json!(status);
    rest["ChannelCreationTimestamp"] = json!(seconds(channel.created_ms));
    if let Some(reason) = reason {
        rest["ChannelStatusReason"] = json!(reason);
    }
    rest
}

fn describe(broker: &Broker, stream: &LiveStream, channel: &ChannelRecord) -> Value {
    let mut description = json!({
        "ServiceExecutionRoleARN": channel.role_arn,
        "StreamConfigurationList": [{
            "StreamARN": stream.arn,
            "StreamCreationTimestamp": seconds(stream.record.created_ms),
            "RecordConfiguration": channel.record_configuration,
        }],
        "LoggingConfiguration": channel.logging,
    });
    match &channel.tables_destination {
        Some(tables) => description["S3TablesDestinationConfiguration"] = tables.clone(),
        None => description["S3DestinationConfiguration"] = channel.s3_destination.clone(),
    }
    if let Some(encryption) = &channel.encryption {
        description["EncryptionConfiguration"] = encryption.clone();
    }
    with_identity(broker, channel, description)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidArgument, message)
}

/// Starts, restarts and stops the channel workers to match the catalog. In a cluster only
/// pod 0 runs them (it serves every channel call); they read the stream through this pod's
/// API, which relays each shard's reads to its owner.
pub(crate) fn run_channels(broker: &Broker) {
    let Some(control) = broker.firehose.get() else {
        return;
    };
    if broker.cluster.get().is_some_and(|c| !c.is_home()) {
        return;
    }
    let runs = broker
        .streams()
        .iter()
        .flat_map(|stream| {
            stream
                .record
                .channels
                .iter()
                .filter(|c| c.deleting_since_ms.is_none())
                .filter_map(|channel| match channel_run(&stream.record.name, channel) {
                    Ok(run) => Some(run),
                    Err(error) => {
                        tracing::error!(channel = %channel.name, %error, "a channel of the catalog cannot run");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    control.run_channels(runs);
}

pub(super) async fn create_channel(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let request: Value = json::decode(body)?;
    let name = required(request["ChannelName"].as_str(), "channelName")?.to_owned();
    let role_arn = required(
        request["ServiceExecutionRoleARN"].as_str(),
        "serviceExecutionRoleARN",
    )?
    .to_owned();
    let configurations = required(
        request["StreamConfigurationList"].as_array(),
        "streamConfigurationList",
    )?;
    let [configuration] = configurations.as_slice() else {
        return Err(invalid(
            "StreamConfigurationList must contain exactly one entry: a channel delivers records from a single data stream.",
        ));
    };
    if broker.firehose.get().is_none() {
        return Err(invalid(
            "Channels are served by brokers that run delivery workers: this broker is managed by the Brook operator, and its Stream resource has no spec.channels (the S3 endpoint and credentials channels deliver with).",
        ));
    }
    let min_freshness = broker.settings.channel_min_freshness_s;
    let destination = config::destination(&request, min_freshness)?;
    let (s3_destination, tables_destination) = match destination {
        config::Described::S3(s3) => (s3, None),
        config::Described::Tables(tables) => (Value::Null, Some(tables)),
    };
    let record_configuration =
        config::record_configuration(configuration, tables_destination.is_some())?;
    let stream = broker.resolve(None, configuration["StreamARN"].as_str())?;
    let account = broker.settings.account.clone();
    if stream.record.mode != StreamMode::OnDemand {
        return Err(invalid(format!(
            "Channels are supported only on streams in ON_DEMAND capacity mode; stream {} under account {account} is PROVISIONED.",
            stream.record.name
        )));
    }
    let tags: BTreeMap<String, String> = match request.get("Tags") {
        Some(tags) if !tags.is_null() => serde_json::from_value(tags.clone())
            .map_err(|e| ApiError::new(ErrorKind::Validation, format!("Tags: {e}")))?,
        _ => BTreeMap::new(),
    };
    let channel = ChannelRecord {
        id: random_id(16)?,
        name,
        created_ms: broker.clock.now_ms(),
        deleting_since_ms: None,
        updating_until_ms: None,
        generation: 0,
        role_arn,
        record_configuration,
        s3_destination,
        tables_destination,
        encryption: request
            .get("EncryptionConfiguration")
            .filter(|v| !v.is_null())
            .cloned(),
        logging: config::logging(request.get("LoggingConfiguration")),
        tags,
        policy: None,
    };
    // Checked before it is saved: a channel that cannot run is refused, not stored.
    channel_run(&stream.record.name, &channel)?;
    let taken = broker
        .streams()
        .iter()
        .any(|s| s.record.channels.iter().any(|c| c.name == channel.name));
    if taken {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Channel {} under account {account} already exists.",
                channel.name
            ),
        ));
    }
    modify_stream(broker, &stream.record.name, |record| {
        if record.channels.iter().any(|c| c.name == channel.name) {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!("Channel {} under account {account} already exists.", channel.name),
            ));
        }
        if record
            .channels
            .iter()
            .any(|c| c.deleting_since_ms.is_none())
        {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Stream {} under account {account} already has a channel; a stream has at most one.",
                    record.name
                ),
            ));
        }
        if record.mode != StreamMode::OnDemand {
            return Err(invalid(
                "Channels are supported only on streams in ON_DEMAND capacity mode.",
            ));
        }
        record.channels.push(channel.clone());
        Ok(())
    })
    .await?;
    run_channels(broker);
    let stream = broker
        .stream(&stream.record.name)
        .ok_or_else(|| ApiError::stream_not_found(&stream.record.name, &account))?;
    Ok(json::encode(
        &json!({"ChannelDescription": describe(broker, &stream, &channel)}),
    ))
}

fn channel_arn_of(request: &Value) -> Result<String, ApiError> {
    required(request["ChannelARN"].as_str(), "channelARN").map(str::to_owned)
}

pub(super) fn describe_channel(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let request: Value = json::decode(body)?;
    let (stream, channel) = find_channel(broker, &channel_arn_of(&request)?)?;
    Ok(json::encode(
        &json!({"ChannelDescription": describe(broker, &stream, &channel)}),
    ))
}

pub(super) fn list_channels(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ListByStreamInput = json::decode(body)?;
    let streams = broker.streams();
    let page = input.page(&streams, |s| &s.record.channels, |c| &c.name)?;
    let summaries: Vec<Value> = page
        .items
        .iter()
        .map(|(stream, channel)| {
            let summary = json!({
                "ChannelDestinationType": if channel.tables_destination.is_some() { "S3_TABLES" } else { "S3" },
                "Streams": [{
                    "StreamARN": stream.arn,
                    "StreamCreationTimestamp": seconds(stream.record.created_ms),
                }],
            });
            with_identity(broker, channel, summary)
        })
        .collect();
    let mut out = json!({"ChannelSummaries": summaries});
    if let Some(token) = page.next_token {
        out["NextToken"] = json!(token);
    }
    Ok(json::encode(&out))
}

pub(super) async fn update_channel(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let request: Value = json::decode(body)?;
    let arn = channel_arn_of(&request)?;
    let freshness = match config::given_destination(&request)? {
        Some((update, to_table)) => Some((
            config::freshness(
                update["DataFreshnessInSeconds"].as_i64(),
                broker.settings.channel_min_freshness_s,
            )?,
            to_table,
        )),
        None => None,
    };
    let logging = request
        .get("LoggingConfiguration")
        .filter(|v| !v.is_null())
        .cloned();
    if freshness.is_none() && logging.is_none() {
        return Err(invalid(
            "Nothing to update: give S3DestinationConfiguration, S3TablesDestinationConfiguration or LoggingConfiguration.",
        ));
    }
    let (stream, channel) = find_channel(broker, &arn)?;
    if let Some((_, to_table)) = freshness
        && to_table != channel.tables_destination.is_some()
    {
        return Err(invalid(if to_table {
            "S3TablesDestinationConfiguration updates a channel to S3 Tables; this channel delivers to a general purpose S3 bucket."
        } else {
            "S3DestinationConfiguration updates a channel to a general purpose S3 bucket; this channel delivers to S3 Tables."
        }));
    }
    let (current, _) = status(broker, &channel);
    if matches!(current, "CREATING" | "UPDATING" | "DELETING") {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Channel {} is {current}; update it once it is ACTIVE.",
                channel.name
            ),
        ));
    }
    let now = broker.clock.now_ms();
    let until = now + broker.settings.transition_ms;
    let (_, updated) = modify_stream(broker, &stream.record.name, |record| {
        let entry = record
            .channels
            .iter_mut()
            .find(|c| c.id == channel.id && c.deleting_since_ms.is_none())
            .ok_or_else(|| not_found(broker, &arn))?;
        if let Some((seconds, _)) = freshness {
            match &mut entry.tables_destination {
                Some(tables) => tables["DataFreshnessInSeconds"] = json!(seconds),
                None => entry.s3_destination["DataFreshnessInSeconds"] = json!(seconds),
            }
        }
        if let Some(logging) = &logging {
            entry.logging = logging.clone();
        }
        entry.generation += 1;
        entry.updating_until_ms = Some(until);
        Ok(entry.clone())
    })
    .await?;
    run_channels(broker);
    Ok(json::encode(
        &json!({"ChannelDescription": describe(broker, &stream, &updated)}),
    ))
}

pub(super) async fn delete_channel(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let request: Value = json::decode(body)?;
    let (stream, channel) = find_channel(broker, &channel_arn_of(&request)?)?;
    let now = broker.clock.now_ms();
    modify_stream(broker, &stream.record.name, |record| {
        if let Some(entry) = record.channels.iter_mut().find(|c| c.id == channel.id) {
            entry.deleting_since_ms.get_or_insert(now);
        }
        Ok(())
    })
    .await?;
    run_channels(broker);
    let broker = broker.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(broker.settings.transition_ms)).await;
        // A stream deleted meanwhile took the channel's definition with it.
        let _ = modify_stream(&broker, &stream.record.name, |record| {
            record.channels.retain(|c| c.id != channel.id);
            Ok(())
        })
        .await;
    });
    Ok(no_output())
}
