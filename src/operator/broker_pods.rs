//! How the number of broker pods of a Stream whose shards are spread over its pods may change
//! (`docs/cluster.md`), decided by one pure function. Growing is immediate: new pods take the
//! next shards placed. Shrinking must not strand a shard: first no open shard may remain on a
//! leaving pod (each is split, its two children placed on the pods that stay, and the
//! children merged again, so the shard count is kept; one shard at a time), then the leaving
//! pods' closed shards must be past retention (nothing readable is left on them), and only
//! then does the StatefulSet shrink.

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
    /// Nothing readable is left on the leaving pods: shrink the StatefulSet to this many.
    Shrink(u32),
}

/// The next step from `current` to `wanted` pods, given the stream's `shards`, its retention
/// and the time now.
pub fn next_step(
    current: u32,
    wanted: u32,
    shards: &[ShardView],
    retention_ms: u64,
    now_ms: u64,
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
                next_step(current, wanted, &shards, retention, now),
                expected,
                "{name}"
            );
        }
        assert_eq!(
            describe(&PodsStep::MoveShard(2)),
            "resharding shard 2 off a broker pod that is leaving"
        );
    }
}
