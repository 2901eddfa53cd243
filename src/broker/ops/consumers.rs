//! Enhanced fan-out consumers: Register-, Describe-, List- and DeregisterStreamConsumer.
//!
//! ARNs follow Kinesis: `<stream ARN>/consumer/<name>:<registration epoch seconds>`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{bounded, modify_stream, no_output, required};
use crate::broker::catalog::ConsumerRecord;
use crate::broker::protocol::json;
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::state::{Broker, LiveStream};

/// Most consumers one stream may have, as in Kinesis.
pub const MAX_CONSUMERS: usize = 20;

/// A consumer's ARN.
pub fn consumer_arn(stream: &LiveStream, consumer: &ConsumerRecord) -> String {
    format!(
        "{}/consumer/{}:{}",
        stream.arn,
        consumer.name,
        consumer.created_ms / 1000
    )
}

/// CREATING, ACTIVE or DELETING at `now_ms`.
pub fn consumer_status(consumer: &ConsumerRecord, now_ms: u64, transition_ms: u64) -> &'static str {
    lifecycle_status(
        consumer.created_ms,
        consumer.deleting_since_ms.is_some(),
        now_ms,
        transition_ms,
    )
}

/// The status of a consumer or a queue at `now_ms`: DELETING once its deletion began,
/// CREATING for `transition_ms` after its creation, ACTIVE after.
pub fn lifecycle_status(
    created_ms: u64,
    deleting: bool,
    now_ms: u64,
    transition_ms: u64,
) -> &'static str {
    if deleting {
        "DELETING"
    } else if now_ms < created_ms + transition_ms {
        "CREATING"
    } else {
        "ACTIVE"
    }
}

/// Splits a consumer ARN into its stream ARN, consumer name and registration seconds.
pub fn parse_consumer_arn(arn: &str) -> Option<(&str, &str, u64)> {
    let (stream_arn, rest) = arn.split_once("/consumer/")?;
    let (name, seconds) = rest.rsplit_once(':')?;
    Some((stream_arn, name, seconds.parse().ok()?))
}

/// Finds a consumer by ARN: its stream and record.
pub fn resolve_consumer(
    broker: &Broker,
    arn: &str,
) -> Result<(Arc<LiveStream>, ConsumerRecord), ApiError> {
    let invalid = || {
        ApiError::constraint(
            arn,
            "consumerARN",
            "Member must satisfy regular expression pattern: ^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+",
        )
    };
    let (stream_arn, name, seconds) = parse_consumer_arn(arn).ok_or_else(invalid)?;
    let stream = broker.resolve(None, Some(stream_arn))?;
    let consumer = stream
        .record
        .consumers
        .iter()
        .find(|c| c.name == name && c.created_ms / 1000 == seconds)
        .cloned()
        .ok_or_else(|| not_found(name, &stream, &broker.settings.account))?;
    Ok((stream, consumer))
}

fn not_found(name: &str, stream: &LiveStream, account: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceNotFound,
        format!(
            "Consumer {name} under stream {} under account {account} not found.",
            stream.record.name
        ),
    )
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if !crate::api::validation::is_kinesis_name(name) {
        return Err(ApiError::constraint(
            name,
            "consumerName",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

fn describe(
    stream: &LiveStream,
    consumer: &ConsumerRecord,
    broker: &Broker,
    with_stream: bool,
) -> Value {
    let mut out = json!({
        "ConsumerName": consumer.name,
        "ConsumerARN": consumer_arn(stream, consumer),
        "ConsumerStatus": consumer_status(consumer, broker.clock.now_ms(), broker.settings.transition_ms),
        "ConsumerCreationTimestamp": consumer.created_ms as f64 / 1000.0,
    });
    if with_stream {
        out["StreamARN"] = json!(stream.arn);
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegisterInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    tags: Option<std::collections::BTreeMap<String, String>>,
}

pub(super) async fn register(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: RegisterInput = json::decode(body)?;
    let stream_arn = required(input.stream_arn, "streamARN")?;
    let name = required(input.consumer_name, "consumerName")?;
    check_name(&name)?;
    let stream = broker.resolve(None, Some(&stream_arn))?;
    let account = broker.settings.account.clone();
    let created_ms = broker.clock.now_ms();
    let (record, consumer) = modify_stream(broker, &stream.record.name, |record| {
        if record.consumers.iter().any(|c| c.name == name) {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Consumer {name} under stream {} under account {account} already exists.",
                    record.name
                ),
            ));
        }
        // Queues count as registered consumers, as in Kinesis.
        if record.consumers.len() + record.queues.len() >= MAX_CONSUMERS {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Stream {} under account {account} already has {MAX_CONSUMERS} consumers and queues.",
                    record.name
                ),
            ));
        }
        let consumer = ConsumerRecord {
            name,
            created_ms,
            deleting_since_ms: None,
            tags: input.tags.unwrap_or_default(),
            policy: None,
        };
        record.consumers.push(consumer.clone());
        Ok(consumer)
    })
    .await?;
    let live = broker
        .stream(&record.name)
        .ok_or_else(|| ApiError::stream_not_found(&record.name, &account))?;
    Ok(json::encode(
        &json!({"Consumer": describe(&live, &consumer, broker, false)}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsumerRefInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

fn resolve_ref(
    broker: &Broker,
    input: &ConsumerRefInput,
) -> Result<(Arc<LiveStream>, ConsumerRecord), ApiError> {
    match (&input.consumer_arn, &input.stream_arn, &input.consumer_name) {
        (Some(arn), None, None) => resolve_consumer(broker, arn),
        (None, Some(stream_arn), Some(name)) => {
            let stream = broker.resolve(None, Some(stream_arn))?;
            let consumer = stream
                .record
                .consumers
                .iter()
                .find(|c| &c.name == name)
                .cloned()
                .ok_or_else(|| not_found(name, &stream, &broker.settings.account))?;
            Ok((stream, consumer))
        }
        _ => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "Either ConsumerARN, or both StreamARN and ConsumerName, must be provided.",
        )),
    }
}

pub(super) fn describe_consumer(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ConsumerRefInput = json::decode(body)?;
    let (stream, consumer) = resolve_ref(broker, &input)?;
    Ok(json::encode(
        &json!({"ConsumerDescription": describe(&stream, &consumer, broker, true)}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) fn list_consumers(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ListInput = json::decode(body)?;
    let stream_arn = required(input.stream_arn, "streamARN")?;
    let max = bounded(input.max_results, "maxResults", 1, 10_000)?.unwrap_or(100) as usize;
    let stream = broker.resolve(None, Some(&stream_arn))?;
    let after = input.next_token.unwrap_or_default();
    let mut candidates: Vec<&ConsumerRecord> = stream
        .record
        .consumers
        .iter()
        .filter(|c| after.is_empty() || c.name > after)
        .collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    let page: Vec<Value> = candidates
        .iter()
        .take(max)
        .map(|c| describe(&stream, c, broker, false))
        .collect();
    let mut out = json!({"Consumers": page});
    if candidates.len() > max {
        out["NextToken"] = json!(candidates[max - 1].name);
    }
    Ok(json::encode(&out))
}

pub(super) async fn deregister(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: ConsumerRefInput = json::decode(body)?;
    let (stream, consumer) = resolve_ref(broker, &input)?;
    let account = broker.settings.account.clone();
    let now = broker.clock.now_ms();
    let (record, ()) = modify_stream(broker, &stream.record.name, |record| {
        let Some(entry) = record
            .consumers
            .iter_mut()
            .find(|c| c.name == consumer.name)
        else {
            return Err(not_found(&consumer.name, &stream, &account));
        };
        if entry.deleting_since_ms.is_none() {
            entry.deleting_since_ms = Some(now);
        }
        Ok(())
    })
    .await?;
    let broker = broker.clone();
    let (stream_name, consumer_name) = (record.name, consumer.name.clone());
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(
            broker.settings.transition_ms,
        ))
        .await;
        // A stream deleted meanwhile took the consumer with it; nothing left to do then.
        let _ = modify_stream(&broker, &stream_name, |record| {
            record
                .consumers
                .retain(|c| c.name != consumer_name || c.deleting_since_ms.is_none());
            Ok(())
        })
        .await;
    });
    Ok(no_output())
}
