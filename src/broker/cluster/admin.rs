//! The operator's view of, and say in, a cluster's placement (`docs/cluster.md`), served on
//! the Kinesis port under their own target prefix and signed like any admin call:
//!
//! - `DescribePlacement` answers the placement map: its epoch, how many pods take new shards,
//!   and every shard's owner, lineage and closing time. The operator decides from it how the
//!   StatefulSet may shrink.
//! - `SetPlacementPods` sets how many pods (ordinals `0..n`) take new shards: raised when the
//!   StatefulSet grows, lowered before it shrinks so that the shards resharded off the leaving
//!   pods land on the pods that stay.
//!
//! - `MoveClosedShard` moves a closed shard off a leaving pod to one that stays (copied, see
//!   [`super::moving`]); `DescribePlacement` shows the move under way or why it failed.
//!
//! All are answered by pod 0, which holds the authoritative catalog; another pod relays them.

use serde_json::{Value, json};

use super::{HOME, relay};
use crate::broker::ops::Caller;
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::routing::shard_id;
use crate::broker::server::ResponseBody;
use crate::broker::state::Broker;

/// The target prefix of the placement operations.
pub const TARGET_PREFIX: &str = "BrookCluster_20261130.";
/// The most pods a Stream may have (`spec.brokers.replicas`).
pub const MAX_PODS: u64 = 100;

/// A placement operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOperation {
    /// The placement map.
    DescribePlacement,
    /// How many pods take new shards.
    SetPlacementPods,
    /// Move a closed shard off a leaving pod.
    MoveClosedShard,
}

impl AdminOperation {
    /// The operation an `X-Amz-Target` names.
    pub fn from_target(target: &str) -> Result<Self, ApiError> {
        match target.strip_prefix(TARGET_PREFIX) {
            Some("DescribePlacement") => Ok(Self::DescribePlacement),
            Some("SetPlacementPods") => Ok(Self::SetPlacementPods),
            Some("MoveClosedShard") => Ok(Self::MoveClosedShard),
            _ => Err(ApiError::new(ErrorKind::UnknownOperation, "")),
        }
    }
}

/// How an admin call was answered: here, or by pod 0.
pub enum Answered {
    /// This pod's JSON answer.
    Json(Vec<u8>),
    /// Pod 0's answer, passed through.
    Relayed(http::Response<ResponseBody>),
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Validation, message)
}

/// Serves a placement operation for `caller`: only the operator may call it on a managed
/// broker.
pub async fn serve(
    broker: &std::sync::Arc<Broker>,
    target: &str,
    body: &[u8],
    caller: &Caller,
) -> Result<Answered, ApiError> {
    let operation = AdminOperation::from_target(target)?;
    if broker.settings.managed_by.is_some() && *caller != Caller::Admin {
        return Err(ApiError::new(
            ErrorKind::AccessDenied,
            "Only the operator may read or change the placement of a managed broker's shards.",
        ));
    }
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                ErrorKind::Serialization,
                format!("The request is not JSON: {e}"),
            )
        })?
    };
    if let Some(cluster) = broker.cluster.get()
        && !cluster.is_home()
    {
        let request = relay::Request {
            target,
            content_type: "application/x-amz-json-1.1",
            body: bytes::Bytes::copy_from_slice(body),
            caller,
        };
        return relay::send(cluster, HOME, request)
            .await
            .map(Answered::Relayed);
    }
    let answer = match operation {
        AdminOperation::DescribePlacement => describe(broker, &input).await?,
        AdminOperation::SetPlacementPods => set_pods(broker, &input).await?,
        AdminOperation::MoveClosedShard => super::moving::start_move(broker, &input).await?,
    };
    Ok(Answered::Json(answer))
}

async fn describe(broker: &Broker, input: &Value) -> Result<Vec<u8>, ApiError> {
    let wanted = match input.get("StreamName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.as_str()),
        Some(_) => return Err(invalid("StreamName must be a string.")),
    };
    let catalog = broker.catalog.lock().await;
    let pods = broker
        .cluster
        .get()
        .map_or(1, |cluster| cluster.placement_pods(&catalog));
    let moves = broker.cluster.get().map(|cluster| &cluster.moves);
    let mut streams = Vec::new();
    for record in catalog.streams.values() {
        if wanted.is_some_and(|name| name != record.name) {
            continue;
        }
        let shards: Vec<Value> = record
            .shards
            .iter()
            .map(|shard| {
                let moving = moves.and_then(|moves| {
                    moves.state(crate::broker::shard::ShardKey {
                        stream_key: record.key,
                        shard_index: shard.index,
                    })
                });
                json!({
                    "ShardId": shard_id(shard.index),
                    "Owner": shard.owner,
                    "ParentShardId": shard.parent.map(shard_id),
                    "AdjacentParentShardId": shard.adjacent_parent.map(shard_id),
                    "ClosedMs": shard.closed_ms,
                    "Expired": shard.expired,
                    "MovingTo": moving.as_ref().filter(|m| m.running).map(|m| m.to),
                    "MoveRetryAt": moving
                        .as_ref()
                        .filter(|m| !m.running)
                        .and_then(|m| m.retry_at_ms),
                    "MoveFailure": moving.and_then(|m| m.failure),
                })
            })
            .collect();
        streams.push(json!({
            "StreamName": record.name,
            "RetentionHours": record.retention_hours,
            "Shards": shards,
        }));
    }
    if let Some(name) = wanted
        && streams.is_empty()
    {
        return Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Stream {name} not found."),
        ));
    }
    let rates: serde_json::Map<String, Value> = broker
        .cluster
        .get()
        .map(|cluster| cluster.rates.current(std::time::Instant::now()))
        .unwrap_or_default()
        .into_iter()
        .map(|(pod, rate)| (pod.to_string(), json!(rate)))
        .collect();
    let answer = json!({
        "Epoch": catalog.epoch,
        "PlacementPods": pods,
        "PodWriteRates": rates,
        "NowMs": broker.clock.now_ms(),
        "Streams": streams,
    });
    serde_json::to_vec(&answer)
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))
}

/// The pods to place on, as `input` asks: a whole number from 1 to the cluster's size.
pub fn requested_pods(input: &Value, listed: Option<u32>) -> Result<u32, ApiError> {
    let most = listed.map_or(MAX_PODS, u64::from);
    match input.get("Pods").and_then(Value::as_u64) {
        Some(pods) if (1..=most).contains(&pods) => Ok(pods as u32),
        _ => Err(invalid(format!(
            "Pods must be a whole number from 1 to {most}."
        ))),
    }
}

async fn set_pods(broker: &Broker, input: &Value) -> Result<Vec<u8>, ApiError> {
    let Some(cluster) = broker.cluster.get() else {
        // A broker on its own is a cluster of one pod.
        requested_pods(input, Some(1)).map_err(|_| {
            invalid("This broker is not one pod of a cluster: it places every shard on itself, Pods must be 1.")
        })?;
        return Ok(Vec::new());
    };
    let pods = requested_pods(input, cluster.listed_pods())?;
    let mut catalog = broker.catalog.lock().await;
    if catalog.placement_pods != Some(pods) {
        let before = catalog.placement_pods;
        catalog.placement_pods = Some(pods);
        if let Err(error) = broker.save(&mut catalog) {
            catalog.placement_pods = before;
            return Err(error);
        }
        tracing::info!(pods, epoch = catalog.epoch, "pods taking new shards set");
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_placement_pods_must_be_a_whole_number_within_the_cluster() {
        let cases: [(Value, Option<u32>, Option<u32>); 7] = [
            (json!({"Pods": 3}), None, Some(3)),
            (json!({"Pods": 100}), None, Some(100)),
            (json!({"Pods": 101}), None, None),
            (json!({"Pods": 0}), None, None),
            (json!({"Pods": 4}), Some(3), None),
            (json!({"Pods": "3"}), None, None),
            (json!({}), None, None),
        ];
        for (input, listed, expected) in cases {
            assert_eq!(
                requested_pods(&input, listed).ok(),
                expected,
                "{input} with {listed:?} listed"
            );
        }
        assert_eq!(
            AdminOperation::from_target("BrookCluster_20261130.SetPlacementPods").ok(),
            Some(AdminOperation::SetPlacementPods)
        );
        assert!(AdminOperation::from_target("BrookCluster_20261130.Nope").is_err());
    }
}
