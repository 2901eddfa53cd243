//! The Stream controller's part in changing the number of broker pods (`docs/cluster.md`):
//! it tells pod 0 how many pods take new shards, then takes the step
//! [`broker_pods::next_step`] decides: split a shard off a leaving pod, merge the two
//! children back, wait for retention or copy the closed shards off (`shrinkPolicy: Drain`),
//! or shrink the StatefulSet.

use kube::{Resource, ResourceExt};

use super::broker_pods::{self, PodsStep};
use super::context::Context;
use super::kinesis::{AdminError, BrokerAdmin};
use super::status::StreamPhase;
use crate::api::{ShrinkPolicy, Stream};
use crate::broker::routing::shard_id;

/// The Stream's reason while the leaving pods' closed shards wait out retention.
pub const WAITING_FOR_RETENTION: &str = "WaitingForRetention";
/// The Stream's reason while the leaving pods' closed shards are copied off.
pub const DRAINING: &str = "DrainingShards";

/// The StatefulSet's pods as the reconcile found them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerPods {
    /// Pods the StatefulSet runs (its `spec.replicas`).
    pub current: i32,
    /// Pods ready.
    pub ready: i32,
}

/// What the pods step asks of the rest of the reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodsOutcome {
    /// Nothing to do about the pods: go on with the stream's own changes.
    Proceed,
    /// The stream's own changes may go on; once there are none, the Stream reports this wait
    /// (its reason, its message) instead of serving as declared.
    Waiting(&'static str, String),
    /// A reshard was started to move a shard off a leaving pod: the stream is changing.
    Resharding(StreamPhase),
    /// Nothing readable is left on the leaving pods: shrink the StatefulSet to this many.
    Shrink(i32),
}

/// The number of broker pods the Stream declares.
pub fn declared_pods(stream: &Stream) -> u32 {
    u32::try_from(stream.spec.brokers.replicas.max(1)).unwrap_or(1)
}

/// Makes pod 0 place new shards on the pods the Stream declares (before the stream is created
/// too, so its first shards are spread).
pub async fn place_on_declared_pods(
    stream: &Stream,
    admin: &BrokerAdmin,
    placed_on: Option<u32>,
) -> Result<(), AdminError> {
    let declared = declared_pods(stream);
    if placed_on != Some(declared) {
        admin.set_placement_pods(declared).await?;
    }
    Ok(())
}

/// Why the last copy of shard `index` failed, if it did.
fn last_move_failure(shards: &[broker_pods::ShardView], index: u32) -> Option<String> {
    shards
        .iter()
        .find(|s| s.index == index)
        .and_then(|s| s.move_failure.clone())
}

/// One step towards the declared number of broker pods.
pub async fn step(
    ctx: &Context,
    stream: &Stream,
    admin: &BrokerAdmin,
    pods: BrokerPods,
) -> Result<PodsOutcome, AdminError> {
    let name = stream.name_any();
    let placement = admin.describe_placement(&name).await?;
    place_on_declared_pods(stream, admin, Some(placement.pods)).await?;
    let current = u32::try_from(pods.current.max(0)).unwrap_or(0);
    let next = broker_pods::next_step(
        current,
        declared_pods(stream),
        &placement.shards,
        placement.retention_ms,
        placement.now_ms,
        stream.spec.brokers.shrink_policy == ShrinkPolicy::Drain,
    );
    let message = broker_pods::describe(&next);
    let reference = stream.object_ref(&());
    match next {
        PodsStep::Steady | PodsStep::Grow(_) => Ok(PodsOutcome::Proceed),
        PodsStep::WaitForRetention(_) => Ok(PodsOutcome::Waiting(WAITING_FOR_RETENTION, message)),
        PodsStep::WaitForCopy(..) => Ok(PodsOutcome::Waiting(DRAINING, message)),
        PodsStep::WaitToCopyAgain(index, _) => {
            let failure = last_move_failure(&placement.shards, index).unwrap_or_default();
            Ok(PodsOutcome::Waiting(
                DRAINING,
                format!("{message} (the last copy failed: {failure})"),
            ))
        }
        PodsStep::MoveClosedShard(index) => {
            let id = shard_id(index);
            let failure = last_move_failure(&placement.shards, index);
            let to = admin.move_closed_shard(&name, &id).await?;
            let mut note = format!(
                "copying closed shard {index} off a broker pod that is leaving, to broker pod {to}"
            );
            if let Some(failure) = failure {
                note.push_str(&format!(" (again: the last copy failed: {failure})"));
            }
            ctx.event(
                &reference,
                false,
                "DrainingShard",
                "MoveClosedShard",
                note.clone(),
            )
            .await;
            Ok(PodsOutcome::Waiting(DRAINING, note))
        }
        PodsStep::Shrink(pods) => {
            ctx.event(
                &reference,
                false,
                "ShrinkingBrokers",
                "Scale",
                format!("no readable shard is left on the leaving broker pods: {message}"),
            )
            .await;
            Ok(PodsOutcome::Shrink(i32::try_from(pods).unwrap_or(1)))
        }
        PodsStep::MoveShard(index) => {
            let id = shard_id(index);
            let open = admin.open_shards(&name).await?;
            let Some(shard) = open.iter().find(|s| s.shard_id == id) else {
                // Closed meanwhile: the next reconcile decides again.
                return Ok(PodsOutcome::Resharding(changing(message)));
            };
            let Some(at) = midpoint(shard.starting_hash_key, shard.ending_hash_key) else {
                return Ok(PodsOutcome::Waiting(
                    WAITING_FOR_RETENTION,
                    format!(
                        "shard {id} covers a single hash key and cannot be moved off its leaving pod"
                    ),
                ));
            };
            admin.split_shard(&name, &id, at).await?;
            ctx.event(
                &reference,
                false,
                "MovingShard",
                "SplitShard",
                message.clone(),
            )
            .await;
            Ok(PodsOutcome::Resharding(changing(message)))
        }
        PodsStep::MergeSiblings(first, second) => {
            admin
                .merge_shards(&name, &shard_id(first), &shard_id(second))
                .await?;
            ctx.event(
                &reference,
                false,
                "MovingShard",
                "MergeShards",
                message.clone(),
            )
            .await;
            Ok(PodsOutcome::Resharding(changing(message)))
        }
    }
}

fn changing(message: String) -> StreamPhase {
    StreamPhase::Changing {
        reason: "ShrinkingBrokers",
        message,
    }
}

/// The key that splits `start..=end` in two halves, when it holds more than one key.
pub fn midpoint(start: u128, end: u128) -> Option<u128> {
    (end > start).then(|| start + (end - start).div_ceil(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_a_moved_shard_is_split_in_two_halves() {
        assert_eq!(midpoint(0, u128::MAX), Some(1u128 << 127));
        assert_eq!(midpoint(10, 11), Some(11));
        assert_eq!(midpoint(10, 13), Some(12));
        assert_eq!(midpoint(7, 7), None);
    }
}
