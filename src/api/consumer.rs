//! The `Consumer` custom resource: an enhanced fan-out consumer registered on a stream.
//!
//! The stream a consumer reads is fixed for its lifetime, as in Kinesis, where a consumer's
//! ARN embeds its stream's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;

/// Desired state of an enhanced fan-out consumer.
// kube's printcolumn(...) repeats keys such as `type_` by design, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brook.dev",
    version = "v1alpha1",
    kind = "Consumer",
    namespaced,
    status = "ConsumerStatus",
    shortname = "bcon",
    category = "brook",
    derive = "PartialEq",
    doc = "An enhanced fan-out consumer registered on a Brook stream",
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.streamName"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.consumerStatus"),
    printcolumn(
        name = "ARN",
        type_ = "string",
        json_path = ".status.consumerARN",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.consumerName) ? self.consumerName : '') == (has(oldSelf.consumerName) ? oldSelf.consumerName : '')").message("consumerName is immutable; create a new Consumer instead"))]
pub struct ConsumerSpec {
    /// Name of the Stream, in the same namespace, that the consumer reads.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("streamName is immutable; create a new Consumer instead"))]
    pub stream_name: String,
    /// Consumer name registered in the stream; the resource's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub consumer_name: Option<String>,
}

/// Kinesis's consumer states.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumerState {
    /// Registration is under way.
    Creating,
    /// Deregistration is under way.
    Deleting,
    /// The consumer can subscribe to shards.
    Active,
}

/// Observed state of a Consumer, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The consumer's ARN, as SubscribeToShard takes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "consumerARN"
    )]
    pub consumer_arn: Option<String>,
    /// The consumer's state in its stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_status: Option<ConsumerState>,
    /// When the consumer was registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_creation_timestamp: Option<Time>,
}
