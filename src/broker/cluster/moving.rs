//! Moving a closed shard off a pod that is leaving (what a Stream with `shrinkPolicy: Drain`
//! asks for before its StatefulSet shrinks), so the pods can shrink before retention ends.
//!
//! Pod 0 picks the destination among the pods that stay (by [`super::placement::place`]) and
//! asks it over the internal port to copy the shard from its owner. The destination reads the
//! owner's segments batch by batch, checks and writes them byte for byte (offsets, so sequence
//! numbers, and arrival times are kept) and checkpoints the copy before it answers. Only then
//! does pod 0 name the destination the shard's owner in its catalog (and the old owner in the
//! shard's `moved_from`); the old owner forgets its copy once it adopts that catalog. Until
//! then reads go to the old owner, which still holds every record, and a read sent under an
//! older map to a pod that does not serve the shard is refused and routed again, so no reader
//! ever sees a shard empty that is not. A copy cut short leaves nothing that counts: the move
//! is asked again and starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Cluster, HOME, placement};
use crate::broker::catalog::ShardRecord;
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::routing::{parse_shard_id, shard_id};
use crate::broker::shard::ShardKey;
use crate::broker::shard::checkpoint::ShardCheckpoint;
use crate::broker::shard::transfer::{SegmentSource, TransferError};
use crate::broker::state::Broker;

/// The internal path that lists what a pod holds of a shard.
pub const LISTING_PATH: &str = "/cluster/shard-listing";
/// The internal path that hands out whole batches of a shard's segment.
pub const BATCHES_PATH: &str = "/cluster/shard-batches";
/// The internal path that asks a pod to copy a shard from its owner.
pub const IMPORT_PATH: &str = "/cluster/import-shard";

/// A move as pod 0 tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveState {
    /// Where the shard goes.
    pub to: u32,
    /// Whether the copy is under way.
    pub running: bool,
    /// Why the last attempt failed.
    pub failure: Option<String>,
    /// Attempts that failed in a row.
    pub failures: u32,
    /// After a failure: when the move is worth asking again (epoch milliseconds).
    pub retry_at_ms: Option<u64>,
}

/// First wait before a failed move is asked again; it doubles with each failure in a row.
const FIRST_RETRY_MS: u64 = 2_000;
/// Longest wait before a failed move is asked again.
const LONGEST_RETRY_MS: u64 = 300_000;

/// How long to wait before asking again for a move that failed `failures` times in a row:
/// 2 s, doubling, at most 5 minutes.
pub fn retry_delay_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(20);
    (FIRST_RETRY_MS << doublings).min(LONGEST_RETRY_MS)
}

/// The moves pod 0 runs and the copies a pod takes in.
#[derive(Default)]
pub struct Moves {
    running: Mutex<HashMap<ShardKey, MoveState>>,
    importing: Mutex<HashMap<ShardKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Moves {
    /// The state of the move of `key`, if one was asked for since pod 0 started.
    pub fn state(&self, key: ShardKey) -> Option<MoveState> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
    }

    /// Registers a move of `key` to `to` unless one is running; returns the running one's
    /// destination, or `None` when this call started it.
    fn start(&self, key: ShardKey, to: u32) -> Option<u32> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.get(&key) {
            Some(state) if state.running => Some(state.to),
            earlier => {
                // Failures in a row are kept until a move succeeds.
                let failures = earlier.map_or(0, |state| state.failures);
                running.insert(
                    key,
                    MoveState {
                        to,
                        running: true,
                        failure: None,
                        failures,
                        retry_at_ms: None,
                    },
                );
                None
            }
        }
    }

    /// Ends the running move of `key`: forgotten when it succeeded; after a failure, kept
    /// with its reason and the time it is worth asking again.
    pub fn finish(&self, key: ShardKey, failure: Option<String>, now_ms: u64) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match failure {
            None => {
                running.remove(&key);
            }
            Some(failure) => {
                if let Some(state) = running.get_mut(&key) {
                    state.running = false;
                    state.failure = Some(failure);
                    state.failures += 1;
                    state.retry_at_ms = Some(now_ms + retry_delay_ms(state.failures));
                }
            }
        }
    }

    fn import_lock(&self, key: ShardKey) -> Arc<tokio::sync::Mutex<()>> {
        self.importing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidArgument, message)
}

/// What pod 0 decides about a request to move `shard_index` of the stream in `catalog`: the
/// shard's key, its owner and the pod it goes to; or why it is refused.
pub fn destination(
    catalog: &crate::broker::catalog::Catalog,
    stream_name: &str,
    shard_index: u32,
    loads: &[placement::PodLoad],
) -> Result<(ShardKey, u32, u32), ApiError> {
    let record = catalog.streams.get(stream_name).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Stream {stream_name} not found."),
        )
    })?;
    let id = shard_id(shard_index);
    let shard = record
        .shards
        .iter()
        .find(|s| s.index == shard_index)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("Shard {id} of stream {stream_name} not found."),
            )
        })?;
    if shard.closed_at_offset.is_none() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Shard {id} is open: only closed shards are moved (reshard it off its pod)."),
        ));
    }
    if shard.expired {
        return Err(invalid(format!(
            "Shard {id} is past retention: nothing of it is left to move."
        )));
    }
    let pods = loads.len() as u32;
    if shard.owner < pods {
        return Err(invalid(format!(
            "Shard {id} is on pod {}, which stays (new shards go to pods 0 to {}): only shards on leaving pods are moved.",
            shard.owner,
            pods.saturating_sub(1)
        )));
    }
    // A move asked before (pod 0 may have restarted since) goes on to the same pod while it
    // stays: that pod may hold the copy already.
    let to = match shard.moving_to {
        Some(pod) if pod < pods => pod,
        _ => placement::place(1, loads, &[])
            .first()
            .copied()
            .unwrap_or(HOME),
    };
    let key = ShardKey {
        stream_key: record.key,
        shard_index,
    };
    Ok((key, shard.owner, to))
}

/// Serves `MoveClosedShard` on pod 0: starts moving the shard (or reports the move already
/// running) and answers where it goes.
pub async fn start_move(broker: &Arc<Broker>, input: &Value) -> Result<Vec<u8>, ApiError> {
    let Some(cluster) = broker.cluster.get().cloned() else {
        return Err(invalid(
            "This broker is not one pod of a cluster: its shards have nowhere to move.",
        ));
    };
    let name = input
        .get("StreamName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(ErrorKind::Validation, "StreamName is required."))?;
    let index = input
        .get("ShardId")
        .and_then(Value::as_str)
        .and_then(parse_shard_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::Validation,
                "ShardId must name a shard (shardId-<number>).",
            )
        })?;
    let (key, from, to) = {
        let catalog = broker.catalog.lock().await;
        let loads = placement::loads(
            &catalog,
            cluster.placement_pods(&catalog),
            &cluster.rates.current(std::time::Instant::now()),
        );
        destination(&catalog, name, index, &loads)?
    };
    let to = match cluster.moves.start(key, to) {
        Some(running_to) => running_to,
        None => {
            tracing::info!(?key, from, to, "moving a closed shard off a leaving pod");
            tokio::spawn(run_move(broker.clone(), cluster, key, from, to));
            to
        }
    };
    let answer = json!({"ShardId": shard_id(index), "From": from, "To": to});
    serde_json::to_vec(&answer)
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))
}

async fn run_move(broker: Arc<Broker>, cluster: Arc<Cluster>, key: ShardKey, from: u32, to: u32) {
    let copied = match record_destination(&broker, key, to).await {
        Err(error) => Err(error),
        Ok(()) if to == cluster.ordinal => {
            import_here(&broker, &cluster, key, from).await.map(drop)
        }
        Ok(()) => ask_import(&cluster, key, from, to).await,
    };
    if copied.is_ok() && broker.settings.crash_before_move_named {
        tracing::error!(
            ?key,
            to,
            "stopping before the moved shard's owner is saved, as asked"
        );
        std::process::exit(101);
    }
    let result = match copied {
        Ok(_) => name_owner(&broker, key, from, to).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => {
            tracing::info!(?key, from, to, "closed shard moved");
            cluster.moves.finish(key, None, broker.clock.now_ms());
        }
        Err(error) => {
            tracing::warn!(?key, from, to, %error, "moving a closed shard failed; it stays where it is");
            cluster
                .moves
                .finish(key, Some(error), broker.clock.now_ms());
        }
    }
}

/// Saves `to` as where `key` is being copied, before the copy starts.
async fn record_destination(broker: &Broker, key: ShardKey, to: u32) -> Result<(), String> {
    change_shard(broker, key, |shard| Ok(set_destination(shard, to))).await
}

/// Makes `to` the owner of `key` in pod 0's catalog, `from` remembered as a pod that held it.
async fn name_owner(broker: &Broker, key: ShardKey, from: u32, to: u32) -> Result<(), String> {
    change_shard(broker, key, |shard| {
        set_owner(shard, from, to).map(|()| true)
    })
    .await
}

/// Applies `change` to shard `key` of pod 0's catalog and, when it says the shard changed,
/// saves and publishes the catalog.
async fn change_shard(
    broker: &Broker,
    key: ShardKey,
    change: impl FnOnce(&mut ShardRecord) -> Result<bool, String>,
) -> Result<(), String> {
    let mut catalog = broker.catalog.lock().await;
    let mut updated = catalog.clone();
    let record = updated
        .streams
        .values_mut()
        .find(|s| s.key == key.stream_key)
        .ok_or("the stream was deleted meanwhile")?;
    let shard = record
        .shards
        .iter_mut()
        .find(|s| s.index == key.shard_index)
        .ok_or("the shard is gone")?;
    if !change(shard)? {
        return Ok(());
    }
    let published = record.clone();
    broker.save(&mut updated).map_err(|e| e.message)?;
    broker.publish(&published);
    *catalog = updated;
    Ok(())
}

/// Records `to` as the pod `shard` is being copied to; whether that changed it. A destination
/// recorded earlier that is not `to` (it is leaving now) is remembered as a pod that held the
/// shard, so it forgets what it may have copied; `to` itself is not, even if it held it once.
pub fn set_destination(shard: &mut ShardRecord, to: u32) -> bool {
    let before = (shard.moving_to, shard.moved_from.clone());
    if let Some(earlier) = shard.moving_to.replace(to)
        && earlier != to
        && earlier != shard.owner
        && !shard.moved_from.contains(&earlier)
    {
        shard.moved_from.push(earlier);
    }
    shard.moved_from.retain(|&pod| pod != to);
    (shard.moving_to, &shard.moved_from) != (before.0, &before.1)
}

/// Names `to` the owner of `shard` in place of `from`, which is remembered as a pod that held
/// it; refused when the owner is no longer `from`.
pub fn set_owner(shard: &mut ShardRecord, from: u32, to: u32) -> Result<(), String> {
    if shard.owner != from {
        return Err(format!(
            "the shard's owner changed meanwhile (pod {})",
            shard.owner
        ));
    }
    shard.owner = to;
    shard.moving_to = None;
    if !shard.moved_from.contains(&from) {
        shard.moved_from.push(from);
    }
    Ok(())
}

/// Asks pod `to` to copy `key` from pod `from`.
async fn ask_import(cluster: &Cluster, key: ShardKey, from: u32, to: u32) -> Result<(), String> {
    let body = serde_json::to_vec(&ImportRequest {
        stream_key: key.stream_key,
        shard: key.shard_index,
        from,
    })
    .map_err(|e| e.to_string())?;
    let request =
        http::Request::post(IMPORT_PATH).header(http::header::CONTENT_TYPE, "application/json");
    // The copy's answer comes when the whole shard is copied, which takes as long as its
    // size does: no answer limit here (the copy's own calls to the source have one), but
    // the call is given up when the destination stops answering pings meanwhile.
    let (status, bytes) = cluster
        .exchange_within(to, request, IMPORT_PATH, Bytes::from(body), None)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "pod {to} could not copy the shard: {status} {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    Ok(())
}

/// What pod 0 asks of the destination.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImportRequest {
    /// The stream's key.
    pub stream_key: u32,
    /// The shard's index.
    pub shard: u32,
    /// The pod that holds it.
    pub from: u32,
}

/// Copies `key` from pod `from` into this pod's store, one copy per shard at a time (a copy
/// asked again while one runs waits for it, then finds it done). The copy runs on its own
/// task: a caller that goes away does not cut it short.
pub async fn import_here(
    broker: &Arc<Broker>,
    cluster: &Arc<Cluster>,
    key: ShardKey,
    from: u32,
) -> Result<ShardCheckpoint, String> {
    let lock = cluster.moves.import_lock(key);
    let (broker, cluster) = (broker.clone(), cluster.clone());
    let task = tokio::spawn(async move {
        let _one_at_a_time = lock.lock().await;
        let source = PeerSource {
            cluster: &cluster,
            from,
            key,
        };
        broker.store.import_shard(key, &source).await
    });
    match task.await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(error) => Err(format!("the copy stopped: {error}")),
    }
}

/// Serves pod 0's [`ImportRequest`] on the internal port.
pub async fn serve_import(broker: &Arc<Broker>, body: &[u8]) -> (u16, Vec<u8>) {
    let request: ImportRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return (400, error.to_string().into_bytes()),
    };
    let Some(cluster) = broker.cluster.get().cloned() else {
        return (400, b"not a pod of a cluster".to_vec());
    };
    let key = ShardKey {
        stream_key: request.stream_key,
        shard_index: request.shard,
    };
    match import_here(broker, &cluster, key, request.from).await {
        Ok(listing) => (200, serde_json::to_vec(&listing).unwrap_or_default()),
        Err(error) => (500, error.into_bytes()),
    }
}

/// What a copy asks of the pod that holds the shard: its listing, or whole batches of the
/// segment at `base` from byte `position`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SegmentRequest {
    /// The stream's key.
    pub stream_key: u32,
    /// The shard's index.
    pub shard: u32,
    /// The segment's first offset (batches only).
    #[serde(default)]
    pub base: u64,
    /// The byte to start at (batches only).
    #[serde(default)]
    pub position: u64,
}

impl SegmentRequest {
    fn key(&self) -> ShardKey {
        ShardKey {
            stream_key: self.stream_key,
            shard_index: self.shard,
        }
    }
}

/// Serves [`LISTING_PATH`] or [`BATCHES_PATH`] for a [`SegmentRequest`] (JSON): what this
/// pod holds of a shard (JSON), or whole batches of one of its segments.
pub fn serve_segments(broker: &Broker, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let request: SegmentRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return (400, error.to_string().into_bytes()),
    };
    if path == LISTING_PATH {
        return match broker.store.listing(request.key()) {
            Some(listing) => (200, serde_json::to_vec(&listing).unwrap_or_default()),
            None => (404, b"no such shard here".to_vec()),
        };
    }
    match broker
        .store
        .batches(request.key(), request.base, request.position)
    {
        Some(Ok(bytes)) => (200, bytes),
        Some(Err(error)) => (500, error.to_string().into_bytes()),
        None => (404, b"no such segment here".to_vec()),
    }
}

/// Reads a shard from the pod that holds it, over the internal port.
struct PeerSource<'a> {
    cluster: &'a Cluster,
    from: u32,
    key: ShardKey,
}

impl PeerSource<'_> {
    async fn ask(&self, path: &str, base: u64, position: u64) -> Result<Bytes, TransferError> {
        let request = SegmentRequest {
            stream_key: self.key.stream_key,
            shard: self.key.shard_index,
            base,
            position,
        };
        let body =
            serde_json::to_vec(&request).map_err(|e| TransferError::Source(e.to_string()))?;
        let builder =
            http::Request::post(path).header(http::header::CONTENT_TYPE, "application/json");
        let (status, bytes) = self
            .cluster
            .exchange(self.from, builder, path, Bytes::from(body))
            .await
            .map_err(|e| TransferError::Source(e.to_string()))?;
        if !status.is_success() {
            return Err(TransferError::Source(format!(
                "pod {} answered {status}: {}",
                self.from,
                String::from_utf8_lossy(&bytes)
            )));
        }
        Ok(bytes)
    }
}

impl SegmentSource for PeerSource<'_> {
    async fn listing(&self) -> Result<ShardCheckpoint, TransferError> {
        let bytes = self.ask(LISTING_PATH, 0, 0).await?;
        serde_json::from_slice(&bytes).map_err(|e| TransferError::Source(e.to_string()))
    }

    async fn batches(&self, base_offset: u64, position: u64) -> Result<Vec<u8>, TransferError> {
        Ok(self
            .ask(BATCHES_PATH, base_offset, position)
            .await?
            .to_vec())
    }
}

/// Shards this pod (`here`) held and that `catalog` says another pod holds now: their copies
/// here are forgotten.
pub fn moved_away(catalog: &crate::broker::catalog::Catalog, here: u32) -> Vec<ShardKey> {
    catalog
        .streams
        .values()
        .flat_map(|record| {
            record
                .shards
                .iter()
                .filter(|s| s.owner != here && s.moved_from.contains(&here))
                .map(|s| ShardKey {
                    stream_key: record.key,
                    shard_index: s.index,
                })
        })
        .collect()
}

/// Forgets this pod's copies of the shards `catalog` says were moved off it (at each newer
/// catalog, and at start for a catalog saved before a crash cut the forgetting short).
pub async fn forget_moved_away(
    broker: &Broker,
    catalog: &crate::broker::catalog::Catalog,
) -> Result<(), crate::broker::shard::StoreError> {
    let Some(here) = broker.cluster.get().map(|cluster| cluster.ordinal) else {
        return Ok(());
    };
    let mut forgot = false;
    for key in moved_away(catalog, here) {
        if broker.store.holds_records(key) {
            broker.store.forget_shard(key).await?;
            tracing::info!(?key, "forgot a closed shard another pod holds now");
            forgot = true;
        }
    }
    if forgot {
        // Readers take the emptied logs from here on.
        for record in catalog.streams.values() {
            broker.publish(record);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::catalog::{Catalog, StreamRecord};

    /// A stream of three shards on pods 0, 1 and 2; shard 2 (on pod 2) closed.
    fn catalog_with_a_closed_shard_on_pod_2(moving_to: Option<u32>) -> Catalog {
        let mut catalog = Catalog::default();
        let mut orders = StreamRecord::new("orders".into(), 7, 3, 0);
        for (shard, owner) in orders.shards.iter_mut().zip([0, 1, 2]) {
            shard.owner = owner;
        }
        orders.shards[2].closed_at_offset = Some(30);
        orders.shards[2].moving_to = moving_to;
        catalog.streams.insert("orders".into(), orders);
        catalog
    }

    fn load(ordinal: u32, open_shards: u32) -> placement::PodLoad {
        placement::PodLoad {
            ordinal,
            open_shards,
            write_rate: 0.0,
        }
    }

    #[test]
    fn cluster_a_moves_destination_is_recorded_and_an_abandoned_one_forgets_its_copy() {
        let shard = |moving_to: Option<u32>, moved_from: Vec<u32>| {
            let mut shard =
                catalog_with_a_closed_shard_on_pod_2(moving_to).streams["orders"].shards[2].clone();
            shard.moved_from = moved_from;
            shard
        };
        // (case, moving_to, moved_from, to) -> (changed, moving_to, moved_from)
        let cases = [
            ("first time", None, vec![], 1, (true, Some(1), vec![])),
            (
                "the same again: nothing to save",
                Some(1),
                vec![],
                1,
                (false, Some(1), vec![]),
            ),
            (
                "another: the first forgets",
                Some(3),
                vec![],
                1,
                (true, Some(1), vec![3]),
            ),
            (
                "a pod that held it once takes it",
                None,
                vec![4, 1],
                1,
                (true, Some(1), vec![4]),
            ),
            (
                "the owner itself is not listed",
                Some(2),
                vec![],
                0,
                (true, Some(0), vec![]),
            ),
        ];
        for (name, moving_to, moved_from, to, (changed, after_to, after_from)) in cases {
            let mut shard = shard(moving_to, moved_from);
            assert_eq!(set_destination(&mut shard, to), changed, "{name}");
            assert_eq!(shard.moving_to, after_to, "{name}");
            assert_eq!(shard.moved_from, after_from, "{name}");
        }

        let mut moving = shard(Some(1), vec![]);
        assert!(
            set_owner(&mut moving, 0, 1).is_err(),
            "pod 2 owns it, not pod 0"
        );
        assert_eq!(set_owner(&mut moving, 2, 1), Ok(()));
        assert_eq!((moving.owner, moving.moving_to), (1, None));
        assert_eq!(moving.moved_from, vec![2]);
    }

    #[test]
    fn cluster_a_move_asked_again_goes_to_the_pod_it_was_copying_to_while_that_pod_stays() {
        let key = ShardKey {
            stream_key: 7,
            shard_index: 2,
        };
        // Pod 1 is the least loaded of the two that stay.
        let loads = [load(0, 3), load(1, 1)];
        let cases = [
            ("first time: the least loaded pod", None, 1),
            ("asked before, to pod 0: pod 0 again", Some(0), 0),
            ("asked before, to pod 1: pod 1", Some(1), 1),
            ("asked before, to a pod that is leaving now", Some(2), 1),
            ("asked before, to a pod that is gone", Some(5), 1),
        ];
        for (name, moving_to, expected) in cases {
            let catalog = catalog_with_a_closed_shard_on_pod_2(moving_to);
            let decided = destination(&catalog, "orders", 2, &loads).expect(name);
            assert_eq!(decided, (key, 2, expected), "{name}");
        }
    }

    #[test]
    fn cluster_a_failed_move_waits_longer_after_each_failure_in_a_row_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=10).map(retry_delay_ms).collect();
        assert_eq!(
            waits,
            [
                2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000
            ]
        );
        assert_eq!(retry_delay_ms(u32::MAX), 300_000);

        let moves = Moves::default();
        let key = ShardKey {
            stream_key: 1,
            shard_index: 3,
        };
        assert_eq!(moves.start(key, 1), None, "a first move starts");
        assert_eq!(
            moves.start(key, 2),
            Some(1),
            "a running move is not started twice"
        );
        moves.finish(key, Some("pod 1 is unreachable".into()), 10_000);
        let failed = moves.state(key).expect("a failed move is kept");
        assert_eq!(
            (failed.running, failed.failures, failed.retry_at_ms),
            (false, 1, Some(12_000))
        );
        assert_eq!(moves.start(key, 1), None, "asked again, it starts again");
        moves.finish(key, Some("pod 1 is unreachable".into()), 20_000);
        let again = moves.state(key).expect("kept");
        assert_eq!((again.failures, again.retry_at_ms), (2, Some(24_000)));
        assert_eq!(moves.start(key, 1), None);
        moves.finish(key, None, 30_000);
        assert_eq!(moves.state(key), None, "a move that succeeded is forgotten");
    }
}
