//! The `Queue` custom resource: a Kinesis queue on a Stream — competing consumers with
//! receipt handles, visibility timeouts and dead letters (CreateQueue and its kin).
//!
//! A resource of its own rather than a list in the Stream's spec, as `Consumer` is: a queue
//! belongs to the application that consumes it, which declares it next to its Deployment, with
//! its own status (ARN, state) and lifecycle, while the Stream belongs to whoever runs the
//! stream. Its stream and starting position are fixed for its lifetime, as in Kinesis; the
//! visibility timeout and dead-letter handling change in place (UpdateQueue).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;

/// Desired state of a queue.
// kube's printcolumn(...) repeats keys such as `type_` by design, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brook.dev",
    version = "v1alpha1",
    kind = "Queue",
    namespaced,
    status = "QueueStatus",
    shortname = "bq",
    category = "brook",
    derive = "PartialEq",
    doc = "A Kinesis queue on a Brook stream: competing consumers with visibility timeouts and dead letters",
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.streamName"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.queueStatus"),
    printcolumn(
        name = "ARN",
        type_ = "string",
        json_path = ".status.queueARN",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.queueName) ? self.queueName : '') == (has(oldSelf.queueName) ? oldSelf.queueName : '')").message("queueName is immutable; create a new Queue instead"))]
pub struct QueueSpec {
    /// Name of the Stream, in the same namespace, whose records the queue delivers. The
    /// Stream must be in ON_DEMAND mode (`spec.streamMode`), as Kinesis requires.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("streamName is immutable; create a new Queue instead"))]
    pub stream_name: String,
    /// Queue name in the stream's brokers; the resource's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub queue_name: Option<String>,
    /// Where the queue starts in the stream; LATEST when absent.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("startingPosition is immutable; create a new Queue instead"))]
    pub starting_position: StartingPosition,
    /// How long a received record stays invisible to other consumers, in seconds.
    #[serde(default = "default_visibility_timeout")]
    #[schemars(range(min = 0, max = 43200))]
    pub visibility_timeout_seconds: i32,
    /// Dead-letter handling: BUILT_IN (the default, after 6 receives) or NONE.
    #[serde(default)]
    pub dead_letters: DeadLetters,
}

fn default_visibility_timeout() -> i32 {
    30
}

/// Where a queue starts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'AT_TIMESTAMP') == has(self.timestamp)").message("timestamp is required with AT_TIMESTAMP and only with it"))]
pub struct StartingPosition {
    /// LATEST (records put after the queue's creation), TRIM_HORIZON (every record the
    /// stream holds) or AT_TIMESTAMP.
    #[serde(default, rename = "type")]
    pub kind: StartingPositionType,
    /// With AT_TIMESTAMP: the first arrival time to deliver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Time>,
}

/// The starting positions a queue takes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPositionType {
    /// Records put after the queue's creation.
    #[default]
    Latest,
    /// Every record the stream holds.
    TrimHorizon,
    /// Records that arrived at or after `timestamp`.
    AtTimestamp,
}

impl StartingPositionType {
    /// The Kinesis API's name.
    pub fn as_api(self) -> &'static str {
        match self {
            Self::Latest => "LATEST",
            Self::TrimHorizon => "TRIM_HORIZON",
            Self::AtTimestamp => "AT_TIMESTAMP",
        }
    }
}

/// Dead-letter handling, as Kinesis's DeadLetterConfiguration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.targetType == 'BUILT_IN' || !has(self.maxReceiveCount)").message("maxReceiveCount applies to BUILT_IN dead-letter handling"))]
pub struct DeadLetters {
    /// BUILT_IN: a record received `maxReceiveCount` times without acknowledgement becomes a
    /// dead letter; NONE: it comes back until acknowledged or past retention.
    #[serde(default)]
    pub target_type: DeadLetterTarget,
    /// Receives before a record becomes a dead letter (BUILT_IN); 6 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_receive_count: Option<i32>,
}

impl Default for DeadLetters {
    fn default() -> Self {
        Self {
            target_type: DeadLetterTarget::BuiltIn,
            max_receive_count: None,
        }
    }
}

/// Receives before a dead letter when the Queue does not say (Kinesis's default).
pub const DEFAULT_MAX_RECEIVE_COUNT: i32 = 6;

impl DeadLetters {
    /// The receives before a dead letter, or `None` when dead-letter handling is off.
    pub fn max_receive_count(&self) -> Option<i32> {
        match self.target_type {
            DeadLetterTarget::BuiltIn => {
                Some(self.max_receive_count.unwrap_or(DEFAULT_MAX_RECEIVE_COUNT))
            }
            DeadLetterTarget::None => None,
        }
    }
}

/// Dead-letter handling on or off.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeadLetterTarget {
    /// Dead letters after `maxReceiveCount` receives.
    #[default]
    BuiltIn,
    /// No dead letters.
    None,
}

/// Kinesis's queue states.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueState {
    /// Creation is under way.
    Creating,
    /// Deletion is under way.
    Deleting,
    /// Consumers can receive records.
    Active,
}

/// Observed state of a Queue, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The queue's ARN, as ReceiveQueueRecords takes it.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "queueARN")]
    pub queue_arn: Option<String>,
    /// The queue's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_status: Option<QueueState>,
}
