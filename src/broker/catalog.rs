//! The catalog: every stream's configuration and shard lineage, persisted atomically in the
//! data directory before any change to it is acknowledged.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::routing::{HashRange, even_hash_ranges};
use super::shard::ShardKey;
use super::shard::fs::FileSystem;

/// File name of the catalog in the data directory.
pub const CATALOG_FILE: &str = "catalog.json";

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a catalog.
    #[error("catalog is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// A stream's capacity mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    /// A fixed shard count that callers change.
    Provisioned,
    /// Shards that follow the write rate.
    OnDemand,
}

impl StreamMode {
    /// The mode's name in the API.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Provisioned => "PROVISIONED",
            Self::OnDemand => "ON_DEMAND",
        }
    }
}

/// One shard of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// The shard's index; its id is `shardId-<index>`.
    pub index: u32,
    /// Its hash key range.
    pub hash_range: HashRange,
    /// The shard it came from.
    pub parent: Option<u32>,
    /// The other parent of a merge.
    pub adjacent_parent: Option<u32>,
    /// When it was created, epoch milliseconds.
    pub created_ms: u64,
    /// Offset one past its last record once closed; open while `None`.
    pub closed_at_offset: Option<u64>,
    /// When it was closed, epoch milliseconds.
    pub closed_ms: Option<u64>,
    /// Closed longer ago than the retention period: no longer listed or readable.
    #[serde(default)]
    pub expired: bool,
    /// The pod (StatefulSet ordinal) whose volume holds the shard's log, when the stream is
    /// spread over a cluster of brokers; always 0 for a broker on its own.
    #[serde(default)]
    pub owner: u32,
    /// On the owner pod of a cluster: closed at pod 0's request while pod 0's catalog had
    /// this epoch, and not yet confirmed by a newer catalog from pod 0. A newer catalog that
    /// keeps the shard open (pod 0 did not complete the reshard) opens it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_epoch: Option<u64>,
    /// Pods that held the shard's log before it was moved (a closed shard drained off a
    /// leaving pod): each forgets its copy once it adopts a catalog that says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_from: Vec<u32>,
    /// On pod 0: the pod a move is copying this closed shard to, saved before the copy
    /// starts, so that a move asked again after pod 0 restarts goes to the pod that may hold
    /// the copy already instead of leaving that copy behind unnamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<u32>,
}

/// An enhanced fan-out consumer registered on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRecord {
    /// The consumer's name, unique within its stream.
    pub name: String,
    /// When it was registered, epoch milliseconds (its ARN carries the seconds).
    pub created_ms: u64,
    /// Set once DeregisterStreamConsumer was called.
    pub deleting_since_ms: Option<u64>,
    /// Tags given at registration or with TagResource.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The consumer's resource policy (an IAM policy document), if any.
    #[serde(default)]
    pub policy: Option<String>,
}

/// A queue on a stream (CreateQueue): its definition. Its delivery state lives in its own
/// file (see [`crate::broker::queue`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    /// The id its ARN ends with, generated at creation.
    pub id: String,
    /// The queue's name, unique in the broker.
    pub name: String,
    /// When it was created, epoch milliseconds.
    pub created_ms: u64,
    /// Set once DeleteQueue was called.
    pub deleting_since_ms: Option<u64>,
    /// TRIM_HORIZON, LATEST or AT_TIMESTAMP.
    pub start_type: String,
    /// The AT_TIMESTAMP time, epoch milliseconds.
    pub start_timestamp_ms: Option<u64>,
    /// How long a received record stays invisible.
    pub visibility_timeout_s: u32,
    /// Receives before a record becomes a dead letter; `None` when dead-letter handling is
    /// off (NONE).
    pub max_receive_count: Option<u32>,
    /// Tags given at creation or with TagResource.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The queue's resource policy, if any.
    #[serde(default)]
    pub policy: Option<String>,
}

/// A channel: where it delivers the stream's records and how. The configurations are kept
/// as DescribeChannel describes them (defaults filled in), so the answer is the caller's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The id in its description and in object keys, generated at creation.
    pub id: String,
    /// The channel's name, unique in the broker.
    pub name: String,
    /// When it was created, epoch milliseconds: records from then on are delivered.
    pub created_ms: u64,
    /// Set once DeleteChannel was called.
    pub deleting_since_ms: Option<u64>,
    /// The channel reports UPDATING until this time, after UpdateChannel.
    #[serde(default)]
    pub updating_until_ms: Option<u64>,
    /// Bumped by every UpdateChannel: the delivery worker restarts with the new settings.
    #[serde(default)]
    pub generation: u64,
    /// ServiceExecutionRoleARN, stored and described.
    pub role_arn: String,
    /// The source stream's RecordConfiguration.
    pub record_configuration: serde_json::Value,
    /// The S3DestinationConfiguration as described (null for a channel to a table).
    #[serde(default)]
    pub s3_destination: serde_json::Value,
    /// The S3TablesDestinationConfiguration as described, for a channel to an Iceberg table.
    #[serde(default)]
    pub tables_destination: Option<serde_json::Value>,
    /// EncryptionConfiguration, stored and described.
    #[serde(default)]
    pub encryption: Option<serde_json::Value>,
    /// LoggingConfiguration, stored and described.
    pub logging: serde_json::Value,
    /// Tags given at creation or with TagResource.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The channel's resource policy, if any.
    #[serde(default)]
    pub policy: Option<String>,
}

/// A stream's configuration and lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// The stream's name.
    pub name: String,
    /// Its internal key: distinct for every stream ever created in this data directory.
    pub key: u32,
    /// When it was created, epoch milliseconds.
    pub created_ms: u64,
    /// Retention in hours.
    pub retention_hours: u32,
    /// Largest record, partition key included, in KiB.
    pub max_record_size_kib: u32,
    /// Capacity mode.
    pub mode: StreamMode,
    /// Every shard, open or closed, by index.
    pub shards: Vec<ShardRecord>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Set once DeleteStream was called; the stream goes when this time passes.
    pub deleting_since_ms: Option<u64>,
    /// The stream reports UPDATING until this time, after a reshard or mode change.
    #[serde(default)]
    pub updating_until_ms: Option<u64>,
    /// When UpdateShardCount last ran, for Kinesis's ten-per-day limit.
    #[serde(default)]
    pub scaling_history_ms: Vec<u64>,
    /// Registered enhanced fan-out consumers.
    #[serde(default)]
    pub consumers: Vec<ConsumerRecord>,
    /// Shard-level metrics enabled with EnableEnhancedMonitoring (all are exported anyway).
    #[serde(default)]
    pub enhanced_metrics: Vec<String>,
    /// The key id given to StartStreamEncryption; see the README for what it means here.
    #[serde(default)]
    pub encryption_key: Option<String>,
    /// Warm throughput of an on-demand stream, MiB/s.
    #[serde(default)]
    pub warm_throughput_mibps: Option<u64>,
    /// AUTO or USER_PARTITION_KEY.
    #[serde(default)]
    pub record_distribution: Option<String>,
    /// The stream's resource policy (an IAM policy document), if any.
    #[serde(default)]
    pub policy: Option<String>,
    /// Queues on the stream.
    #[serde(default)]
    pub queues: Vec<QueueRecord>,
    /// Channels delivering the stream's records.
    #[serde(default)]
    pub channels: Vec<ChannelRecord>,
}

impl StreamRecord {
    /// A new stream with `shard_count` shards evenly over the hash key space.
    pub fn new(name: String, key: u32, shard_count: u32, now_ms: u64) -> Self {
        let shards = even_hash_ranges(shard_count)
            .into_iter()
            .zip(0..)
            .map(|(hash_range, index)| ShardRecord {
                index,
                hash_range,
                parent: None,
                adjacent_parent: None,
                created_ms: now_ms,
                closed_at_offset: None,
                closed_ms: None,
                expired: false,
                owner: 0,
                closing_epoch: None,
                moved_from: Vec::new(),
                moving_to: None,
            })
            .collect();
        Self {
            name,
            key,
            created_ms: now_ms,
            retention_hours: 24,
            max_record_size_kib: 1024,
            mode: StreamMode::Provisioned,
            shards,
            tags: BTreeMap::new(),
            deleting_since_ms: None,
            updating_until_ms: None,
            scaling_history_ms: Vec::new(),
            consumers: Vec::new(),
            enhanced_metrics: Vec::new(),
            encryption_key: None,
            warm_throughput_mibps: None,
            record_distribution: None,
            policy: None,
            queues: Vec::new(),
            channels: Vec::new(),
        }
    }

    /// The store keys of every shard.
    pub fn shard_keys(&self) -> impl Iterator<Item = ShardKey> + '_ {
        self.shards.iter().map(|s| ShardKey {
            stream_key: self.key,
            shard_index: s.index,
        })
    }

    /// Open shards.
    pub fn open_shard_count(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| s.closed_at_offset.is_none())
            .count()
    }

    /// Retention in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        u64::from(self.retention_hours) * 3_600_000
    }
}

/// Every stream of a broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// The key the next stream gets.
    pub next_key: u32,
    /// Streams by name.
    pub streams: BTreeMap<String, StreamRecord>,
    /// The account's minimum throughput billing commitment: status and since when.
    #[serde(default)]
    pub billing_commitment: Option<(String, u64)>,
    /// How many times the catalog was saved: the placement map's epoch, by which the pods of
    /// a cluster tell a newer catalog from an older one.
    #[serde(default)]
    pub epoch: u64,
    /// On a cluster: how many pods (ordinals `0..n`) new shards may be placed on, as the
    /// operator last set it; every pod the cluster lists when never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_pods: Option<u32>,
}

impl Catalog {
    /// Loads the catalog of `dir`, or an empty one.
    pub fn load(dir: &Path) -> Result<Self, CatalogError> {
        match std::fs::read(dir.join(CATALOG_FILE)) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the catalog atomically and durably.
    pub fn save(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), CatalogError> {
        let bytes = serde_json::to_vec_pretty(self)?;
        fs.write_atomic(&dir.join(CATALOG_FILE), &bytes)?;
        Ok(())
    }

    /// Total open shards over all streams.
    pub fn open_shards(&self) -> usize {
        self.streams
            .values()
            .map(StreamRecord::open_shard_count)
            .sum()
    }
}
