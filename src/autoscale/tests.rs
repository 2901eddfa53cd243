//! The decision against table cases (`cargo test autoscal` runs them).

use super::*;

/// The decision for `current` shards with no rescale on record.
fn decide(
    current: u32,
    history: &[Observation],
    shards: &[ShardLoad],
    policy: &ScalingPolicy,
    now_ms: u64,
) -> Decision {
    super::decide(
        &Inputs {
            current,
            history,
            shards,
            last_scale_ms: None,
            now_ms,
        },
        policy,
    )
}

const MIB: f64 = 1_048_576.0;

fn policy() -> ScalingPolicy {
    ScalingPolicy::with_quotas(MIB, 1000.0)
}

/// A sample of `records_per_second` 100-byte records at second `at_s`.
fn load(at_s: u64, records_per_second: f64) -> Observation {
    Observation::new(at_s * 1000, records_per_second * 100.0, records_per_second)
}

fn throttled(at_s: u64, records_per_second: f64, refused: f64) -> Observation {
    Observation {
        throttled_per_second: refused,
        ..load(at_s, records_per_second)
    }
}

/// Samples every 30 s from `from_s` to `to_s` (inclusive) of `rate(t)`.
fn series(from_s: u64, to_s: u64, rate: impl Fn(u64) -> f64) -> Vec<Observation> {
    (from_s..=to_s)
        .step_by(30)
        .map(|t| load(t, rate(t)))
        .collect()
}

/// Shard `index` of `of` equal, adjacent hash ranges.
fn shard(index: u32, of: u32, records_per_second: f64) -> ShardLoad {
    let width = u128::MAX / u128::from(of);
    ShardLoad {
        shard_id: format!("shardId-{index:012}"),
        starting_hash_key: if index == 0 {
            0
        } else {
            width * u128::from(index) + 1
        },
        ending_hash_key: if index + 1 == of {
            u128::MAX
        } else {
            width * u128::from(index + 1)
        },
        parent_shard_id: None,
        bytes_per_second: records_per_second * 100.0,
        records_per_second,
        throttled_per_second: 0.0,
    }
}

#[test]
fn autoscaling_holds_a_steady_load_at_the_target() {
    let history = series(0, 600, |_| 2800.0);
    let decision = decide(4, &history, &[], &policy(), 600_000);
    assert_eq!(decision.desired_shards, 4, "{}", decision.reason);
    assert_eq!(decision.resize, Resize::Hold);
    assert_eq!(decision.utilization_percent, 70);
    assert_eq!(decision.problem, None);
}

#[test]
fn autoscaling_a_step_up_scales_on_the_first_sample_and_at_most_doubles() {
    // 2800/s on 4 shards, then 4x.
    let mut history = series(0, 600, |_| 2800.0);
    history.push(load(630, 11_200.0));
    let decision = decide(4, &history, &[], &policy(), 630_000);
    assert_eq!(
        decision.resize,
        Resize::ShardCount(8),
        "16 needed, one step doubles: {}",
        decision.reason
    );
    // The next period, with 8 shards, reaches the 16 the demand needs.
    history.push(load(660, 11_200.0));
    assert_eq!(
        decide(8, &history, &[], &policy(), 660_000).desired_shards,
        16
    );
}

#[test]
fn autoscaling_throttled_writes_count_as_over_full_and_double_at_least() {
    // What got in looks like 95 % of 4 shards, but the quota refused more.
    let history = [throttled(0, 3800.0, 50.0)];
    let decision = decide(4, &history, &[], &policy(), 0);
    assert_eq!(decision.desired_shards, 8, "{}", decision.reason);
    assert!(decision.reason.contains("throttled"), "{}", decision.reason);
    assert!(decision.utilization_percent >= 100);
}

#[test]
fn autoscaling_a_step_down_waits_for_the_whole_window_then_halves_at_most() {
    let mut history = series(0, 600, |_| 5600.0);
    history.extend(series(630, 1200, |_| 350.0));
    // 8 shards; quiet since 630 s: the 300 s window is quiet from 930 s on.
    assert_eq!(
        decide(8, &history[..=30], &[], &policy(), 900_000).desired_shards,
        8,
        "the window still holds the busy samples"
    );
    let decision = decide(8, &history, &[], &policy(), 1_200_000);
    assert_eq!(
        decision.desired_shards, 4,
        "1 shard is enough, half is one step: {}",
        decision.reason
    );
}

#[test]
fn autoscaling_ignores_spikes_shorter_than_the_scale_up_window() {
    let patient = ScalingPolicy {
        scale_up_window_ms: 60_000,
        ..policy()
    };
    let mut history = series(0, 600, |_| 1400.0);
    history.push(load(630, 6000.0));
    assert_eq!(
        decide(2, &history, &[], &patient, 630_000).desired_shards,
        2,
        "one sample of a spike is less than the 60 s window"
    );
    // And a spike does not shorten the scale-down window either.
    let mut history = series(0, 600, |_| 350.0);
    history[15] = load(450, 2800.0);
    assert_eq!(
        decide(4, &history, &[], &policy(), 600_000).desired_shards,
        4,
        "a spike 150 s ago keeps the shards it needed"
    );
}

#[test]
fn autoscaling_does_not_flap_on_noisy_load_around_the_target() {
    // +-8 % around 70 % of 6 shards, as a noisy steady producer gives.
    let noise = |t: u64| 4200.0 * (1.0 + 0.08 * ((t as f64) * 0.37).sin());
    let history = series(0, 3600, noise);
    let mut changes = 0;
    let mut shards = 6;
    for end in (300..=3600).step_by(30) {
        let seen: Vec<Observation> = history
            .iter()
            .copied()
            .filter(|o| o.at_ms <= end * 1000)
            .collect();
        let decision = decide(shards, &seen, &[], &policy(), end * 1000);
        if decision.desired_shards != shards {
            changes += 1;
            shards = decision.desired_shards;
        }
    }
    assert_eq!(
        changes, 0,
        "noise within the tolerance band changes nothing"
    );
}

#[test]
fn autoscaling_never_scales_down_without_metrics_and_says_why() {
    let decision = decide(8, &[], &[], &policy(), 600_000);
    assert_eq!(decision.desired_shards, 8);
    assert_eq!(decision.resize, Resize::Hold);
    assert_eq!(
        decision.problem.as_deref(),
        Some("no throughput measured yet")
    );
}

#[test]
fn autoscaling_never_scales_down_on_a_stale_scrape() {
    // Quiet for 10 minutes, then Prometheus stopped answering 5 minutes ago.
    let history = series(0, 600, |_| 100.0);
    let decision = decide(8, &history, &[], &policy(), 900_000);
    assert_eq!(decision.desired_shards, 8, "{}", decision.reason);
    let problem = decision.problem.expect("stale is reported");
    assert!(problem.contains("300 s old"), "{problem}");
}

#[test]
fn autoscaling_splits_one_hot_shard_instead_of_doubling_the_stream() {
    // Four shards: one at 150 % of its quota (throttled), the others at 10 %.
    let mut shards: Vec<ShardLoad> = (0..4).map(|i| shard(i, 4, 100.0)).collect();
    shards[2].records_per_second = 1000.0;
    shards[2].bytes_per_second = 100_000.0;
    shards[2].throttled_per_second = 500.0;
    let history = [throttled(0, 1300.0, 500.0)];
    let decision = decide(4, &history, &shards, &policy(), 0);
    let middle = shards[2].starting_hash_key
        + (shards[2].ending_hash_key - shards[2].starting_hash_key) / 2
        + 1;
    assert_eq!(
        decision.resize,
        Resize::Split {
            shard_id: "shardId-000000000002".to_owned(),
            new_starting_hash_key: middle
        },
        "{}",
        decision.reason
    );
    assert_eq!(decision.desired_shards, 5);

    // The split's children: one still hot, its sibling cold. One key is hot; more shards would
    // not spread it, so nothing more is split.
    let mut children: Vec<ShardLoad> = shards.clone();
    let mut low = shards[2].clone();
    low.shard_id = "shardId-000000000004".into();
    low.ending_hash_key = middle - 1;
    low.parent_shard_id = Some("shardId-000000000002".into());
    low.records_per_second = 1000.0;
    low.throttled_per_second = 500.0;
    let mut high = low.clone();
    high.shard_id = "shardId-000000000005".into();
    high.starting_hash_key = middle;
    high.ending_hash_key = shards[2].ending_hash_key;
    high.records_per_second = 5.0;
    high.bytes_per_second = 500.0;
    high.throttled_per_second = 0.0;
    children.remove(2);
    children.extend([low, high]);
    let decision = decide(5, &history, &children, &policy(), 0);
    assert_eq!(decision.desired_shards, 5, "{}", decision.reason);
    assert!(
        decision.reason.contains("hot partition key"),
        "{}",
        decision.reason
    );
}

#[test]
fn autoscaling_merges_the_coldest_adjacent_pair_when_one_shard_less_will_do() {
    let mut history = series(0, 600, |_| 2000.0);
    history.push(load(630, 2000.0));
    let mut shards: Vec<ShardLoad> = (0..4).map(|i| shard(i, 4, 600.0)).collect();
    shards[0].records_per_second = 300.0;
    shards[1].records_per_second = 200.0;
    shards[2].records_per_second = 900.0;
    let decision = decide(4, &history, &shards, &policy(), 630_000);
    assert_eq!(decision.desired_shards, 3, "{}", decision.reason);
    assert_eq!(
        decision.resize,
        Resize::Merge {
            shard_id: "shardId-000000000000".into(),
            adjacent_shard_id: "shardId-000000000001".into()
        }
    );
}

#[test]
fn autoscaling_keeps_within_bounds() {
    let bounded = ScalingPolicy {
        min_shards: 3,
        max_shards: 5,
        ..policy()
    };
    let quiet = series(0, 600, |_| 0.0);
    assert_eq!(decide(4, &quiet, &[], &bounded, 600_000).desired_shards, 3);
    let busy = [load(0, 100_000.0)];
    assert_eq!(decide(4, &busy, &[], &bounded, 0).desired_shards, 5);
    // Out of bounds without metrics: the bounds still apply, as the user set them.
    assert_eq!(
        decide(1, &[], &[], &bounded, 0).resize,
        Resize::ShardCount(3)
    );
    let heavy = Observation::new(0, 4.0 * MIB, 10.0);
    assert_eq!(
        shards_for(&heavy, &policy()),
        6,
        "4 MiB/s at 70% of 1 MiB/s"
    );
    let decision = decide(4, &[heavy], &[], &policy(), 0);
    assert_eq!(decision.utilization_percent, 100);
    assert!(decision.reason.contains("6 shards"), "{}", decision.reason);
}

#[test]
fn autoscaling_windows_hold_across_a_rescale() {
    // Busy until 600 s, scaled up to 8 at 600 s, quiet after. The history is demand, so the
    // scale-down window still counts from the last busy sample, not from the rescale.
    let mut history = series(0, 600, |_| 5600.0);
    history.extend(series(630, 840, |_| 350.0));
    let decision = decide(8, &history, &[], &policy(), 840_000);
    assert_eq!(
        decision.desired_shards, 8,
        "600 s was busy: 240 s of quiet is not the window"
    );
    history.extend(series(870, 930, |_| 350.0));
    assert_eq!(
        decide(8, &history, &[], &policy(), 930_000).desired_shards,
        4,
        "300 s after the last busy sample"
    );
}

#[test]
fn autoscaling_never_scales_down_a_stream_measured_for_less_than_its_window() {
    // A new stream, or one whose history was lost: quiet for 20 s only.
    let history = [load(280, 0.0), load(300, 0.0)];
    assert_eq!(
        decide(8, &history, &[], &policy(), 300_000).desired_shards,
        8
    );
    // Scaling up needs no such wait.
    assert_eq!(
        decide(2, &[load(300, 5000.0)], &[], &policy(), 300_000).desired_shards,
        4
    );
}

#[test]
fn autoscaling_does_not_double_again_on_throttling_the_last_rescale_already_answered() {
    // Doubled to 8 at 600 s; the sample at 630 s still averages throttled seconds from before.
    let history = [throttled(630, 7000.0, 1000.0)];
    let inputs = Inputs {
        current: 8,
        history: &history,
        shards: &[],
        last_scale_ms: Some(600_000),
        now_ms: 630_000,
    };
    let decision = super::decide(&inputs, &policy());
    assert_eq!(
        decision.desired_shards, 12,
        "8000/s needs 12 at 70%; no blind doubling: {}",
        decision.reason
    );
    // Throttled again once the window only saw the 8 shards: double.
    let history = [throttled(700, 7900.0, 100.0)];
    let later = Inputs {
        history: &history,
        now_ms: 700_000,
        ..inputs
    };
    assert_eq!(super::decide(&later, &policy()).desired_shards, 16);
}
