//! Resharding operations: SplitShard, MergeShards and UpdateShardCount.
//!
//! The plan is pure ([`crate::broker::reshard`]); applying it adds the children to the
//! store, closes the parents in the writer (which then refuses their writes, so in-flight
//! puts route again to the children), persists the catalog and swaps the live view.

use std::sync::Arc;

use serde_json::json;

use super::{no_output, required};
use crate::broker::catalog::StreamRecord;
use crate::broker::cluster::closing;
use crate::broker::protocol::json::{
    self, MergeShardsInput, SplitShardInput, UpdateShardCountInput,
};
use crate::broker::protocol::{ApiError, ErrorKind};
use crate::broker::reshard::{self, Plan, ReshardError};
use crate::broker::routing::{parse_hash_key, parse_shard_id};
use crate::broker::shard::ShardKey;
use crate::broker::state::{Broker, LiveStream};

const SCALINGS_PER_DAY: usize = 10;
const DAY_MS: u64 = 86_400_000;

fn reshard_error(error: ReshardError, stream: &LiveStream, account: &str) -> ApiError {
    match error {
        ReshardError::NoSuchShard(index) => ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Could not find shard {} in stream {} under account {account}.",
                crate::broker::routing::shard_id(index),
                stream.record.name
            ),
        ),
        ReshardError::TargetOutOfBounds { .. } => {
            ApiError::new(ErrorKind::LimitExceeded, error.to_string())
        }
        other => ApiError::new(ErrorKind::InvalidArgument, other.to_string()),
    }
}

fn shard_index(id: &str, stream: &LiveStream, account: &str) -> Result<u32, ApiError> {
    parse_shard_id(id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Could not find shard {id} in stream {} under account {account}.",
                stream.record.name
            ),
        )
    })
}

/// Applies a plan made from the stream's current record, under the catalog lock.
async fn apply(
    broker: &Arc<Broker>,
    stream: &LiveStream,
    make_plan: impl FnOnce(&StreamRecord, u64) -> Result<Plan, ReshardError>,
    counts_as_scaling: bool,
) -> Result<StreamRecord, ApiError> {
    let account = broker.settings.account.clone();
    let mut catalog = broker.catalog.lock().await;
    let name = stream.record.name.clone();
    let live = broker
        .stream(&name)
        .ok_or_else(|| ApiError::stream_not_found(&name, &account))?;
    let now = broker.clock.now_ms();
    let status = live.status(now, broker.settings.transition_ms);
    if status != "ACTIVE" {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Stream {name} under account {account} not ACTIVE, instead in state {status}"),
        ));
    }
    let current = catalog
        .streams
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::stream_not_found(&name, &account))?;
    if counts_as_scaling {
        let recent = current
            .scaling_history_ms
            .iter()
            .filter(|&&t| t + DAY_MS > now)
            .count();
        if recent >= SCALINGS_PER_DAY {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Stream {name} under account {account} has already been scaled {SCALINGS_PER_DAY} times in the last 24 hours."
                ),
            ));
        }
    }
    let mut plan = make_plan(&current, now).map_err(|e| reshard_error(e, &live, &account))?;
    crate::broker::cluster::place_reshard(
        broker,
        &catalog,
        &mut plan.record,
        &plan.closed,
        &plan.added,
    );
    let open_after =
        catalog.open_shards() - current.open_shard_count() + plan.record.open_shard_count();
    if open_after > broker.settings.shard_limit as usize {
        return Err(ApiError::new(
            ErrorKind::LimitExceeded,
            format!(
                "This request would exceed the shard limit for the account {account}. Current limit of shards is {}.",
                broker.settings.shard_limit
            ),
        ));
    }
    let internal = |e: crate::broker::shard::StoreError| {
        tracing::error!(error = %e, stream = %name, "reshard failed in storage");
        ApiError::new(
            ErrorKind::InternalFailure,
            "The broker could not reshard the stream.",
        )
    };
    let key = |index: u32| ShardKey {
        stream_key: current.key,
        shard_index: index,
    };
    broker
        .store
        .add_shards(plan.added.iter().map(|&i| key(i)).collect())
        .await
        .map_err(internal)?;
    // The parents close in the writer before the catalog is saved, so no write lands in a
    // parent after its end offset is recorded; a failure on the way opens them again, and the
    // stream stays as it was (a crash instead loses only the in-memory close: the saved
    // catalog still names the parents open).
    // In a cluster, a parent on another pod is closed there (its log is on that pod).
    let owner = |index: u32| {
        current
            .shards
            .iter()
            .find(|s| s.index == index)
            .map_or(0, |s| s.owner)
    };
    let mut closed = Vec::with_capacity(plan.closed.len());
    for &index in &plan.closed {
        let offset =
            match closing::set_parent(broker, key(index), owner(index), true, Some(&catalog)).await
            {
                Ok(offset) => offset,
                Err(error) => {
                    reopen(broker, &closed, &name).await;
                    return Err(error);
                }
            };
        closed.push((key(index), owner(index)));
        if let Some(shard) = plan.record.shards.iter_mut().find(|s| s.index == index) {
            shard.closed_at_offset = Some(offset);
        }
    }
    if broker.settings.crash_before_reshard_save {
        tracing::error!(stream = %name, "stopping before the reshard is saved, as asked");
        std::process::exit(101);
    }
    plan.record.updating_until_ms = Some(now + broker.settings.transition_ms);
    if counts_as_scaling {
        plan.record.scaling_history_ms.retain(|&t| t + DAY_MS > now);
        plan.record.scaling_history_ms.push(now);
    }
    let mut updated = catalog.clone();
    updated.streams.insert(name.clone(), plan.record.clone());
    if let Err(error) = broker.save(&mut updated) {
        reopen(broker, &closed, &name).await;
        return Err(error);
    }
    *catalog = updated;
    broker.publish(&plan.record);
    tracing::info!(stream = %name, added = ?plan.added, closed = ?plan.closed, "resharded");
    Ok(plan.record)
}

/// Opens again the parents a failed reshard closed.
async fn reopen(broker: &Broker, closed: &[(ShardKey, u32)], stream: &str) {
    for &(shard, owner) in closed {
        if let Err(error) = closing::set_parent(broker, shard, owner, false, None).await {
            // Only a stopped writer refuses, or an owner pod that is down: the catalog pod 0
            // saves at its next change keeps the shard open, and the owner follows it.
            tracing::error!(%error, %stream, ?shard, owner, "could not reopen a parent shard");
        }
    }
    tracing::warn!(%stream, "reshard undone: its parents take writes again");
}

pub(super) async fn split_shard(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: SplitShardInput = json::decode(body)?;
    let shard = required(input.shard_to_split, "shardToSplit")?;
    let key_text = required(input.new_starting_hash_key, "newStartingHashKey")?;
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let account = &broker.settings.account;
    let index = shard_index(&shard, &stream, account)?;
    let at = parse_hash_key(&key_text).ok_or_else(|| {
        ApiError::constraint(
            &key_text,
            "newStartingHashKey",
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        )
    })?;
    apply(
        broker,
        &stream,
        |record, now| reshard::split(record, index, at, now),
        false,
    )
    .await?;
    Ok(no_output())
}

pub(super) async fn merge_shards(broker: &Arc<Broker>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let input: MergeShardsInput = json::decode(body)?;
    let first = required(input.shard_to_merge, "shardToMerge")?;
    let second = required(input.adjacent_shard_to_merge, "adjacentShardToMerge")?;
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let account = &broker.settings.account;
    let (a, b) = (
        shard_index(&first, &stream, account)?,
        shard_index(&second, &stream, account)?,
    );
    apply(
        broker,
        &stream,
        |record, now| reshard::merge(record, a, b, now),
        false,
    )
    .await?;
    Ok(no_output())
}

pub(super) async fn update_shard_count(
    broker: &Arc<Broker>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let input: UpdateShardCountInput = json::decode(body)?;
    let target = required(input.target_shard_count, "targetShardCount")?;
    let scaling = required(input.scaling_type, "scalingType")?;
    if scaling != "UNIFORM_SCALING" {
        return Err(ApiError::constraint(
            &scaling,
            "scalingType",
            "Member must satisfy enum value set: [UNIFORM_SCALING]",
        ));
    }
    if !(1..=i64::from(i32::MAX)).contains(&target) {
        return Err(ApiError::constraint(
            &target.to_string(),
            "targetShardCount",
            "Member must have value greater than or equal to 1",
        ));
    }
    let stream = broker.resolve(
        input.stream.stream_name.as_deref(),
        input.stream.stream_arn.as_deref(),
    )?;
    let current = stream.record.open_shard_count();
    let ceiling = broker.settings.shard_limit.min(10_000);
    apply(
        broker,
        &stream,
        |record, now| reshard::uniform_scaling(record, target as u32, ceiling, now),
        true,
    )
    .await?;
    Ok(json::encode(&json!({
        "StreamName": stream.record.name,
        "StreamARN": stream.arn,
        "CurrentShardCount": current,
        "TargetShardCount": target,
    })))
}

/// Scales a stream's open shards to `target` with uniform scaling, outside Kinesis's
/// ten-per-day limit (the ON_DEMAND autoscaler's path).
pub async fn scale_to(broker: &Arc<Broker>, name: &str, target: u32) -> Result<(), ApiError> {
    let stream = broker.resolve(Some(name), None)?;
    let ceiling = broker.settings.shard_limit;
    apply(
        broker,
        &stream,
        |record, now| reshard::uniform_scaling(record, target, ceiling, now),
        false,
    )
    .await?;
    Ok(())
}
