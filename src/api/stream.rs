//! The `Stream` custom resource: a Kinesis data stream served by a StatefulSet of brokers.
//!
//! Defaults follow Kinesis (24 h retention, 1 MiB records, per-shard quotas); ranges and
//! cross-field rules live in the schema so `kubectl apply` refuses a bad manifest.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{SecretKeyReference, SecretReference, conditions_schema, string_map_schema};

/// Most open shards one stream may declare.
pub const MAX_SHARDS: i32 = 10_000;
/// Shortest retention Kinesis allows, in hours.
pub const MIN_RETENTION_HOURS: i32 = 24;
/// Longest retention Kinesis allows, in hours (one year).
pub const MAX_RETENTION_HOURS: i32 = 8760;
/// Default largest record, partition key included, in KiB (Kinesis's 1 MiB).
pub const DEFAULT_MAX_RECORD_SIZE_KIB: i32 = 1024;
/// Largest record size a stream may be configured for, in KiB (Kinesis's 10 MiB).
pub const MAX_MAX_RECORD_SIZE_KIB: i32 = 10_240;
/// Longest Stream name: the StatefulSet's pods carry a revision-hash label built from it.
pub const MAX_STREAM_NAME_LENGTH: usize = 52;

/// Desired state of a Kinesis data stream and the brokers that serve it.
// kube's printcolumn(...) repeats keys such as `type_` by design, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brook.dev",
    version = "v1alpha1",
    kind = "Stream",
    namespaced,
    status = "StreamStatus",
    shortname = "bstr",
    category = "brook",
    derive = "PartialEq",
    doc = "A Kinesis data stream served by Brook brokers",
    scale(
        spec_replicas_path = ".spec.shards",
        status_replicas_path = ".status.openShards",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.streamMode", priority = 1),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.shards"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.autoscaling.desiredShards", description = "open shards the autoscaler wants"),
    printcolumn(name = "Open", type_ = "integer", json_path = ".status.openShards"),
    printcolumn(name = "Retention", type_ = "integer", json_path = ".spec.retentionHours", description = "retention in hours"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 52").message("a Stream name must be at most 52 characters"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.streamMode) && self.streamMode == 'ON_DEMAND' && has(self.autoscaling) && self.autoscaling.enabled)").message("an ON_DEMAND stream scales itself: autoscaling applies to PROVISIONED streams"))]
pub struct StreamSpec {
    /// Open shards; with autoscaling, or in ON_DEMAND mode, the count it starts from.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 10000))]
    pub shards: i32,
    /// How long records stay readable, in hours (24 to 8760).
    #[serde(default = "default_retention_hours")]
    #[schemars(range(min = 24, max = 8760))]
    pub retention_hours: i32,
    /// Largest record, partition key included, in KiB (1024 to 10240).
    #[serde(default = "default_max_record_size_kib", rename = "maxRecordSizeKiB")]
    #[schemars(range(min = 1024, max = 10240))]
    pub max_record_size_kib: i32,
    /// Capacity mode, as Kinesis's StreamModeDetails: PROVISIONED (the shard count is
    /// `shards`, or the autoscaler's) or ON_DEMAND (the brokers add and remove shards from
    /// the write demand; queues need it).
    #[serde(default)]
    pub stream_mode: StreamMode,
    /// Per-shard quotas; Kinesis's by default.
    #[serde(default)]
    pub limits: ShardLimits,
    /// Shard autoscaling from Prometheus throughput metrics; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// The broker pods that serve the stream.
    #[serde(default)]
    pub brokers: Brokers,
    /// When a write is acknowledged.
    #[serde(default)]
    pub durability: Durability,
    /// SigV4 authentication of clients; the stream is open when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// What happens to stored data when the Stream is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// TLS on the brokers' Kinesis port and between the pods; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<StreamTls>,
    /// Kinesis channels (CreateChannel) on this stream: where they deliver. The brokers run
    /// no channels when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<StreamChannels>,
}

fn default_shards() -> i32 {
    1
}

fn default_retention_hours() -> i32 {
    MIN_RETENTION_HOURS
}

fn default_max_record_size_kib() -> i32 {
    DEFAULT_MAX_RECORD_SIZE_KIB
}

/// Per-shard throughput quotas, enforced with token buckets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardLimits {
    /// Bytes per second one shard accepts (Kinesis: 1 MiB/s).
    #[serde(default = "default_write_bytes")]
    #[schemars(range(min = 1))]
    pub write_bytes_per_second: i64,
    /// Records per second one shard accepts (Kinesis: 1000/s).
    #[serde(default = "default_write_records")]
    #[schemars(range(min = 1))]
    pub write_records_per_second: i64,
    /// Bytes per second one shard serves through GetRecords (Kinesis: 2 MiB/s).
    #[serde(default = "default_read_bytes")]
    #[schemars(range(min = 1))]
    pub read_bytes_per_second: i64,
    /// GetRecords calls per second one shard serves (Kinesis: 5/s).
    #[serde(default = "default_read_calls")]
    #[schemars(range(min = 1))]
    pub read_calls_per_second: i64,
    /// Refuse requests beyond the quotas; when false they are only measured.
    #[serde(default = "default_true")]
    pub enforce: bool,
}

impl Default for ShardLimits {
    fn default() -> Self {
        Self {
            write_bytes_per_second: default_write_bytes(),
            write_records_per_second: default_write_records(),
            read_bytes_per_second: default_read_bytes(),
            read_calls_per_second: default_read_calls(),
            enforce: true,
        }
    }
}

fn default_write_bytes() -> i64 {
    1024 * 1024
}
fn default_write_records() -> i64 {
    1000
}
fn default_read_bytes() -> i64 {
    2 * 1024 * 1024
}
fn default_read_calls() -> i64 {
    5
}
fn default_true() -> bool {
    true
}

/// Shard autoscaling from the brokers' throughput as Prometheus records it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minShards <= self.maxShards").message("minShards must not exceed maxShards"))]
#[x_kube(validation = Rule::new("!self.enabled || has(self.prometheus)").message("autoscaling needs a prometheus source when enabled"))]
pub struct Autoscaling {
    /// Whether the operator changes the shard count on its own.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Fewest open shards.
    #[serde(default = "default_min_shards")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_shards: i32,
    /// Most open shards.
    #[serde(default = "default_max_shards")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_shards: i32,
    /// Write utilization of the quotas the autoscaler steers towards, in percent.
    #[serde(default = "default_target_utilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization_percent: i32,
    /// How long demand must stay high before shards are added, in seconds (0: the latest
    /// sample decides; raise it to ride out bursts shorter than it).
    #[serde(default = "default_scale_up_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,
    /// How long demand must stay low before shards are removed, in seconds.
    #[serde(default = "default_scale_down_stabilization")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: i32,
    /// Seconds between evaluations.
    #[serde(default = "default_period_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i32,
    /// Where the throughput metrics are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
}

fn default_period_seconds() -> i32 {
    30
}

fn default_min_shards() -> i32 {
    1
}
fn default_max_shards() -> i32 {
    64
}
fn default_target_utilization() -> i32 {
    70
}
fn default_scale_up_stabilization() -> i32 {
    0
}
fn default_scale_down_stabilization() -> i32 {
    300
}

/// A Prometheus server that scrapes the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.bearerTokenSecretRef) && has(self.basicAuthSecretRef))").message("use bearerTokenSecretRef or basicAuthSecretRef, not both"))]
pub struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API, such as `http://prometheus:9090`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub url: String,
    /// Window over which throughput is averaged, in seconds.
    #[serde(default = "default_window_seconds")]
    #[schemars(range(min = 5, max = 3600))]
    pub window_seconds: i32,
    /// Bound on each query, in seconds.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 120))]
    pub timeout_seconds: i32,
    /// A Secret key holding a bearer token sent with every query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyReference>,
    /// A Secret with `username` and `password` keys for basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret_ref: Option<SecretReference>,
    /// A Secret key holding PEM certificates to trust for an `https://` URL instead of the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyReference>,
    /// PromQL that replaces the default queries, for a Prometheus that labels the brokers'
    /// series otherwise. Placeholders: `$namespace`, `$stream`, `$window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<PrometheusQueries>,
}

/// Replacements of the autoscaler's default queries; each one absent keeps its default.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusQueries {
    /// Bytes per second written to the stream, one series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub incoming_bytes: Option<String>,
    /// Records per second written to the stream, one series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub incoming_records: Option<String>,
    /// Writes per second refused by the stream's quotas, one series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub throttled: Option<String>,
    /// Bytes per second written, one series per `shard` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub shard_incoming_bytes: Option<String>,
    /// Records per second written, one series per `shard` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub shard_incoming_records: Option<String>,
    /// Writes per second refused, one series per `shard` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub shard_throttled: Option<String>,
}

fn default_timeout_seconds() -> i32 {
    10
}

fn default_window_seconds() -> i32 {
    60
}

/// The broker pods: their number, image, resources and volumes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Brokers {
    /// Broker pods: the stream's shards are spread over them and any pod answers any request.
    /// Fewer pods take effect once no readable shard is left on the leaving ones (their open
    /// shards are moved off at once, their closed ones wait out retention or are drained, as
    /// `shrinkPolicy` says).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// What fewer pods do with the leaving pods' closed shards that are still readable:
    /// `WaitForRetention` (the pods leave once those records expire) or `Drain` (the shards
    /// are copied to the pods that stay, keeping their sequence numbers and arrival times, and
    /// the pods leave once every copy is done).
    #[serde(default, skip_serializing_if = "ShrinkPolicy::is_default")]
    pub shrink_policy: ShrinkPolicy,
    /// Container image of the broker; the operator's own version when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// When the kubelet pulls the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// CPU and memory of each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The volume each broker pod keeps its shards on.
    #[serde(default)]
    pub storage: Storage,
    /// Nodes the broker pods may run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "string_map_schema")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the broker pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl Default for Brokers {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            shrink_policy: ShrinkPolicy::default(),
            image: None,
            image_pull_policy: None,
            resources: None,
            storage: Storage::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }
}

fn default_replicas() -> i32 {
    3
}

/// What fewer broker pods do with the leaving pods' readable closed shards.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ShrinkPolicy {
    /// Keep the leaving pods until their closed shards are past retention.
    #[default]
    WaitForRetention,
    /// Copy the closed shards to the pods that stay, then let the pods go.
    Drain,
}

impl ShrinkPolicy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// When the kubelet pulls a container image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node lacks the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// The PersistentVolumeClaim template of each broker pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of each broker's volume, as a Kubernetes quantity such as `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// StorageClass of the volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> String {
    "10Gi".to_owned()
}

/// When a write is acknowledged to the producer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Durability {
    /// After the write is on disk (group commit: one fsync covers many writes).
    #[default]
    Fsync,
    /// After the write reaches the operating system; a node crash may lose the last writes.
    Async,
}

/// SigV4 authentication of the stream's clients.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// Secret whose keys are access key ids and whose values are their secret keys.
    pub credentials_secret_ref: SecretReference,
}

/// The brokers' certificate, as cert-manager writes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTls {
    /// A Secret with `tls.crt` and `tls.key` — a certificate for `<stream>.<namespace>.svc`
    /// and `*.<stream>-brokers.<namespace>.svc` — and `ca.crt`, the CA that signed it, which
    /// the operator, the pods and DeliveryStream workers trust. Reloaded by the brokers when
    /// it changes.
    pub secret_ref: SecretReference,
}

/// The storage a stream's channels deliver to (the bucket each channel names is on it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamChannels {
    /// Endpoint URL of the S3-compatible server (also its S3 Tables and Glue Schema Registry
    /// APIs, for channels to Iceberg tables); AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub s3_endpoint: Option<String>,
    /// Secret with the access key pair the brokers deliver with; the pods' ambient
    /// credentials when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<super::common::AccessKeySecretReference>,
}

/// A stream's capacity mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamMode {
    /// The shard count is declared (or the autoscaler's).
    #[default]
    Provisioned,
    /// The brokers scale the shards from the write demand.
    OnDemand,
}

impl StreamMode {
    /// The Kinesis API's name of the mode.
    pub fn as_api(self) -> &'static str {
        match self {
            Self::Provisioned => "PROVISIONED",
            Self::OnDemand => "ON_DEMAND",
        }
    }
}

/// What happens to a stream's stored data when its Stream is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the stream and the brokers' volumes.
    #[default]
    Delete,
    /// Delete the stream's brokers but keep their PersistentVolumeClaims.
    Retain,
}

/// Observed state of a Stream, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Open shards as the brokers report them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_shards: Option<i32>,
    /// Label selector of the broker pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The stream's ARN, as Kinesis clients see it.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "streamARN")]
    pub stream_arn: Option<String>,
    /// Kinesis endpoint URL of the client Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The autoscaler's latest decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// The autoscaler's latest decision and why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// Open shards the autoscaler wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_shards: Option<i32>,
    /// Write utilization of the quotas over the window, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<i32>,
    /// When the shard count last changed because of the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Why the autoscaler wants what it wants, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the metrics or the brokers could not be used at the last evaluation; absent when
    /// they could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
