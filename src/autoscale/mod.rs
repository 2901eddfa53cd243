//! The shard autoscaling decision, pure: from a history of a stream's write demand (and, when
//! known, each open shard's) to the open shard count it should have and how to get there. One
//! place for it, used by a standalone broker's ON_DEMAND streams, by the operator's
//! autoscaler, and by `brook autoscale simulate`.
//!
//! Like the Kubernetes HPA's behaviour settings:
//! - Utilization is the larger of bytes and records against the per-shard write quotas, and
//!   a sample with throttled writes counts as over 100 %: demand the quotas refused is demand.
//! - Each sample recommends `ceil(current × utilization / target)` shards (the same as the
//!   shards its demand needs at the target), or `current` within the tolerance band.
//! - Scale-up is fast: the smallest recommendation of the scale-up window (by default only the
//!   latest sample); a throttled sample recommends at least double.
//! - Scale-down waits: the largest recommendation of the whole scale-down window, which the
//!   history must cover, and no throttled sample in it.
//! - One step moves between half and double the current count, as UpdateShardCount allows,
//!   within the min and max bounds.
//! - The history holds demand, not utilization, so the windows hold across a rescale.
//! - Missing or stale metrics never scale down, and say so.
//! - One shard far hotter than the rest is split (at the middle of its hash range) instead of
//!   doubling the stream; scaling down by one merges the coldest adjacent pair.

pub mod queries;
pub mod simulate;
#[cfg(test)]
mod tests;

/// A measured write demand of a whole stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// When it was measured, epoch milliseconds.
    pub at_ms: u64,
    /// Bytes per second written (or attempted).
    pub bytes_per_second: f64,
    /// Records per second written (or attempted).
    pub records_per_second: f64,
    /// Writes per second the quotas refused (records of PutRecords, requests of PutRecord).
    pub throttled_per_second: f64,
}

impl Observation {
    /// A sample of `records_per_second` records of `bytes_per_second`, nothing throttled.
    pub fn new(at_ms: u64, bytes_per_second: f64, records_per_second: f64) -> Self {
        Self {
            at_ms,
            bytes_per_second,
            records_per_second,
            throttled_per_second: 0.0,
        }
    }

    fn throttled(&self) -> bool {
        self.throttled_per_second > 0.0
    }
}

/// One open shard's measured write demand.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLoad {
    /// Its id, such as `shardId-000000000003`.
    pub shard_id: String,
    /// First hash key it owns.
    pub starting_hash_key: u128,
    /// Last hash key it owns.
    pub ending_hash_key: u128,
    /// The shard it was split or merged from, when it has one.
    pub parent_shard_id: Option<String>,
    /// Bytes per second written to it.
    pub bytes_per_second: f64,
    /// Records per second written to it.
    pub records_per_second: f64,
    /// Writes per second its quota refused.
    pub throttled_per_second: f64,
}

/// What the autoscaler aims for and within which bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingPolicy {
    /// Fewest open shards.
    pub min_shards: u32,
    /// Most open shards.
    pub max_shards: u32,
    /// Share of each shard's write quota to fill, in percent.
    pub target_utilization_percent: u32,
    /// How long demand must hold before adding shards (0: the latest sample decides).
    pub scale_up_window_ms: u64,
    /// How long demand must stay low before removing shards.
    pub scale_down_window_ms: u64,
    /// One shard's write quota, bytes per second.
    pub shard_bytes_per_second: f64,
    /// One shard's write quota, records per second.
    pub shard_records_per_second: f64,
    /// Distance from the target within which nothing changes, in percent of the target.
    pub tolerance_percent: u32,
    /// A latest sample older than this is stale: nothing is scaled down on it.
    pub max_sample_age_ms: u64,
    /// How far back each sample's rate looks (the PromQL `rate` window): a throttled sample
    /// whose window began before the last rescale measured the old shards.
    pub rate_window_ms: u64,
}

impl ScalingPolicy {
    /// The defaults of the operator's autoscaler, for shards of the given write quotas.
    pub fn with_quotas(shard_bytes_per_second: f64, shard_records_per_second: f64) -> Self {
        Self {
            min_shards: 1,
            max_shards: 64,
            target_utilization_percent: 70,
            scale_up_window_ms: 0,
            scale_down_window_ms: 300_000,
            shard_bytes_per_second,
            shard_records_per_second,
            tolerance_percent: 10,
            max_sample_age_ms: 120_000,
            rate_window_ms: 60_000,
        }
    }

    fn target(&self) -> f64 {
        f64::from(self.target_utilization_percent.clamp(1, 100)) / 100.0
    }

    fn tolerance(&self) -> f64 {
        f64::from(self.tolerance_percent.min(100)) / 100.0
    }
}

/// How the shard count changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resize {
    /// Nothing to do.
    Hold,
    /// UpdateShardCount to this many open shards (uniform scaling).
    ShardCount(u32),
    /// SplitShard of one hot shard.
    Split {
        /// The shard to split.
        shard_id: String,
        /// Where its second child starts.
        new_starting_hash_key: u128,
    },
    /// MergeShards of two adjacent cold shards.
    Merge {
        /// The lower one.
        shard_id: String,
        /// The one right above it.
        adjacent_shard_id: String,
    },
}

/// The decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Open shards wanted.
    pub desired_shards: u32,
    /// The latest demand as a share of the current shards' quotas, in percent.
    pub utilization_percent: u32,
    /// How to get from the current count to `desired_shards`.
    pub resize: Resize,
    /// For humans: what drove the decision.
    pub reason: String,
    /// Why the metrics cannot be trusted (missing or stale), when they cannot.
    pub problem: Option<String>,
}

/// The share of `shards` shards' quotas that `observation` demands (throttled writes included,
/// as records, with their share of the bytes).
fn utilization(observation: &Observation, shards: u32, policy: &ScalingPolicy) -> f64 {
    let shards = f64::from(shards.max(1));
    let records = observation.records_per_second + observation.throttled_per_second;
    let bytes_per_record = if observation.records_per_second > 0.0 {
        observation.bytes_per_second / observation.records_per_second
    } else {
        0.0
    };
    let bytes = observation.bytes_per_second + observation.throttled_per_second * bytes_per_record;
    let used = (bytes / (shards * policy.shard_bytes_per_second))
        .max(records / (shards * policy.shard_records_per_second));
    if observation.throttled() {
        // The quota refused writes: demand is over capacity, whatever got measured.
        used.max(1.0 + f64::EPSILON)
    } else {
        used
    }
}

/// Shards needed to carry one observation at the target utilization.
pub fn shards_for(observation: &Observation, policy: &ScalingPolicy) -> u32 {
    let needed = utilization(observation, 1, policy) / policy.target();
    needed.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
}

/// What the decision starts from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Open shards now.
    pub current: u32,
    /// The stream's demand, oldest first or in any order.
    pub history: &'a [Observation],
    /// The open shards' latest loads, when known (empty otherwise).
    pub shards: &'a [ShardLoad],
    /// When the shard count last changed, epoch milliseconds.
    pub last_scale_ms: Option<u64>,
    /// Now, epoch milliseconds.
    pub now_ms: u64,
}

/// What one sample recommends for a stream of `current` shards: `current` within the
/// tolerance band; at least double when the current shards were throttled.
fn recommend(observation: &Observation, inputs: &Inputs<'_>, policy: &ScalingPolicy) -> u32 {
    let current = inputs.current;
    let ratio = utilization(observation, current, policy) / policy.target();
    if observation.throttled() {
        let measured_current_shards = inputs
            .last_scale_ms
            .is_none_or(|scaled| observation.at_ms >= scaled.saturating_add(policy.rate_window_ms));
        let floor = if measured_current_shards {
            current.saturating_mul(2)
        } else {
            current
        };
        return shards_for(observation, policy).max(floor);
    }
    if (ratio - 1.0).abs() <= policy.tolerance() {
        return current;
    }
    shards_for(observation, policy)
}

/// Whether the observations reach back over the whole `window` before `now_ms`: a stream
/// measured for less time than its scale-down window is never scaled down.
fn covers(history: &[Observation], window_ms: u64, now_ms: u64) -> bool {
    history
        .iter()
        .any(|o| o.at_ms.saturating_add(window_ms) <= now_ms)
}

/// `n` moved by one UpdateShardCount at most (half to double of `current`), within bounds.
fn bounded(n: u32, current: u32, policy: &ScalingPolicy) -> u32 {
    let (lowest, highest) = (current.div_ceil(2).max(1), current.saturating_mul(2));
    n.clamp(lowest, highest)
        .clamp(policy.min_shards, policy.max_shards.max(policy.min_shards))
}

fn shard_utilization(shard: &ShardLoad, policy: &ScalingPolicy) -> f64 {
    utilization(
        &Observation {
            at_ms: 0,
            bytes_per_second: shard.bytes_per_second,
            records_per_second: shard.records_per_second,
            throttled_per_second: shard.throttled_per_second,
        },
        1,
        policy,
    )
}

/// What the per-shard loads say about a hot shard.
enum HotShard<'a> {
    /// None carries far more than its share.
    None,
    /// This one does, and splitting it spreads its keys.
    Split(&'a ShardLoad),
    /// This one does, but its sibling from the last split is cold: its demand is one or a few
    /// partition keys, which no split spreads.
    HotKey(&'a ShardLoad),
}

/// A shard carrying more than twice the mean and more than the target (or throttled).
fn hot_shard<'a>(shards: &'a [ShardLoad], policy: &ScalingPolicy) -> HotShard<'a> {
    if shards.len() < 2 {
        return HotShard::None;
    }
    let loads: Vec<f64> = shards
        .iter()
        .map(|s| shard_utilization(s, policy))
        .collect();
    let mean = loads.iter().sum::<f64>() / loads.len() as f64;
    let Some((index, hottest)) = loads
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return HotShard::None;
    };
    let hot = &shards[index];
    if hottest <= policy.target() * (1.0 + policy.tolerance())
        || hottest <= 2.0 * mean
        || hot.ending_hash_key <= hot.starting_hash_key
    {
        return HotShard::None;
    }
    let cold_sibling = hot.parent_shard_id.as_ref().is_some_and(|parent| {
        shards.iter().enumerate().any(|(i, s)| {
            i != index && s.parent_shard_id.as_ref() == Some(parent) && loads[i] < hottest / 10.0
        })
    });
    if cold_sibling {
        HotShard::HotKey(hot)
    } else {
        HotShard::Split(hot)
    }
}

/// The adjacent pair of open shards with the least demand together, if merging them keeps the
/// merged shard under the target.
fn coldest_pair<'a>(
    shards: &'a [ShardLoad],
    policy: &ScalingPolicy,
) -> Option<(&'a ShardLoad, &'a ShardLoad)> {
    let mut sorted: Vec<&ShardLoad> = shards.iter().collect();
    sorted.sort_by_key(|s| s.starting_hash_key);
    sorted
        .windows(2)
        .filter(|pair| pair[0].ending_hash_key.checked_add(1) == Some(pair[1].starting_hash_key))
        .map(|pair| {
            let load = shard_utilization(pair[0], policy) + shard_utilization(pair[1], policy);
            (pair[0], pair[1], load)
        })
        .filter(|(_, _, load)| *load < policy.target() * (1.0 - policy.tolerance()))
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(a, b, _)| (a, b))
}

/// UpdateShardCount to `desired`, or nothing when that is the `current` count.
fn count_change(desired: u32, current: u32) -> Resize {
    if desired == current {
        Resize::Hold
    } else {
        Resize::ShardCount(desired)
    }
}

fn percent(utilization: f64) -> u32 {
    (utilization * 100.0)
        .round()
        .clamp(0.0, f64::from(u32::MAX)) as u32
}

/// Decides the open shard count of a stream from its demand history and, when known, its
/// open shards' latest loads.
pub fn decide(inputs: &Inputs<'_>, policy: &ScalingPolicy) -> Decision {
    let inputs = Inputs {
        current: inputs.current.max(1),
        ..*inputs
    };
    let Inputs {
        current,
        history,
        shards,
        now_ms,
        ..
    } = inputs;
    let within_bounds = bounded(current, current, policy);
    let hold = |reason: String, utilization_percent: u32, problem: Option<String>| Decision {
        desired_shards: within_bounds,
        utilization_percent,
        resize: count_change(within_bounds, current),
        reason,
        problem,
    };
    let Some(latest) = history.iter().max_by_key(|o| o.at_ms) else {
        let problem = "no throughput measured yet".to_owned();
        return hold(problem.clone(), 0, Some(problem));
    };
    let utilization_percent = percent(utilization(latest, current, policy));
    let age_ms = now_ms.saturating_sub(latest.at_ms);
    if age_ms > policy.max_sample_age_ms {
        let problem = format!(
            "the latest throughput is {} s old: metrics are stale, the shard count holds",
            age_ms / 1000
        );
        return hold(problem.clone(), utilization_percent, Some(problem));
    }

    let within = |window: u64| {
        history
            .iter()
            .filter(move |o| o.at_ms.saturating_add(window) >= latest.at_ms)
    };
    let up = within(policy.scale_up_window_ms)
        .map(|o| recommend(o, &inputs, policy))
        .min()
        .unwrap_or(current);
    let down_window: Vec<&Observation> = within(policy.scale_down_window_ms).collect();
    let down = down_window
        .iter()
        .map(|o| recommend(o, &inputs, policy))
        .max()
        .unwrap_or(current);
    let quiet = !down_window.iter().any(|o| o.throttled());

    // The whole stream fits its shards: a throttled shard is a hot one, split rather than
    // doubling every shard.
    let fits = shards_for(latest, policy) <= current;
    match hot_shard(shards, policy) {
        HotShard::Split(hot) if fits && current < policy.max_shards => {
            let middle =
                hot.starting_hash_key + (hot.ending_hash_key - hot.starting_hash_key) / 2 + 1;
            return Decision {
                desired_shards: current + 1,
                utilization_percent,
                resize: Resize::Split {
                    shard_id: hot.shard_id.clone(),
                    new_starting_hash_key: middle,
                },
                reason: format!(
                    "shard {} carries {}% of its quota, over twice the mean: it is split",
                    hot.shard_id,
                    percent(shard_utilization(hot, policy))
                ),
                problem: None,
            };
        }
        HotShard::HotKey(hot) if fits => {
            return hold(
                format!(
                    "shard {} carries {}% of its quota but its sibling is cold: a hot partition key, which more shards do not spread",
                    hot.shard_id,
                    percent(shard_utilization(hot, policy))
                ),
                utilization_percent,
                None,
            );
        }
        _ => {}
    }
    if up > current {
        let desired = bounded(up, current, policy);
        let why = if latest.throttled() {
            "writes are throttled".to_owned()
        } else {
            format!("utilization is {utilization_percent}%")
        };
        return Decision {
            desired_shards: desired,
            utilization_percent,
            resize: count_change(desired, current),
            reason: format!(
                "{why}: demand needs {up} shards at {}% (one step goes to {desired})",
                policy.target_utilization_percent
            ),
            problem: None,
        };
    }
    if down < current && quiet && covers(history, policy.scale_down_window_ms, now_ms) {
        let desired = bounded(down, current, policy);
        let resize = match coldest_pair(shards, policy) {
            Some((lower, upper)) if desired + 1 == current => Resize::Merge {
                shard_id: lower.shard_id.clone(),
                adjacent_shard_id: upper.shard_id.clone(),
            },
            _ => count_change(desired, current),
        };
        return Decision {
            desired_shards: desired,
            utilization_percent,
            resize,
            reason: format!(
                "demand has needed at most {down} shards for the whole scale-down window of {} s",
                policy.scale_down_window_ms / 1000
            ),
            problem: None,
        };
    }
    hold(
        format!(
            "{current} shards carry the demand within {}% of the {}% target",
            policy.tolerance_percent, policy.target_utilization_percent
        ),
        utilization_percent,
        None,
    )
}
