//! The broker's state: the catalog (control plane, serialized and persisted), the live view
//! of every stream the data plane routes with, the store, and the iterator codec.
//!
//! The data plane only reads [`LiveStream`] snapshots; every control-plane change builds a
//! new snapshot from the persisted catalog and swaps it in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::auth::Credentials;
use super::catalog::{Catalog, StreamRecord};
use super::iterator::IteratorCodec;
use super::limits::{QuotaSettings, ShardQuota};
use super::metrics::{Metrics, ShardMetrics};
use super::protocol::{ApiError, ErrorKind};
use super::routing::{HashRange, shard_id, stream_arn};
use super::shard::fs::FileSystem;
use super::shard::{Clock, ShardKey, ShardLog, Store};

/// Settings of a broker that the API layer needs.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs and messages.
    pub account: String,
    /// Default per-shard quotas.
    pub quotas: QuotaSettings,
    /// How long a stream stays CREATING or DELETING.
    pub transition_ms: u64,
    /// Most open shards over all streams.
    pub shard_limit: u32,
    /// Quota overrides by stream name.
    pub stream_quotas: HashMap<String, super::limits::QuotaOverride>,
    /// How long a SubscribeToShard call lasts (Kinesis: five minutes).
    pub subscription_lifetime: std::time::Duration,
    /// The Kubernetes resource that owns this broker's configuration (`Stream shop/orders`);
    /// control-plane calls then need the operator's admin key.
    pub managed_by: Option<String>,
    /// For tests of failure paths: stop the process (as a crash would) between closing a
    /// reshard's parents and saving the reshard.
    pub crash_before_reshard_save: bool,
    /// For tests of failure paths: stop pod 0 once a moved shard's copy is complete, before
    /// its new owner is saved.
    pub crash_before_move_named: bool,
    /// The shortest DataFreshnessInSeconds a channel may have (Kinesis: 300).
    pub channel_min_freshness_s: u32,
}

/// One shard as the data plane uses it.
pub struct LiveShard {
    /// Its store key.
    pub key: ShardKey,
    /// Its Kinesis id.
    pub id: String,
    /// Its hash keys.
    pub range: HashRange,
    /// Parent shard index.
    pub parent: Option<u32>,
    /// Other parent of a merge.
    pub adjacent_parent: Option<u32>,
    /// Offset one past its last record once closed.
    pub closed_at_offset: Option<u64>,
    /// Closed longer ago than the retention period: hidden and unreadable.
    pub expired: bool,
    /// The pod whose volume holds its log (0 for a broker on its own).
    pub owner: u32,
    /// Its log.
    pub log: Arc<ShardLog>,
    /// Its quotas.
    pub quota: Arc<ShardQuota>,
    /// Its metrics.
    pub metrics: ShardMetrics,
}

/// A stream as the data plane uses it.
pub struct LiveStream {
    /// The persisted configuration this snapshot was built from.
    pub record: StreamRecord,
    /// The stream's ARN.
    pub arn: String,
    /// Every shard by index.
    pub shards: Vec<LiveShard>,
    /// Positions in `shards` of the open shards, by ascending hash range.
    open: Vec<usize>,
    /// The next open shard a record goes to under the AUTO distribution strategy.
    auto_cursor: std::sync::atomic::AtomicUsize,
}

impl LiveStream {
    /// Whether new records are spread evenly over the open shards, their partition keys and
    /// explicit hash keys ignored (the AUTO record distribution strategy).
    pub fn distributes_automatically(&self) -> bool {
        self.record.record_distribution.as_deref() == Some("AUTO")
    }

    /// Under AUTO, the open shard the next record goes to: each open shard owned by `owner`
    /// (every open shard when `None`) in turn.
    pub fn next_auto_shard(&self, owner: Option<u32>) -> Option<&LiveShard> {
        let candidates = || {
            self.open
                .iter()
                .map(|&i| &self.shards[i])
                .filter(move |s| owner.is_none_or(|o| s.owner == o))
        };
        let count = candidates().count();
        if count == 0 {
            return None;
        }
        let turn = self
            .auto_cursor
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        candidates().nth(turn % count)
    }

    /// The owners of the open shards, each once, lowest first.
    pub fn open_shard_owners(&self) -> Vec<u32> {
        let mut owners: Vec<u32> = self.open.iter().map(|&i| self.shards[i].owner).collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// The open shard whose hash range holds `hash`.
    pub fn route(&self, hash: u128) -> Option<&LiveShard> {
        let at = self
            .open
            .partition_point(|&i| self.shards[i].range.end < hash);
        self.open
            .get(at)
            .map(|&i| &self.shards[i])
            .filter(|s| s.range.contains(hash))
    }

    /// The shard with Kinesis id `id`.
    pub fn shard(&self, id: &str) -> Option<&LiveShard> {
        let index = super::routing::parse_shard_id(id)?;
        self.shards
            .get(index as usize)
            .filter(|s| s.key.shard_index == index && !s.expired)
    }

    /// CREATING, ACTIVE or DELETING at `now_ms`.
    pub fn status(&self, now_ms: u64, transition_ms: u64) -> &'static str {
        if self.record.deleting_since_ms.is_some() {
            "DELETING"
        } else if now_ms < self.record.created_ms + transition_ms {
            "CREATING"
        } else if self
            .record
            .updating_until_ms
            .is_some_and(|until| now_ms < until)
        {
            "UPDATING"
        } else {
            "ACTIVE"
        }
    }
}

/// Everything a broker holds.
pub struct Broker {
    /// API settings.
    pub settings: ApiSettings,
    /// The store.
    pub store: Store,
    /// The metrics.
    pub metrics: Metrics,
    /// Signs shard iterators.
    pub iterators: IteratorCodec,
    /// The clock.
    pub clock: Clock,
    /// SubscribeToShard calls in progress.
    pub subscriptions: super::ops::subscribe::Subscriptions,
    /// The control plane: one change at a time, persisted before it is acknowledged.
    pub catalog: tokio::sync::Mutex<Catalog>,
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    live: RwLock<HashMap<String, Arc<LiveStream>>>,
    quotas: RwLock<HashMap<ShardKey, Arc<ShardQuota>>>,
    credentials: RwLock<Option<Arc<Credentials>>>,
    admin_credentials: RwLock<Option<Arc<Credentials>>>,
    /// The key the broker's own in-process delivery workers sign their reads with.
    pub internal_credentials: std::sync::OnceLock<Arc<Credentials>>,
    /// The Firehose API of a standalone broker, once it runs.
    pub firehose: std::sync::OnceLock<Arc<crate::delivery::control::Firehose>>,
    policies_present: std::sync::atomic::AtomicBool,
    /// The epoch of the catalog last saved (see [`Catalog::epoch`]).
    catalog_epoch: std::sync::atomic::AtomicU64,
    /// This pod's cluster, when the broker is one of a stream's pods.
    pub cluster: std::sync::OnceLock<Arc<super::cluster::Cluster>>,
    /// The delivery state of the streams' queues.
    pub queues: super::queue::Queues,
}

impl Broker {
    /// A broker over an opened store and its catalog.
    pub fn new(
        settings: ApiSettings,
        store: Store,
        catalog: Catalog,
        fs: Arc<dyn FileSystem>,
        iterators: IteratorCodec,
    ) -> Self {
        let clock = store.clock().clone();
        let dir = store.dir().to_path_buf();
        let metrics = Metrics::new();
        metrics.register(store.stats().collectors());
        let queues = super::queue::Queues::new(dir.join("queues"), store.syncs(), fs.clone());
        let broker = Self {
            settings,
            store,
            metrics,
            iterators,
            clock,
            subscriptions: Default::default(),
            catalog: tokio::sync::Mutex::new(Catalog::default()),
            fs,
            dir,
            live: RwLock::new(HashMap::new()),
            quotas: RwLock::new(HashMap::new()),
            credentials: RwLock::new(None),
            admin_credentials: RwLock::new(None),
            internal_credentials: std::sync::OnceLock::new(),
            firehose: std::sync::OnceLock::new(),
            policies_present: std::sync::atomic::AtomicBool::new(false),
            catalog_epoch: std::sync::atomic::AtomicU64::new(catalog.epoch),
            cluster: std::sync::OnceLock::new(),
            queues,
        };
        for record in catalog.streams.values() {
            broker.publish(record);
        }
        let queues: std::collections::HashSet<String> = catalog
            .streams
            .values()
            .flat_map(|s| s.queues.iter().map(|q| q.id.clone()))
            .collect();
        broker.queues.remove_unknown(&queues);
        *broker
            .catalog
            .try_lock()
            .expect("no one else holds a new broker's catalog") = catalog;
        broker
    }

    /// The SigV4 credentials requests must be signed with; `None` leaves the API open.
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.credentials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the credentials.
    pub fn set_credentials(&self, credentials: Option<Credentials>) {
        *self
            .credentials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = credentials.map(Arc::new);
    }

    /// The operator's admin keys of a managed broker.
    pub fn admin_credentials(&self) -> Option<Arc<Credentials>> {
        self.admin_credentials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the admin keys.
    pub fn set_admin_credentials(&self, credentials: Option<Credentials>) {
        *self
            .admin_credentials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = credentials.map(Arc::new);
    }

    /// The live view of a stream.
    pub fn stream(&self, name: &str) -> Option<Arc<LiveStream>> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Whether any stream, consumer or queue has a resource policy.
    pub fn has_policies(&self) -> bool {
        self.policies_present
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Recomputes [`Broker::has_policies`] after the live view changed, so the request path
    /// reads one flag instead of walking every stream.
    fn refresh_policy_flag(&self, live: &HashMap<String, Arc<LiveStream>>) {
        let present = live.values().any(|s| {
            s.record.policy.is_some()
                || s.record.consumers.iter().any(|c| c.policy.is_some())
                || s.record.queues.iter().any(|q| q.policy.is_some())
                || s.record.channels.iter().any(|c| c.policy.is_some())
        });
        self.policies_present
            .store(present, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every live stream, by name.
    pub fn streams(&self) -> Vec<Arc<LiveStream>> {
        let mut streams: Vec<_> = self
            .live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        streams.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        streams
    }

    /// Resolves a stream named by name or ARN (both must agree when both are given).
    pub fn resolve(
        &self,
        name: Option<&str>,
        arn: Option<&str>,
    ) -> Result<Arc<LiveStream>, ApiError> {
        let from_arn = match arn {
            Some(arn) => Some(super::routing::stream_name_from_arn(arn).ok_or_else(|| {
                ApiError::constraint(arn, "streamARN", "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+")
            })?),
            None => None,
        };
        let name = match (name, from_arn) {
            (Some(name), Some(arn_name)) if name != arn_name => {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "StreamName {name} does not match the stream in StreamARN {}",
                        arn.unwrap_or("")
                    ),
                ));
            }
            (Some(name), _) => name,
            (None, Some(arn_name)) => arn_name,
            (None, None) => {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "Either StreamName or StreamARN should be provided.",
                ));
            }
        };
        super::ops::validate_stream_name(name)?;
        self.stream(name)
            .ok_or_else(|| ApiError::stream_not_found(name, &self.settings.account))
    }

    /// Builds and swaps in the live view of `record`.
    pub fn publish(&self, record: &StreamRecord) {
        let now = self.clock.now_ms();
        let mut shards = Vec::with_capacity(record.shards.len());
        for shard in &record.shards {
            let key = ShardKey {
                stream_key: record.key,
                shard_index: shard.index,
            };
            let Some(log) = self.store.log(key) else {
                tracing::error!(stream = %record.name, shard = shard.index, "shard missing from the store");
                continue;
            };
            let quota = self
                .quotas
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(key)
                .or_insert_with(|| {
                    let settings = self
                        .settings
                        .stream_quotas
                        .get(&record.name)
                        .map_or(self.settings.quotas, |o| o.apply(self.settings.quotas));
                    Arc::new(ShardQuota::new(settings, now))
                })
                .clone();
            let id = shard_id(shard.index);
            shards.push(LiveShard {
                metrics: self.metrics.shard(&record.name, &id),
                key,
                id,
                range: shard.hash_range,
                parent: shard.parent,
                adjacent_parent: shard.adjacent_parent,
                closed_at_offset: shard.closed_at_offset,
                expired: shard.expired,
                owner: shard.owner,
                log,
                quota,
            });
        }
        let mut open: Vec<usize> = (0..shards.len())
            .filter(|&i| shards[i].closed_at_offset.is_none())
            .collect();
        open.sort_by_key(|&i| shards[i].range.start);
        let live = LiveStream {
            arn: stream_arn(&self.settings.region, &self.settings.account, &record.name),
            record: record.clone(),
            shards,
            open,
            auto_cursor: std::sync::atomic::AtomicUsize::new(0),
        };
        let mut streams = self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        streams.insert(record.name.clone(), Arc::new(live));
        self.refresh_policy_flag(&streams);
    }

    /// Removes a stream from the live view and its series from the metrics.
    pub fn unpublish(&self, record: &StreamRecord) {
        {
            let mut streams = self
                .live
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            streams.remove(&record.name);
            self.refresh_policy_flag(&streams);
        }
        let mut quotas = self
            .quotas
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.metrics.forget_stream(&record.name);
        for key in record.shard_keys() {
            quotas.remove(&key);
            self.metrics
                .forget_shard(&record.name, &shard_id(key.shard_index));
        }
    }

    /// Persists a changed catalog under the next epoch, which it then carries.
    pub fn save(&self, catalog: &mut Catalog) -> Result<(), ApiError> {
        catalog.epoch = self.catalog_epoch() + 1;
        self.save_as_is(catalog)
    }

    /// Persists `catalog` with the epoch it carries (a replica adopted from pod 0).
    pub fn save_as_is(&self, catalog: &Catalog) -> Result<(), ApiError> {
        catalog.save(self.fs.as_ref(), &self.dir).map_err(|e| {
            tracing::error!(error = %e, "could not persist the catalog");
            ApiError::new(
                ErrorKind::InternalFailure,
                "The broker could not persist the change.",
            )
        })?;
        self.catalog_epoch
            .store(catalog.epoch, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The epoch of the catalog last saved: the placement map this broker serves with.
    pub fn catalog_epoch(&self) -> u64 {
        self.catalog_epoch
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refreshes the stored-bytes gauges before a scrape.
    pub fn refresh_gauges(&self) {
        self.metrics.set_catalog_epoch(self.catalog_epoch());
        let open_queues = self.queues.open_queues();
        let now = self.clock.now_ms();
        let mut queue_records = Vec::new();
        for stream in self.streams() {
            for queue in &stream.record.queues {
                if let Some(state) = open_queues.get(&queue.id) {
                    let (in_flight, visible, dead) = state.read(|s| s.counts(now));
                    queue_records.push((
                        stream.record.name.clone(),
                        queue.name.clone(),
                        [in_flight, visible, dead],
                    ));
                }
            }
            self.metrics
                .set_open_shards(&stream.record.name, stream.open.len());
            // In a cluster, a shard's series come from its owner only, so Prometheus shows
            // which pod holds which shard (its scrape adds the pod).
            let here = self.cluster.get().map(|c| c.ordinal);
            for shard in stream
                .shards
                .iter()
                .filter(|s| here.is_none_or(|ordinal| s.owner == ordinal))
            {
                let bytes: u64 = shard.log.view().segments.iter().map(|s| s.len).sum();
                shard.metrics.set_stored_bytes(bytes);
            }
        }
        self.metrics.set_queue_records(&queue_records);
    }
}
