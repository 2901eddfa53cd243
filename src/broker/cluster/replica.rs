//! The catalog replica of pods other than pod 0: fetched from pod 0's internal port, saved
//! on the pod's own volume (a restarted pod serves its shards before it reaches pod 0
//! again) and adopted when its epoch is newer than the one held.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{CATALOG_PATH, Cluster, ClusterError, HOME, rates};
use crate::broker::catalog::Catalog;
use crate::broker::protocol::ApiError;
use crate::broker::shard::ShardKey;
use crate::broker::state::Broker;

/// How often a pod asks pod 0 for a newer catalog.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// The catalog this pod holds, with its epoch, as the internal port serves it.
pub async fn catalog_document(broker: &Broker) -> Vec<u8> {
    serde_json::to_vec(&*broker.catalog.lock().await).unwrap_or_default()
}

/// What a pod tells pod 0 with each catalog fetch.
pub struct Report {
    /// Its write rate, records per second.
    pub rate: f64,
    /// The write demand of the shards it owns, by stream.
    pub demand: rates::StreamDemand,
}

/// Fetches pod 0's catalog; with `report`, tells pod 0 this pod's write rate and demand.
pub async fn fetch(cluster: &Cluster, report: Option<&Report>) -> Result<Catalog, ClusterError> {
    let mut request = http::Request::get(CATALOG_PATH);
    if let Some(report) = report {
        request = request
            .header(rates::POD_HEADER, cluster.ordinal.to_string())
            .header(rates::RATE_HEADER, format!("{:.3}", report.rate))
            .header(rates::DEMAND_HEADER, rates::encode_demand(&report.demand));
    }
    let (status, bytes) = cluster
        .exchange(HOME, request, CATALOG_PATH, Bytes::new())
        .await?;
    if !status.is_success() {
        return Err(ClusterError::BadAnswer {
            ordinal: HOME,
            message: format!("{status}: {}", String::from_utf8_lossy(&bytes)),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ClusterError::BadAnswer {
        ordinal: HOME,
        message: e.to_string(),
    })
}

/// Adopts `incoming` when it is newer than the catalog held: streams gone are dropped, new
/// shards get (empty) logs, retention follows, and the replica is saved before it is served.
/// Returns whether it was adopted.
pub async fn adopt(broker: &Broker, incoming: Catalog) -> Result<bool, ApiError> {
    let mut catalog = broker.catalog.lock().await;
    if incoming.epoch <= broker.catalog_epoch() {
        return Ok(false);
    }
    let internal = |e: crate::broker::shard::StoreError| {
        tracing::error!(error = %e, "could not follow pod 0's catalog");
        ApiError::new(
            crate::broker::protocol::ErrorKind::InternalFailure,
            "The broker could not follow the cluster's catalog.",
        )
    };
    // Shards this pod closed at pod 0's request that pod 0's newer catalog keeps open: pod 0
    // did not complete that reshard, so they take writes again.
    for old in catalog.streams.values() {
        for shard in old.shards.iter().filter(|s| s.closing_epoch.is_some()) {
            let still_open = incoming
                .streams
                .values()
                .find(|s| s.key == old.key)
                .and_then(|s| s.shards.iter().find(|n| n.index == shard.index))
                .is_some_and(|n| n.closed_at_offset.is_none());
            if still_open {
                let key = ShardKey {
                    stream_key: old.key,
                    shard_index: shard.index,
                };
                broker.store.reopen_shard(key).await.map_err(internal)?;
                tracing::warn!(
                    ?key,
                    "pod 0 did not complete a reshard: the parent is open again"
                );
            }
        }
    }
    broker.save_as_is(&incoming)?;
    for (name, old) in &catalog.streams {
        let kept = incoming.streams.get(name).is_some_and(|s| s.key == old.key);
        if !kept {
            broker.unpublish(old);
            broker.store.drop_stream(old.key).await.map_err(internal)?;
        }
    }
    for record in incoming.streams.values() {
        let missing: Vec<ShardKey> = record
            .shard_keys()
            .filter(|key| broker.store.log(*key).is_none())
            .collect();
        if !missing.is_empty() {
            broker.store.add_shards(missing).await.map_err(internal)?;
        }
        broker
            .store
            .set_retention(record.key, record.retention_ms())
            .await
            .map_err(internal)?;
        broker.publish(record);
    }
    // Closed shards moved off this pod: their copies here go, once the catalog that names
    // their new owner is saved (a read routed here under an older map is refused from now on).
    super::moving::forget_moved_away(broker, &incoming)
        .await
        .map_err(internal)?;
    tracing::info!(epoch = incoming.epoch, "adopted pod 0's catalog");
    *catalog = incoming;
    Ok(true)
}

/// Fetches and adopts pod 0's catalog once; a pod 0 that cannot be reached leaves the
/// replica as it is.
/// Returns whether a newer catalog was adopted.
pub async fn refresh(broker: &Broker, cluster: &Cluster) -> bool {
    refresh_reporting(broker, cluster, None).await
}

/// After this pod refused another pod's request under its own map (`ServiceUnavailable`:
/// nothing written), catches up with pod 0, the authority, which never does; returns whether
/// a newer catalog was adopted.
pub async fn catch_up_after_refusal(broker: &Broker, refusal: &ApiError) -> bool {
    match broker.cluster.get() {
        Some(cluster)
            if refusal.kind == crate::broker::protocol::ErrorKind::ServiceUnavailable
                && !cluster.is_home() =>
        {
            refresh(broker, cluster).await
        }
        _ => false,
    }
}

/// [`refresh`], telling pod 0 this pod's write rate and demand.
async fn refresh_reporting(broker: &Broker, cluster: &Cluster, report: Option<&Report>) -> bool {
    match fetch(cluster, report).await {
        Ok(incoming) => adopt(broker, incoming).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "could not adopt pod 0's catalog");
            false
        }),
        Err(error) => {
            tracing::debug!(%error, "pod 0's catalog is out of reach");
            false
        }
    }
}

/// Follows pod 0's catalog for as long as the broker runs, telling it this pod's write
/// rate and the demand on its shards each time; pod 0 itself only measures its own.
pub async fn follow(broker: Arc<Broker>, cluster: Arc<Cluster>) {
    let mut ticks = tokio::time::interval(FOLLOW_INTERVAL);
    let mut meter = rates::RateMeter::default();
    loop {
        ticks.tick().await;
        if cluster
            .follow_held
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            continue;
        }
        let now = std::time::Instant::now();
        let rate = meter.sample(now, rates::written_records(&broker));
        if cluster.is_home() {
            cluster.rates.record(cluster.ordinal, rate, now);
        } else {
            let report = Report {
                rate,
                demand: rates::owned_demand(&broker, cluster.ordinal),
            };
            refresh_reporting(&broker, &cluster, Some(&report)).await;
        }
    }
}
