//! Closing a reshard's parent on the pod that owns it. Pod 0 runs the reshard; for a parent
//! on another pod it asks that pod, over the internal port, to close the shard's log and say
//! where it ended. The owner closes it in its store (no write lands after that offset) and
//! records the closure in its catalog replica before it answers, so a restart keeps it
//! closed. Pod 0 then saves the reshard; should pod 0 fail first, it asks the owner to open
//! the shard again, and should pod 0 crash first, its next catalog (it saves one at start)
//! keeps the shard open and the owner opens it again when it adopts that catalog.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Cluster, HOME};
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::shard::ShardKey;
use crate::broker::state::Broker;

/// The internal path that closes a shard on its owner.
pub const CLOSE_PATH: &str = "/cluster/close-shard";
/// The internal path that opens it again.
pub const REOPEN_PATH: &str = "/cluster/reopen-shard";

/// What pod 0 asks of a shard's owner.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardRequest {
    /// The stream's key.
    pub stream_key: u32,
    /// The shard's index.
    pub shard: u32,
    /// Pod 0's catalog epoch when it asked.
    pub epoch: u64,
    /// Pod 0's catalog at that epoch, for an owner whose replica has not caught up with it
    /// yet (the shard to close may be the child of a reshard just made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<crate::broker::catalog::Catalog>,
}

/// The owner's answer: where the shard's log ends.
#[derive(Debug, Serialize, Deserialize)]
pub struct Closed {
    /// Offset one past the shard's last record.
    pub offset: u64,
}

fn internal(message: impl std::fmt::Display) -> ApiError {
    tracing::error!(%message, "closing a shard on its pod failed");
    ApiError::new(
        ErrorKind::InternalFailure,
        "The broker could not reshard the stream.",
    )
}

/// On the owner: closes `request`'s shard and records the closure in the replica, after
/// adopting the catalog pod 0 sent when it is newer than the replica.
pub async fn close_here(broker: &Broker, request: &mut ShardRequest) -> Result<Closed, ApiError> {
    if let Some(catalog) = request.catalog.take() {
        super::replica::adopt(broker, catalog).await?;
    }
    set_closed(broker, request, true).await
}

/// On the owner: opens the shard again (pod 0 could not complete the reshard).
pub async fn reopen_here(broker: &Broker, request: &ShardRequest) -> Result<Closed, ApiError> {
    set_closed(broker, request, false).await
}

async fn set_closed(
    broker: &Broker,
    request: &ShardRequest,
    closed: bool,
) -> Result<Closed, ApiError> {
    let key = ShardKey {
        stream_key: request.stream_key,
        shard_index: request.shard,
    };
    let mut catalog = broker.catalog.lock().await;
    let mut updated = catalog.clone();
    let record = updated
        .streams
        .values_mut()
        .find(|s| s.key == request.stream_key)
        .ok_or_else(|| internal(format!("no stream with key {}", request.stream_key)))?;
    let offset = if closed {
        broker.store.close_shard(key).await
    } else {
        broker.store.reopen_shard(key).await
    }
    .map_err(internal)?;
    let now = broker.clock.now_ms();
    if let Some(shard) = record.shards.iter_mut().find(|s| s.index == request.shard) {
        shard.closed_at_offset = closed.then_some(offset);
        shard.closed_ms = closed.then_some(now);
        shard.closing_epoch = closed.then_some(request.epoch);
    }
    let published = record.clone();
    // The replica keeps its epoch: only pod 0's next catalog confirms or undoes the closure.
    broker.save_as_is(&updated)?;
    broker.publish(&published);
    *catalog = updated;
    Ok(Closed { offset })
}

/// On pod 0: asks `owner` to close (or, with `closed` false, reopen) a shard.
pub async fn ask_owner(
    cluster: &Cluster,
    owner: u32,
    request: &ShardRequest,
    closed: bool,
) -> Result<u64, ApiError> {
    let path = if closed { CLOSE_PATH } else { REOPEN_PATH };
    let body = serde_json::to_vec(request).map_err(internal)?;
    let builder = http::Request::post(path).header(http::header::CONTENT_TYPE, "application/json");
    let (status, bytes) = cluster
        .exchange(owner, builder, path, Bytes::from(body))
        .await
        .map_err(|error| match error {
            super::ClusterError::BadAnswer { .. } => internal(error),
            _ => ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!("The pod that holds the shard cannot be reached ({error}); retry."),
            ),
        })?;
    if !status.is_success() {
        return Err(internal(format!(
            "pod {owner} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let closed: Closed = serde_json::from_slice(&bytes).map_err(internal)?;
    Ok(closed.offset)
}

/// Closes (or reopens) shard `key`, owned by `owner`, from pod 0: in its own store when pod 0
/// owns it (or the broker is on its own), else on the owner.
/// `current` is pod 0's catalog as saved (sent along with a close).
pub async fn set_parent(
    broker: &Broker,
    key: ShardKey,
    owner: u32,
    closed: bool,
    current: Option<&crate::broker::catalog::Catalog>,
) -> Result<u64, ApiError> {
    match broker.cluster.get() {
        Some(cluster) if owner != HOME && owner != cluster.ordinal => {
            let request = ShardRequest {
                stream_key: key.stream_key,
                shard: key.shard_index,
                epoch: broker.catalog_epoch(),
                catalog: current.cloned(),
            };
            ask_owner(cluster, owner, &request, closed).await
        }
        _ => {
            let result = if closed {
                broker.store.close_shard(key).await
            } else {
                broker.store.reopen_shard(key).await
            };
            result.map_err(internal)
        }
    }
}

/// Serves pod 0's close or reopen request on the internal port.
pub async fn serve(broker: &Broker, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut request: ShardRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return (400, error.to_string().into_bytes()),
    };
    let result = if path == CLOSE_PATH {
        close_here(broker, &mut request).await
    } else {
        reopen_here(broker, &request).await
    };
    match result {
        Ok(closed) => (200, serde_json::to_vec(&closed).unwrap_or_default()),
        Err(error) => (500, error.message.into_bytes()),
    }
}
