//! How the number of broker pods of a Stream whose shards are spread over its pods may change
//! (`docs/cluster.md`), decided by one pure function. Growing is immediate: new pods take the
//! next shards placed. Shrinking must not strand a shard: first no open shard may remain on a
//! leaving pod (each is split, its two children placed on the pods that stay, and the
//! children merged again, so the shard count is kept; one shard at a time), then the leaving
//! pods' closed shards must be past retention (nothing readable is left on them) or, when the
//! Stream asks to drain them, copied to the pods that stay (one at a time), and only then does
//! the StatefulSet shrink.

/// One shard as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    /// The shard's index.
    pub index: u32,
    /// The pod whose volume holds it.
    pub owner: u32,
    /// When it closed (epoch milliseconds); open while `None`.
    pub closed_ms: Option<u64>,
    /// The shard it was split or merged from.
    pub parent: Option<u32>,
    /// Whether it came from a merge (it has a second parent).
    pub merged: bool,
    /// Closed past retention: no longer readable.
    pub expired: bool,
    /// The pod a copy of it is under way to (a drained closed shard).
    pub moving_to: Option<u32>,
    /// Why the last copy of it failed.
    pub move_failure: Option<String>,
    /// After a failed copy: when it is worth asking again (epoch milliseconds).
    pub move_retry_at_ms: Option<u64>,
}

/// The next step towards `wanted` pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodsStep {
    /// The StatefulSet has the pods wanted.
    Steady,
    /// Grow the StatefulSet to this many pods.
    Grow(u32),
    /// Split this open shard, which lives on a leaving pod: its children go to pods that
    /// stay. One shard at a time, each reshard observed before the next.
    MoveShard(u32),
    /// Merge these two open shards, the children of a split that moved their parent off a
    /// leaving pod, so the stream keeps its shard count.
    MergeSiblings(u32, u32),
    /// Every open shard is on a pod that stays; the leaving pods still hold closed shards that
    /// are readable until this time (epoch milliseconds), when their retention ends.
    WaitForRetention(u64),
    /// Draining: copy this readable closed shard off its leaving pod to a pod that stays.
    MoveClosedShard(u32),
    /// Draining: wait for the copy of this closed shard to this pod.
    WaitForCopy(u32, u32),
    /// Draining: every closed shard left to copy failed its last copy; ask again for this
    /// one at this time (epoch milliseconds), not before.
    WaitToCopyAgain(u32, u64),
    /// Nothing readable is left on the leaving pods: shrink the StatefulSet to this many.
    Shrink(u32),
}

/// The next step from `current` to `wanted` pods, given the stream's `shards`, its retention
/// and the time now; with `drain`, the leaving pods' readable closed shards are copied off
/// instead of waited out.
pub fn next_step(
    current: u32,
    wanted: u32,
    shards: &[ShardView],
    retention_ms: u64,
    now_ms: u64,
    drain: bool,
) -> PodsStep {
    let wanted = wanted.max(1);
    if wanted > current {
        return PodsStep::Grow(wanted);
    }
    if wanted == current {
        return PodsStep::Steady;
    }
    let leaving = |shard: &&ShardView| shard.owner >= wanted;
    if let Some(pair) = moved_siblings(shards, wanted) {
        return PodsStep::MergeSiblings(pair.0, pair.1);
    }
    if let Some(open) = shards
        .iter()
        .filter(leaving)
        .filter(|s| s.closed_ms.is_none())
        .map(|s| s.index)
        .min()
    {
        return PodsStep::MoveShard(open);
    }
    let readable = |shard: &&ShardView| {
        !shard.expired
            && shard
                .closed_ms
                .is_some_and(|closed| closed + retention_ms > now_ms)
    };
    if drain {
        let to_copy = shards.iter().filter(leaving).filter(readable);
        if let Some((index, to)) = to_copy
            .clone()
            .find_map(|s| s.moving_to.map(|to| (s.index, to)))
        {
            return PodsStep::WaitForCopy(index, to);
        }
        let due = |shard: &&ShardView| shard.move_retry_at_ms.is_none_or(|at| at <= now_ms);
        if let Some(shard) = to_copy.clone().filter(due).min_by_key(|s| s.index) {
            return PodsStep::MoveClosedShard(shard.index);
        }
        if let Some((index, at)) = to_copy
            .filter_map(|s| s.move_retry_at_ms.map(|at| (s.index, at)))
            .min_by_key(|&(index, at)| (at, index))
        {
            return PodsStep::WaitToCopyAgain(index, at);
        }
    }
    let readable_until = shards
        .iter()
        .filter(leaving)
        .filter(|s| !s.expired)
        .filter_map(|s| s.closed_ms)
        .map(|closed| closed + retention_ms)
        .max();
    match readable_until {
        Some(until) if until > now_ms => PodsStep::WaitForRetention(until),
        _ => PodsStep::Shrink(wanted),
    }
}

/// Two open shards split from one parent on a leaving pod (`wanted` and beyond), neither
/// merged since: a move half done.
fn moved_siblings(shards: &[ShardView], wanted: u32) -> Option<(u32, u32)> {
    let on_leaving_pod = |index: u32| {
        shards
            .iter()
            .any(|s| s.index == index && s.owner >= wanted && s.closed_ms.is_some())
    };
    let children: Vec<&ShardView> = shards
        .iter()
        .filter(|s| s.closed_ms.is_none() && !s.merged)
        .filter(|s| s.parent.is_some_and(on_leaving_pod))
        .collect();
    children.iter().find_map(|first| {
        children
            .iter()
            .find(|second| second.index != first.index && second.parent == first.parent)
            .map(|second| (first.index.min(second.index), first.index.max(second.index)))
    })
}

/// What `kubectl get streams` and the Stream's status say of a step, for humans.
pub fn describe(step: &PodsStep) -> String {
    match step {
        PodsStep::Steady => "broker pods as wanted".to_owned(),
        PodsStep::Grow(pods) => format!("growing to {pods} broker pods"),
        PodsStep::MoveShard(shard) => {
            format!("resharding shard {shard} off a broker pod that is leaving")
        }
        PodsStep::MergeSiblings(first, second) => {
            format!("merging shards {first} and {second}, moved off a broker pod that is leaving")
        }
        PodsStep::WaitForRetention(until) => format!(
            "waiting until the leaving broker pods' closed shards pass retention (at {until} ms since the epoch)"
        ),
        PodsStep::MoveClosedShard(shard) => {
            format!("copying closed shard {shard} off a broker pod that is leaving")
        }
        PodsStep::WaitForCopy(shard, to) => format!(
            "copying closed shard {shard} off a broker pod that is leaving, to broker pod {to}"
        ),
        PodsStep::WaitToCopyAgain(shard, at) => format!(
            "copying closed shard {shard} off a broker pod that is leaving failed; asking again at {at} ms since the epoch"
        ),
        PodsStep::Shrink(pods) => format!("shrinking to {pods} broker pods"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, owner: u32, closed_ms: Option<u64>) -> ShardView {
        ShardView {
            index,
            owner,
            closed_ms,
            parent: None,
            merged: false,
            expired: false,
            moving_to: None,
            move_failure: None,
            move_retry_at_ms: None,
        }
    }

    fn child(index: u32, owner: u32, parent: u32) -> ShardView {
        ShardView {
            parent: Some(parent),
            ..shard(index, owner, None)
        }
    }

    /// A case: its name, current and wanted pods, the shards, the step expected.
    type Case = (&'static str, u32, u32, Vec<ShardView>, PodsStep);

    #[test]
    fn cluster_broker_pods_shrink_only_once_nothing_readable_is_left_on_the_leaving_ones() {
        const HOUR: u64 = 3_600_000;
        let retention = 24 * HOUR;
        let now = 100 * HOUR;
        let spread = vec![shard(0, 0, None), shard(1, 1, None), shard(2, 2, None)];
        let cases: Vec<Case> = vec![
            ("as wanted", 3, 3, spread.clone(), PodsStep::Steady),
            (
                "growing is immediate",
                3,
                5,
                spread.clone(),
                PodsStep::Grow(5),
            ),
            (
                "an open shard on a leaving pod is moved first",
                3,
                2,
                spread.clone(),
                PodsStep::MoveShard(2),
            ),
            (
                "the lowest open shard on any leaving pod, one at a time",
                3,
                1,
                spread.clone(),
                PodsStep::MoveShard(1),
            ),
            (
                "a parent closed an hour ago keeps the pod until its retention ends",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    shard(1, 1, None),
                    shard(2, 2, Some(now - HOUR)),
                    shard(3, 0, None),
                    shard(4, 1, None),
                ],
                PodsStep::WaitForRetention(now - HOUR + retention),
            ),
            (
                "closed past retention: shrink",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    shard(1, 1, None),
                    shard(2, 2, Some(now - retention - 1)),
                ],
                PodsStep::Shrink(2),
            ),
            (
                "the latest of several closed shards decides",
                4,
                2,
                vec![
                    shard(0, 0, None),
                    shard(1, 2, Some(now - 2 * HOUR)),
                    shard(2, 3, Some(now - HOUR)),
                ],
                PodsStep::WaitForRetention(now - HOUR + retention),
            ),
            (
                "a moved shard's two children are merged back before anything else",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    shard(1, 1, None),
                    shard(2, 2, Some(now)),
                    shard(3, 2, None),
                    child(4, 0, 2),
                    child(5, 1, 2),
                ],
                PodsStep::MergeSiblings(4, 5),
            ),
            (
                "children of a split on a pod that stays are left alone",
                3,
                2,
                vec![
                    shard(0, 0, Some(now)),
                    child(1, 1, 0),
                    child(2, 0, 0),
                    shard(3, 2, None),
                ],
                PodsStep::MoveShard(3),
            ),
            (
                "the merge of the moved children is not merged again",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    shard(2, 2, Some(now)),
                    ShardView {
                        closed_ms: Some(now),
                        ..child(4, 0, 2)
                    },
                    ShardView {
                        closed_ms: Some(now),
                        ..child(5, 1, 2)
                    },
                    ShardView {
                        merged: true,
                        ..child(6, 1, 4)
                    },
                ],
                PodsStep::WaitForRetention(now + retention),
            ),
            (
                "a closed shard the broker has expired no longer holds the pod",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    ShardView {
                        expired: true,
                        ..shard(2, 2, Some(now - HOUR))
                    },
                ],
                PodsStep::Shrink(2),
            ),
            (
                "at least one pod stays",
                2,
                0,
                vec![shard(0, 0, None)],
                PodsStep::Shrink(1),
            ),
        ];
        for (name, current, wanted, shards, expected) in cases {
            assert_eq!(
                next_step(current, wanted, &shards, retention, now, false),
                expected,
                "{name}"
            );
        }
        assert_eq!(
            describe(&PodsStep::MoveShard(2)),
            "resharding shard 2 off a broker pod that is leaving"
        );
    }

    #[test]
    fn cluster_broker_pods_drained_copy_each_readable_closed_shard_off_the_leaving_pods_one_at_a_time()
     {
        const HOUR: u64 = 3_600_000;
        let retention = 24 * HOUR;
        let now = 100 * HOUR;
        let moving = |index: u32, owner: u32, to: u32| ShardView {
            moving_to: Some(to),
            ..shard(index, owner, Some(now - HOUR))
        };
        let failed = |index: u32, retry_at: u64| ShardView {
            move_failure: Some("pod 1 is unreachable".into()),
            move_retry_at_ms: Some(retry_at),
            ..shard(index, 2, Some(now - HOUR))
        };
        let cases: Vec<Case> = vec![
            (
                "an open shard on a leaving pod is resharded off first",
                3,
                2,
                vec![shard(0, 0, None), shard(1, 2, Some(now)), shard(2, 2, None)],
                PodsStep::MoveShard(2),
            ),
            (
                "readable closed shards are copied, lowest first",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    shard(4, 2, Some(now - HOUR)),
                    shard(3, 2, Some(now - 2 * HOUR)),
                    shard(1, 1, Some(now)),
                ],
                PodsStep::MoveClosedShard(3),
            ),
            (
                "a copy under way is waited for before the next starts",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    shard(3, 2, Some(now - 2 * HOUR)),
                    moving(4, 2, 1),
                ],
                PodsStep::WaitForCopy(4, 1),
            ),
            (
                "a shard whose copy failed is copied again once its wait is over",
                3,
                2,
                vec![shard(0, 0, None), failed(3, now)],
                PodsStep::MoveClosedShard(3),
            ),
            (
                "not before: another shard is copied meanwhile",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    failed(3, now + 1),
                    shard(4, 2, Some(now - HOUR)),
                ],
                PodsStep::MoveClosedShard(4),
            ),
            (
                "and with none left but failed ones, the earliest retry is waited for",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    failed(3, now + 8_000),
                    failed(4, now + 2_000),
                ],
                PodsStep::WaitToCopyAgain(4, now + 2_000),
            ),
            (
                "expired shards and shards past retention are not copied",
                3,
                2,
                vec![
                    shard(0, 0, None),
                    ShardView {
                        expired: true,
                        ..shard(3, 2, Some(now - HOUR))
                    },
                    shard(4, 2, Some(now - retention - HOUR)),
                ],
                PodsStep::Shrink(2),
            ),
            (
                "closed shards on pods that stay are not copied",
                3,
                2,
                vec![shard(0, 0, None), shard(1, 1, Some(now))],
                PodsStep::Shrink(2),
            ),
            (
                "once copied (owned by a pod that stays) the pods shrink",
                3,
                1,
                vec![shard(0, 0, None), shard(3, 0, Some(now - HOUR))],
                PodsStep::Shrink(1),
            ),
        ];
        for (name, current, wanted, shards, expected) in cases {
            assert_eq!(
                next_step(current, wanted, &shards, retention, now, true),
                expected,
                "{name}"
            );
        }
        // Without draining, the same readable closed shard is waited out.
        assert_eq!(
            next_step(
                3,
                2,
                &[shard(0, 0, None), shard(3, 2, Some(now - HOUR))],
                retention,
                now,
                false
            ),
            PodsStep::WaitForRetention(now - HOUR + retention)
        );
        assert_eq!(
            describe(&PodsStep::WaitForCopy(4, 1)),
            "copying closed shard 4 off a broker pod that is leaving, to broker pod 1"
        );
    }
}
