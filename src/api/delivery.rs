//! The `DeliveryStream` custom resource: Firehose-style delivery of a stream's records, or of
//! records put directly, to S3-compatible storage or an HTTP endpoint.
//!
//! Exactly one source and exactly one destination; buffering defaults are Firehose's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AccessKeySecretReference, SecretKeyReference, conditions_schema, string_map_schema,
};

/// Desired state of a delivery stream.
// kube's printcolumn(...) repeats keys such as `type_` by design, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brook.dev",
    version = "v1alpha1",
    kind = "DeliveryStream",
    namespaced,
    status = "DeliveryStreamStatus",
    shortname = "bds",
    category = "brook",
    derive = "PartialEq",
    doc = "Buffers records from a stream or from direct puts and delivers them to S3 or HTTP",
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.source.stream.name"
    ),
    printcolumn(
        name = "Bucket",
        type_ = "string",
        json_path = ".spec.destination.s3.bucket"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".spec.destination.http.url",
        priority = 1
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStreamSpec {
    /// Where records come from.
    pub source: DeliverySource,
    /// How much is gathered before one delivery.
    #[serde(default)]
    pub buffering: BufferingHints,
    /// What is done to records before delivery.
    #[serde(default)]
    pub processing: Processing,
    /// Where records go.
    pub destination: Destination,
    /// The delivery worker's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Worker>,
}

/// The source of a delivery stream: exactly one of `stream` and `directPut`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.stream) != has(self.directPut)").message("set exactly one of stream and directPut"))]
pub struct DeliverySource {
    /// Read the records of a Stream in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSource>,
    /// Accept records through the Firehose PutRecord and PutRecordBatch API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_put: Option<DirectPut>,
}

/// A Stream read as the source of a delivery stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.startingPosition != 'AT_TIMESTAMP' || has(self.timestamp)").message("startingPosition AT_TIMESTAMP needs a timestamp"))]
pub struct StreamSource {
    /// Name of the Stream, in the same namespace.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub name: String,
    /// Where reading starts the first time.
    #[serde(default)]
    pub starting_position: StartingPosition,
    /// With `AT_TIMESTAMP`: the arrival time reading starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Time>,
}

/// Where a delivery stream starts reading its source stream.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPosition {
    /// The oldest record retained.
    TrimHorizon,
    /// Records arriving after the delivery stream starts.
    #[default]
    Latest,
    /// Records that arrived at or after `timestamp`.
    AtTimestamp,
}

/// Direct puts through the Firehose API; no settings yet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct DirectPut {}

/// Firehose buffering hints: deliver when either is reached.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BufferingHints {
    /// Buffer size in MiB (1 to 128).
    #[serde(default = "default_size_mib", rename = "sizeMiB")]
    #[schemars(range(min = 1, max = 128))]
    pub size_mib: i32,
    /// Buffer interval in seconds (0 to 900).
    #[serde(default = "default_interval_seconds")]
    #[schemars(range(min = 0, max = 900))]
    pub interval_seconds: i32,
}

impl Default for BufferingHints {
    fn default() -> Self {
        Self {
            size_mib: default_size_mib(),
            interval_seconds: default_interval_seconds(),
        }
    }
}

fn default_size_mib() -> i32 {
    5
}
fn default_interval_seconds() -> i32 {
    300
}

/// Record processing before delivery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Processing {
    /// Split KPL-aggregated records into the user records they carry.
    #[serde(default)]
    pub deaggregate: bool,
    /// Append a newline after each record, so delivered objects are line-delimited.
    #[serde(default)]
    pub append_newline: bool,
    /// What every record must be, or it goes to the error output (a channel's record format;
    /// not part of the DeliveryStream resource).
    #[serde(skip)]
    #[schemars(skip)]
    pub require: RecordShape,
}

/// What a record must be to be delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordShape {
    /// Any bytes.
    #[default]
    Any,
    /// One JSON value.
    Json,
    /// UTF-8 text.
    Utf8,
}

/// The destination of a delivery stream: exactly one of `s3` and `http`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.s3) != has(self.http)").message("set exactly one of s3 and http"))]
pub struct Destination {
    /// Deliver objects to an S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
    /// Deliver batches to an HTTP endpoint, as Firehose's HTTP endpoint destination does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpDestination>,
}

/// An S3-compatible bucket that receives delivered objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Endpoint URL of an S3-compatible server; AWS S3 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub endpoint: Option<String>,
    /// Bucket name.
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,
    /// Region the bucket lives in.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Key prefix of delivered objects; `!{timestamp:yyyy/MM/dd/HH}` expands to the delivery time.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub prefix: String,
    /// Key prefix of records that could not be processed; `errors/` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub error_output_prefix: Option<String>,
    /// Compression of delivered objects.
    #[serde(default)]
    pub compression: Compression,
    /// Address buckets by path (`endpoint/bucket/key`); true by default when `endpoint` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// Secret with the access key pair; the pod's ambient credentials when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<AccessKeySecretReference>,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Compression of objects delivered to S3, named as in Firehose.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Compression {
    /// No compression.
    #[default]
    #[serde(rename = "UNCOMPRESSED")]
    Uncompressed,
    /// gzip.
    #[serde(rename = "GZIP")]
    Gzip,
    /// zip.
    #[serde(rename = "ZIP")]
    Zip,
    /// Snappy framing format.
    #[serde(rename = "Snappy")]
    Snappy,
    /// Hadoop-compatible Snappy.
    #[serde(rename = "HADOOP_SNAPPY")]
    HadoopSnappy,
    /// Zstandard: what a Kinesis channel offers besides gzip (not a Firehose compression,
    /// so not in the DeliveryStream resource's schema).
    #[serde(rename = "ZSTD")]
    #[schemars(skip)]
    Zstd,
}

/// An HTTP endpoint that receives batches in Firehose's HTTP endpoint delivery format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpDestination {
    /// URL the batches are POSTed to.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 1000))]
    pub url: String,
    /// Secret key holding the access key sent as `X-Amz-Firehose-Access-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_secret_ref: Option<SecretKeyReference>,
    /// Encoding of request bodies.
    #[serde(default)]
    pub content_encoding: ContentEncoding,
    /// How long a failed batch is retried before it goes to the error output, in seconds.
    #[serde(default = "default_retry_duration")]
    #[schemars(range(min = 0, max = 7200))]
    pub retry_duration_seconds: i32,
    /// Attributes sent with every request, as Firehose's common attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "string_map_schema")]
    pub common_attributes: BTreeMap<String, String>,
    /// Bucket that receives, under its error output prefix, the batches the endpoint did not
    /// accept within the retry duration or refused as too large (413); without it they are
    /// kept in the worker's data folder under `failed/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_backup: Option<S3Destination>,
}

fn default_retry_duration() -> i32 {
    300
}

/// Encoding of HTTP request bodies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContentEncoding {
    /// Plain JSON.
    #[default]
    None,
    /// gzip-compressed JSON.
    Gzip,
}

/// The delivery worker's pod settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    /// Container image; the operator's own version when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// CPU and memory of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Size of the worker's volume (progress and the direct-put journal); 1Gi when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// StorageClass of the worker's volume; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

/// Observed state of a DeliveryStream, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStreamStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Firehose endpoint URL of a direct-put delivery stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// When the last batch was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_time: Option<Time>,
    /// Records delivered since the worker started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_records: Option<i64>,
    /// Bytes delivered (after processing, before compression) since the worker started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_bytes: Option<i64>,
    /// Records sent to the error output since the worker started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_records: Option<i64>,
    /// Age in seconds of the oldest record not yet delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_freshness_seconds: Option<i64>,
}
