//! The operator's Kinesis admin client: JSON 1.1 calls signed with the stream's admin key,
//! sent to the brokers' client Service. Only the handful of control-plane calls the operator
//! makes; the answers are read into the few fields it decides on.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;

mod queues;

pub use queues::{QueueAttributes, QueueStart, QueueSummary};

use super::broker_pods::ShardView;
use crate::broker::auth;
use crate::broker::cluster::admin::TARGET_PREFIX as PLACEMENT_PREFIX;
use crate::broker::protocol::json::{FailedAnswer, failed_answer};

/// How long one admin call may take before the brokers count as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No connection, or the connection broke before an answer.
    #[error("brokers at {endpoint} are unreachable: {message}")]
    Unreachable {
        /// Where the call went.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The brokers answered with a Kinesis error.
    #[error("{operation} failed with {code}: {message}")]
    Api {
        /// The operation.
        operation: &'static str,
        /// The Kinesis error code, such as `LimitExceededException`.
        code: String,
        /// The error message.
        message: String,
    },
    /// The answer was not the JSON the operation returns.
    #[error("{operation} answered with an unreadable body: {message}")]
    Decode {
        /// The operation.
        operation: &'static str,
        /// What could not be read.
        message: String,
    },
}

impl AdminError {
    /// The Kinesis error code of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the named stream or consumer does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("ResourceNotFoundException")
    }
}

/// An open shard as ListShards reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenShard {
    /// Its id.
    pub shard_id: String,
    /// First hash key it owns.
    pub starting_hash_key: u128,
    /// Last hash key it owns.
    pub ending_hash_key: u128,
    /// The shard it was split or merged from.
    pub parent_shard_id: Option<String>,
}

/// What the operator reads of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    /// CREATING, ACTIVE, UPDATING or DELETING.
    pub status: String,
    /// The stream's ARN.
    pub arn: String,
    /// Open shards.
    pub open_shards: i32,
    /// Retention in hours.
    pub retention_hours: i32,
    /// Largest record in KiB.
    pub max_record_size_kib: i32,
    /// PROVISIONED or ON_DEMAND.
    pub mode: String,
}

/// What the operator reads of a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSummary {
    /// The consumer's ARN.
    pub arn: String,
    /// CREATING, ACTIVE or DELETING.
    pub status: String,
}

/// The placement of a stream's shards over its broker pods, as pod 0 reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// How many pods take new shards.
    pub pods: u32,
    /// The brokers' clock, epoch milliseconds.
    pub now_ms: u64,
    /// The stream's retention.
    pub retention_ms: u64,
    /// Every shard, open or closed.
    pub shards: Vec<ShardView>,
}

/// An admin client for one stream's brokers.
#[derive(Clone)]
pub struct BrokerAdmin {
    /// `host:port` of the brokers' Kinesis API.
    pub address: String,
    access_key: String,
    secret: String,
    region: String,
    /// For brokers serving TLS: whom their certificate is trusted by.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for BrokerAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAdmin")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl BrokerAdmin {
    /// A client for the brokers at `address` (`host:port`), signing with the admin key.
    pub fn new(address: String, access_key: &str, secret: &str, region: &str) -> Self {
        Self {
            address,
            access_key: access_key.to_owned(),
            secret: secret.to_owned(),
            region: region.to_owned(),
            tls: None,
        }
    }

    /// The same client over TLS, trusting `tls` (plain HTTP when `None`).
    pub fn with_tls(mut self, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    fn unreachable(&self, message: impl ToString) -> AdminError {
        AdminError::Unreachable {
            endpoint: self.address.clone(),
            message: message.to_string(),
        }
    }

    /// Calls Kinesis `operation` with `body` and returns the decoded answer.
    async fn call(&self, operation: &'static str, body: Value) -> Result<Value, AdminError> {
        self.call_as(crate::broker::protocol::TARGET_PREFIX, operation, body)
            .await
    }

    /// Calls `operation` of the API whose targets start with `prefix`.
    async fn call_as(
        &self,
        prefix: &str,
        operation: &'static str,
        body: Value,
    ) -> Result<Value, AdminError> {
        let call = self.call_once(prefix, operation, body);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(self.unreachable(format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    async fn call_once(
        &self,
        prefix: &str,
        operation: &'static str,
        body: Value,
    ) -> Result<Value, AdminError> {
        let body = serde_json::to_vec(&body).map_err(|e| AdminError::Decode {
            operation,
            message: e.to_string(),
        })?;
        let request = auth::signed_json_request(
            &self.address,
            &format!("{prefix}{operation}"),
            Bytes::from(body),
            &self.access_key,
            &self.secret,
            &self.region,
            crate::broker::shard::wall_clock_ms(),
        )
        .map_err(|e| self.unreachable(e))?;
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| self.unreachable(e))?;
        let response = match &self.tls {
            None => crate::http1::send(stream, request).await,
            Some(tls) => {
                let host = crate::http1::host_of(&self.address);
                let stream = crate::http1::connect_tls(host, stream, tls)
                    .await
                    .map_err(|e| self.unreachable(e))?;
                crate::http1::send(stream, request).await
            }
        }
        .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(e))?
            .to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| AdminError::Decode {
                operation,
                message: e.to_string(),
            })?
        };
        if status.is_success() {
            return Ok(value);
        }
        match failed_answer(status, &value) {
            FailedAnswer::Unavailable(message) => Err(self.unreachable(message)),
            FailedAnswer::Api { code, message } => Err(AdminError::Api {
                operation,
                code,
                message,
            }),
        }
    }

    /// The stream's summary, or `None` when the brokers do not have it.
    pub async fn describe_stream(&self, name: &str) -> Result<Option<StreamSummary>, AdminError> {
        let operation = "DescribeStreamSummary";
        let answer = match self.call(operation, json!({"StreamName": name})).await {
            Ok(answer) => answer,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let summary = &answer["StreamDescriptionSummary"];
        let text = |field: &str| summary[field].as_str().map(str::to_owned);
        let number = |field: &str| summary[field].as_i64().and_then(|n| i32::try_from(n).ok());
        let missing = |field: &str| AdminError::Decode {
            operation,
            message: format!("no {field}"),
        };
        Ok(Some(StreamSummary {
            status: text("StreamStatus").ok_or_else(|| missing("StreamStatus"))?,
            arn: text("StreamARN").ok_or_else(|| missing("StreamARN"))?,
            open_shards: number("OpenShardCount").ok_or_else(|| missing("OpenShardCount"))?,
            retention_hours: number("RetentionPeriodHours")
                .ok_or_else(|| missing("RetentionPeriodHours"))?,
            max_record_size_kib: number("MaxRecordSizeInKiB").unwrap_or(1024),
            mode: summary["StreamModeDetails"]["StreamMode"]
                .as_str()
                .unwrap_or("PROVISIONED")
                .to_owned(),
        }))
    }

    /// Creates a stream with `shards` open shards in `mode` (PROVISIONED or ON_DEMAND).
    pub async fn create_stream(
        &self,
        name: &str,
        shards: i32,
        mode: &str,
    ) -> Result<(), AdminError> {
        self.call(
            "CreateStream",
            json!({"StreamName": name, "ShardCount": shards,
                   "StreamModeDetails": {"StreamMode": mode}}),
        )
        .await
        .map(drop)
    }

    /// Switches the stream's capacity mode.
    pub async fn update_stream_mode(&self, arn: &str, mode: &str) -> Result<(), AdminError> {
        self.call(
            "UpdateStreamMode",
            json!({"StreamARN": arn, "StreamModeDetails": {"StreamMode": mode}}),
        )
        .await
        .map(drop)
    }

    /// Deletes a stream with its consumers.
    pub async fn delete_stream(&self, name: &str) -> Result<(), AdminError> {
        self.call(
            "DeleteStream",
            json!({"StreamName": name, "EnforceConsumerDeletion": true}),
        )
        .await
        .map(drop)
    }

    /// Reshards towards `target` open shards (uniform scaling).
    pub async fn update_shard_count(&self, name: &str, target: i32) -> Result<(), AdminError> {
        self.call(
            "UpdateShardCount",
            json!({"StreamName": name, "TargetShardCount": target,
                   "ScalingType": "UNIFORM_SCALING"}),
        )
        .await
        .map(drop)
    }

    /// The open shards with their hash ranges and parents, in hash-key order.
    pub async fn open_shards(&self, name: &str) -> Result<Vec<OpenShard>, AdminError> {
        let operation = "ListShards";
        let answer = self
            .call(
                operation,
                json!({"StreamName": name,
                       "ShardFilter": {"Type": "AT_LATEST"}}),
            )
            .await?;
        let decode = |message: String| AdminError::Decode { operation, message };
        let mut shards = answer["Shards"]
            .as_array()
            .ok_or_else(|| decode("no Shards".into()))?
            .iter()
            .map(|shard| {
                let key = |field: &str| {
                    shard["HashKeyRange"][field]
                        .as_str()
                        .and_then(|k| k.parse::<u128>().ok())
                        .ok_or_else(|| decode(format!("no {field} in {shard}")))
                };
                Ok(OpenShard {
                    shard_id: shard["ShardId"]
                        .as_str()
                        .ok_or_else(|| decode(format!("no ShardId in {shard}")))?
                        .to_owned(),
                    starting_hash_key: key("StartingHashKey")?,
                    ending_hash_key: key("EndingHashKey")?,
                    parent_shard_id: shard["ParentShardId"].as_str().map(str::to_owned),
                })
            })
            .collect::<Result<Vec<_>, AdminError>>()?;
        shards.sort_by_key(|s| s.starting_hash_key);
        Ok(shards)
    }

    /// The placement of the stream's shards over its broker pods, from pod 0.
    pub async fn describe_placement(&self, name: &str) -> Result<Placement, AdminError> {
        const OPERATION: &str = "DescribePlacement";
        let answer = self
            .call_as(PLACEMENT_PREFIX, OPERATION, json!({"StreamName": name}))
            .await?;
        let decode = |message: String| AdminError::Decode {
            operation: OPERATION,
            message,
        };
        let index = |id: &Value| {
            id.as_str()
                .and_then(|id| id.strip_prefix("shardId-"))
                .and_then(|n| n.parse::<u32>().ok())
        };
        let stream = &answer["Streams"][0];
        let shards = stream["Shards"]
            .as_array()
            .ok_or_else(|| decode(format!("no Shards in {answer}")))?
            .iter()
            .map(|shard| {
                Ok(ShardView {
                    index: index(&shard["ShardId"])
                        .ok_or_else(|| decode(format!("no ShardId in {shard}")))?,
                    owner: shard["Owner"]
                        .as_u64()
                        .and_then(|o| u32::try_from(o).ok())
                        .ok_or_else(|| decode(format!("no Owner in {shard}")))?,
                    closed_ms: shard["ClosedMs"].as_u64(),
                    parent: index(&shard["ParentShardId"]),
                    merged: !shard["AdjacentParentShardId"].is_null(),
                    expired: shard["Expired"].as_bool().unwrap_or(false),
                    moving_to: shard["MovingTo"]
                        .as_u64()
                        .and_then(|o| u32::try_from(o).ok()),
                    move_failure: shard["MoveFailure"].as_str().map(str::to_owned),
                    move_retry_at_ms: shard["MoveRetryAt"].as_u64(),
                })
            })
            .collect::<Result<Vec<_>, AdminError>>()?;
        let number = |field: &str| {
            answer[field]
                .as_u64()
                .ok_or_else(|| decode(format!("no {field} in {answer}")))
        };
        Ok(Placement {
            pods: u32::try_from(number("PlacementPods")?).unwrap_or(u32::MAX),
            now_ms: number("NowMs")?,
            retention_ms: stream["RetentionHours"].as_u64().unwrap_or(24) * 3_600_000,
            shards,
        })
    }

    /// Sets how many broker pods (ordinals `0..pods`) take new shards.
    pub async fn set_placement_pods(&self, pods: u32) -> Result<(), AdminError> {
        self.call_as(PLACEMENT_PREFIX, "SetPlacementPods", json!({"Pods": pods}))
            .await
            .map(drop)
    }

    /// Starts copying closed shard `shard_id` off its leaving pod to one that stays; answers
    /// the pod it goes to.
    pub async fn move_closed_shard(&self, name: &str, shard_id: &str) -> Result<u32, AdminError> {
        const OPERATION: &str = "MoveClosedShard";
        let answer = self
            .call_as(
                PLACEMENT_PREFIX,
                OPERATION,
                json!({"StreamName": name, "ShardId": shard_id}),
            )
            .await?;
        answer["To"]
            .as_u64()
            .and_then(|to| u32::try_from(to).ok())
            .ok_or_else(|| AdminError::Decode {
                operation: OPERATION,
                message: format!("no To in {answer}"),
            })
    }

    /// Splits one shard at `new_starting_hash_key`.
    pub async fn split_shard(
        &self,
        name: &str,
        shard_id: &str,
        new_starting_hash_key: u128,
    ) -> Result<(), AdminError> {
        self.call(
            "SplitShard",
            json!({"StreamName": name, "ShardToSplit": shard_id,
                   "NewStartingHashKey": new_starting_hash_key.to_string()}),
        )
        .await
        .map(drop)
    }

    /// Merges two adjacent shards.
    pub async fn merge_shards(
        &self,
        name: &str,
        shard_id: &str,
        adjacent_shard_id: &str,
    ) -> Result<(), AdminError> {
        self.call(
            "MergeShards",
            json!({"StreamName": name, "ShardToMerge": shard_id,
                   "AdjacentShardToMerge": adjacent_shard_id}),
        )
        .await
        .map(drop)
    }

    /// Sets the retention, increasing or decreasing it as `from` compares.
    pub async fn set_retention(&self, name: &str, from: i32, to: i32) -> Result<(), AdminError> {
        let operation = if to > from {
            "IncreaseStreamRetentionPeriod"
        } else {
            "DecreaseStreamRetentionPeriod"
        };
        self.call(
            operation,
            json!({"StreamName": name, "RetentionPeriodHours": to}),
        )
        .await
        .map(drop)
    }

    /// Sets the largest record size.
    pub async fn set_max_record_size(&self, name: &str, kib: i32) -> Result<(), AdminError> {
        self.call(
            "UpdateMaxRecordSize",
            json!({"StreamName": name, "MaxRecordSizeInKiB": kib}),
        )
        .await
        .map(drop)
    }

    /// The consumer's ARN and status, or `None` when it is not registered.
    pub async fn describe_consumer(
        &self,
        stream_arn: &str,
        consumer: &str,
    ) -> Result<Option<ConsumerSummary>, AdminError> {
        let operation = "DescribeStreamConsumer";
        let answer = match self
            .call(
                operation,
                json!({"StreamARN": stream_arn, "ConsumerName": consumer}),
            )
            .await
        {
            Ok(answer) => answer,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        consumer_summary(operation, &answer["ConsumerDescription"]).map(Some)
    }

    /// Registers a consumer.
    pub async fn register_consumer(
        &self,
        stream_arn: &str,
        consumer: &str,
    ) -> Result<ConsumerSummary, AdminError> {
        let operation = "RegisterStreamConsumer";
        let answer = self
            .call(
                operation,
                json!({"StreamARN": stream_arn, "ConsumerName": consumer}),
            )
            .await?;
        consumer_summary(operation, &answer["Consumer"])
    }

    /// Deregisters a consumer.
    pub async fn deregister_consumer(
        &self,
        stream_arn: &str,
        consumer: &str,
    ) -> Result<(), AdminError> {
        self.call(
            "DeregisterStreamConsumer",
            json!({"StreamARN": stream_arn, "ConsumerName": consumer}),
        )
        .await
        .map(drop)
    }
}

fn consumer_summary(operation: &'static str, value: &Value) -> Result<ConsumerSummary, AdminError> {
    let text = |field: &str| {
        value[field]
            .as_str()
            .map(str::to_owned)
            .ok_or(AdminError::Decode {
                operation,
                message: format!("no {field}"),
            })
    };
    Ok(ConsumerSummary {
        arn: text("ConsumerARN")?,
        status: text("ConsumerStatus")?,
    })
}
