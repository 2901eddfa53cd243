//! The shard autoscaling decision, pure: from a history of a stream's write rate to the open
//! shard count it should have. One place for it, used by a standalone broker's ON_DEMAND
//! streams and by the operator's autoscaler.
//!
//! Like the Kubernetes HPA: a scale-up needs the demand to hold for the whole scale-up
//! window (the smallest recommendation in it wins), a scale-down needs the demand to stay low
//! for the whole scale-down window (the largest recommendation wins), and one step moves at
//! most between half and double the current count, as UpdateShardCount allows.

/// A measured write rate of a whole stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// When it was measured, epoch milliseconds.
    pub at_ms: u64,
    /// Bytes per second written (or attempted).
    pub bytes_per_second: f64,
    /// Records per second written (or attempted).
    pub records_per_second: f64,
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
    /// How long demand must hold before adding shards.
    pub scale_up_window_ms: u64,
    /// How long demand must stay low before removing shards.
    pub scale_down_window_ms: u64,
    /// One shard's write quota, bytes per second.
    pub shard_bytes_per_second: f64,
    /// One shard's write quota, records per second.
    pub shard_records_per_second: f64,
}

/// The decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Open shards wanted.
    pub desired_shards: u32,
    /// The latest demand as a share of the current shards' quotas, in percent.
    pub utilization_percent: u32,
    /// For humans: what drove the decision.
    pub reason: String,
}

/// Shards needed to carry one observation at the target utilization.
pub fn shards_for(observation: &Observation, policy: &ScalingPolicy) -> u32 {
    let target = f64::from(policy.target_utilization_percent.clamp(1, 100)) / 100.0;
    let by_bytes = observation.bytes_per_second / (policy.shard_bytes_per_second * target);
    let by_records = observation.records_per_second / (policy.shard_records_per_second * target);
    by_bytes.max(by_records).ceil().max(1.0) as u32
}

/// Whether the observations reach back over the whole `window` before `now_ms`: a stream
/// measured for less time than its scale-down window is never scaled down.
fn covers(history: &[Observation], window_ms: u64, now_ms: u64) -> bool {
    history
        .iter()
        .any(|o| o.at_ms.saturating_add(window_ms) <= now_ms)
}

/// Decides the open shard count for a stream that has `current` open shards.
pub fn decide(
    current: u32,
    history: &[Observation],
    policy: &ScalingPolicy,
    now_ms: u64,
) -> Decision {
    let current = current.max(1);
    let Some(latest) = history.iter().max_by_key(|o| o.at_ms) else {
        return Decision {
            desired_shards: current.clamp(policy.min_shards, policy.max_shards),
            utilization_percent: 0,
            reason: "no throughput measured yet".into(),
        };
    };
    let capacity_bytes = f64::from(current) * policy.shard_bytes_per_second;
    let capacity_records = f64::from(current) * policy.shard_records_per_second;
    let utilization = (latest.bytes_per_second / capacity_bytes)
        .max(latest.records_per_second / capacity_records)
        * 100.0;
    let utilization_percent = utilization.round().min(f64::from(u32::MAX)) as u32;
    let within = |window: u64| history.iter().filter(move |o| o.at_ms + window >= now_ms);
    let up = within(policy.scale_up_window_ms)
        .map(|o| shards_for(o, policy))
        .min()
        .unwrap_or(current);
    let down = within(policy.scale_down_window_ms)
        .map(|o| shards_for(o, policy))
        .max()
        .unwrap_or(current);
    let (lowest, highest) = (current.div_ceil(2).max(1), current.saturating_mul(2));
    let bounded = |n: u32| {
        n.clamp(lowest, highest)
            .clamp(policy.min_shards, policy.max_shards.max(policy.min_shards))
    };
    let (desired_shards, reason) = if up > current {
        (
            bounded(up),
            format!(
                "write demand needs {up} shards at {}% utilization",
                policy.target_utilization_percent
            ),
        )
    } else if down < current && covers(history, policy.scale_down_window_ms, now_ms) {
        (
            bounded(down),
            format!(
                "write demand has needed at most {down} shards for the whole scale-down window"
            ),
        )
    } else {
        (
            bounded(current),
            format!("{current} shards carry the demand at {utilization_percent}% utilization"),
        )
    };
    Decision {
        desired_shards,
        utilization_percent,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ScalingPolicy {
        ScalingPolicy {
            min_shards: 1,
            max_shards: 64,
            target_utilization_percent: 70,
            scale_up_window_ms: 60_000,
            scale_down_window_ms: 300_000,
            shard_bytes_per_second: 1_048_576.0,
            shard_records_per_second: 1000.0,
        }
    }

    fn load(at_ms: u64, records_per_second: f64) -> Observation {
        Observation {
            at_ms,
            bytes_per_second: records_per_second * 100.0,
            records_per_second,
        }
    }

    #[test]
    fn sustained_demand_adds_shards_up_to_double() {
        let history: Vec<_> = (0..7).map(|i| load(i * 10_000, 5000.0)).collect();
        let decision = decide(4, &history, &policy(), 60_000);
        assert_eq!(
            decision.desired_shards, 8,
            "5000/s needs 8 shards at 70%, and double of 4 is 8"
        );
        let decision = decide(2, &history, &policy(), 60_000);
        assert_eq!(
            decision.desired_shards, 4,
            "never more than double in one step"
        );
    }

    #[test]
    fn a_short_spike_does_not_add_shards() {
        let mut history: Vec<_> = (0..6).map(|i| load(i * 10_000, 1000.0)).collect();
        history.push(load(60_000, 9000.0));
        assert_eq!(decide(2, &history, &policy(), 60_000).desired_shards, 2);
    }

    #[test]
    fn shards_go_only_after_the_whole_scale_down_window_is_quiet() {
        let mut history: Vec<_> = (0..30).map(|i| load(i * 10_000, 100.0)).collect();
        assert_eq!(
            decide(8, &history, &policy(), 290_000).desired_shards,
            8,
            "290 s of quiet is less than the 300 s window"
        );
        assert_eq!(
            decide(8, &history, &policy(), 300_000).desired_shards,
            4,
            "half at most per step"
        );
        history.push(load(295_000, 6000.0));
        assert_eq!(
            decide(8, &history, &policy(), 300_000).desired_shards,
            8,
            "recent demand keeps them"
        );
    }

    #[test]
    fn bounds_hold_and_bytes_count_as_much_as_records() {
        let bounded = ScalingPolicy {
            min_shards: 3,
            max_shards: 5,
            ..policy()
        };
        assert_eq!(
            decide(4, &[load(0, 0.0)], &bounded, 300_000).desired_shards,
            3
        );
        assert_eq!(
            decide(4, &[load(0, 100_000.0)], &bounded, 0).desired_shards,
            5
        );
        let heavy = Observation {
            at_ms: 0,
            bytes_per_second: 4.0 * 1_048_576.0,
            records_per_second: 10.0,
        };
        assert_eq!(
            shards_for(&heavy, &policy()),
            6,
            "4 MiB/s at 70% of 1 MiB/s per shard"
        );
        let decision = decide(4, &[heavy], &policy(), 0);
        assert_eq!(decision.utilization_percent, 100);
        assert!(decision.reason.contains("6 shards"), "{}", decision.reason);
    }

    #[test]
    fn hardening_one_quiet_sample_never_scales_down_a_stream_measured_for_less_than_its_window() {
        // A new stream, or one just rescaled whose history was lost: quiet for 20 s only.
        let history = [load(280_000, 0.0), load(300_000, 0.0)];
        let decision = decide(8, &history, &policy(), 300_000);
        assert_eq!(decision.desired_shards, 8, "{}", decision.reason);
        // Scaling up needs no such wait.
        assert_eq!(
            decide(2, &[load(300_000, 5000.0)], &policy(), 300_000).desired_shards,
            4
        );
    }

    #[test]
    fn without_measurements_the_count_stays_within_bounds() {
        let decision = decide(100, &[], &policy(), 0);
        assert_eq!(decision.desired_shards, 64);
        assert_eq!(decision.reason, "no throughput measured yet");
    }
}
