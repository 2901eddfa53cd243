//! Resharding as pure plans over a stream's record: split one shard, merge two adjacent ones,
//! or scale uniformly to a new count through a sequence of splits and merges, as Kinesis does,
//! so every child names at most a parent and an adjacent parent.
//!
//! A plan says which shards to add and which to close; the caller applies it to the store
//! and persists the record. Offsets at which parents close are filled in by the caller.

use super::catalog::{ShardRecord, StreamRecord};
use super::routing::{HashRange, even_hash_ranges};

/// Why a reshard is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReshardError {
    /// The shard does not exist.
    #[error("shard {0} does not exist")]
    NoSuchShard(u32),
    /// The shard is closed already.
    #[error("shard {0} is closed")]
    Closed(u32),
    /// The split point is outside the shard's range.
    #[error(
        "NewStartingHashKey {key} is not within the hash key range of shard {shard} ({start} to {end})"
    )]
    SplitOutsideRange {
        /// The shard.
        shard: u32,
        /// The requested key.
        key: u128,
        /// The shard's first key.
        start: u128,
        /// The shard's last key.
        end: u128,
    },
    /// The two shards do not touch.
    #[error("shards {0} and {1} are not adjacent")]
    NotAdjacent(u32, u32),
    /// A uniform scaling target beyond what one call may do.
    #[error("target shard count {target} is outside {min}..={max} for {current} open shards")]
    TargetOutOfBounds {
        /// The requested count.
        target: u32,
        /// Open shards now.
        current: u32,
        /// Fewest allowed.
        min: u32,
        /// Most allowed.
        max: u32,
    },
}

/// What applying a reshard takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The stream's record after the reshard (parents marked closed at `now`, offsets unset).
    pub record: StreamRecord,
    /// New shards, in creation order.
    pub added: Vec<u32>,
    /// Shards that close, in the order they close.
    pub closed: Vec<u32>,
}

struct Builder {
    record: StreamRecord,
    added: Vec<u32>,
    closed: Vec<u32>,
    now_ms: u64,
}

impl Builder {
    fn new(record: &StreamRecord, now_ms: u64) -> Self {
        Self {
            record: record.clone(),
            added: Vec::new(),
            closed: Vec::new(),
            now_ms,
        }
    }

    fn open_shard(&self, index: u32) -> Result<&ShardRecord, ReshardError> {
        let shard = self
            .record
            .shards
            .iter()
            .find(|s| s.index == index)
            .ok_or(ReshardError::NoSuchShard(index))?;
        if shard.closed_ms.is_some() {
            return Err(ReshardError::Closed(index));
        }
        Ok(shard)
    }

    fn close(&mut self, index: u32) {
        if let Some(shard) = self.record.shards.iter_mut().find(|s| s.index == index) {
            shard.closed_ms = Some(self.now_ms);
        }
        self.closed.push(index);
    }

    fn add(&mut self, range: HashRange, parent: u32, adjacent_parent: Option<u32>) -> u32 {
        let index = self
            .record
            .shards
            .iter()
            .map(|s| s.index + 1)
            .max()
            .unwrap_or(0);
        self.record.shards.push(ShardRecord {
            index,
            hash_range: range,
            parent: Some(parent),
            adjacent_parent,
            created_ms: self.now_ms,
            closed_at_offset: None,
            closed_ms: None,
            expired: false,
            owner: 0,
            closing_epoch: None,
            moved_from: Vec::new(),
            moving_to: None,
        });
        self.added.push(index);
        index
    }

    fn split(&mut self, index: u32, at: u128) -> Result<(u32, u32), ReshardError> {
        let range = self.open_shard(index)?.hash_range;
        if at <= range.start || at > range.end {
            return Err(ReshardError::SplitOutsideRange {
                shard: index,
                key: at,
                start: range.start,
                end: range.end,
            });
        }
        self.close(index);
        let low = self.add(
            HashRange {
                start: range.start,
                end: at - 1,
            },
            index,
            None,
        );
        let high = self.add(
            HashRange {
                start: at,
                end: range.end,
            },
            index,
            None,
        );
        Ok((low, high))
    }

    fn merge(&mut self, index: u32, adjacent: u32) -> Result<u32, ReshardError> {
        let a = self.open_shard(index)?.hash_range;
        let b = self.open_shard(adjacent)?.hash_range;
        let range = if a.end.checked_add(1) == Some(b.start) {
            HashRange {
                start: a.start,
                end: b.end,
            }
        } else if b.end.checked_add(1) == Some(a.start) {
            HashRange {
                start: b.start,
                end: a.end,
            }
        } else {
            return Err(ReshardError::NotAdjacent(index, adjacent));
        };
        self.close(index);
        self.close(adjacent);
        Ok(self.add(range, index, Some(adjacent)))
    }

    fn finish(self) -> Plan {
        Plan {
            record: self.record,
            added: self.added,
            closed: self.closed,
        }
    }
}

/// SplitShard: `index` closes; one child takes the keys below `at`, the other the rest.
pub fn split(
    record: &StreamRecord,
    index: u32,
    at: u128,
    now_ms: u64,
) -> Result<Plan, ReshardError> {
    let mut builder = Builder::new(record, now_ms);
    builder.split(index, at)?;
    Ok(builder.finish())
}

/// MergeShards: two adjacent open shards close into one child.
pub fn merge(
    record: &StreamRecord,
    index: u32,
    adjacent: u32,
    now_ms: u64,
) -> Result<Plan, ReshardError> {
    let mut builder = Builder::new(record, now_ms);
    builder.merge(index, adjacent)?;
    Ok(builder.finish())
}

/// The bounds Kinesis puts on one UpdateShardCount call: half to double the open shards.
pub fn uniform_scaling_bounds(open: u32, shard_ceiling: u32) -> (u32, u32) {
    (
        open.div_ceil(2).max(1),
        open.saturating_mul(2).min(shard_ceiling),
    )
}

/// UpdateShardCount with UNIFORM_SCALING: splits every open shard at each boundary of the
/// target's even ranges that falls inside it, then merges the pieces of each target range.
pub fn uniform_scaling(
    record: &StreamRecord,
    target: u32,
    shard_ceiling: u32,
    now_ms: u64,
) -> Result<Plan, ReshardError> {
    let mut open: Vec<(u32, HashRange)> = record
        .shards
        .iter()
        .filter(|s| s.closed_ms.is_none())
        .map(|s| (s.index, s.hash_range))
        .collect();
    open.sort_by_key(|(_, range)| range.start);
    let current = open.len() as u32;
    let (min, max) = uniform_scaling_bounds(current, shard_ceiling);
    if target < min || target > max {
        return Err(ReshardError::TargetOutOfBounds {
            target,
            current,
            min,
            max,
        });
    }
    let goal = even_hash_ranges(target);
    let mut builder = Builder::new(record, now_ms);
    let mut pieces: Vec<(u32, HashRange)> = Vec::new();
    for (index, range) in open {
        let mut current = (index, range);
        for boundary in goal
            .iter()
            .map(|g| g.start)
            .filter(|&b| b > range.start && b <= range.end)
        {
            let (low, high) = builder.split(current.0, boundary)?;
            pieces.push((
                low,
                HashRange {
                    start: current.1.start,
                    end: boundary - 1,
                },
            ));
            current = (
                high,
                HashRange {
                    start: boundary,
                    end: current.1.end,
                },
            );
        }
        pieces.push(current);
    }
    for target_range in &goal {
        let mut members = pieces
            .iter()
            .filter(|(_, r)| target_range.start <= r.start && r.end <= target_range.end)
            .map(|(index, _)| *index);
        let Some(mut merged) = members.next() else {
            continue;
        };
        for next in members {
            merged = builder.merge(merged, next)?;
        }
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(shards: u32) -> StreamRecord {
        StreamRecord::new("s".into(), 1, shards, 0)
    }

    fn open_ranges(record: &StreamRecord) -> Vec<HashRange> {
        let mut ranges: Vec<HashRange> = record
            .shards
            .iter()
            .filter(|s| s.closed_ms.is_none())
            .map(|s| s.hash_range)
            .collect();
        ranges.sort_by_key(|r| r.start);
        ranges
    }

    #[test]
    fn a_split_closes_the_parent_and_divides_its_range_at_the_key() {
        let plan = split(&stream(1), 0, 1000, 7).expect("split");
        assert_eq!(plan.closed, [0]);
        assert_eq!(plan.added, [1, 2]);
        assert_eq!(
            open_ranges(&plan.record),
            [
                HashRange { start: 0, end: 999 },
                HashRange {
                    start: 1000,
                    end: u128::MAX
                }
            ]
        );
        assert!(
            plan.record.shards[1..]
                .iter()
                .all(|s| s.parent == Some(0) && s.adjacent_parent.is_none())
        );
        assert_eq!(plan.record.shards[0].closed_ms, Some(7));
    }

    #[test]
    fn a_split_outside_the_range_or_of_a_closed_shard_is_refused() {
        assert!(matches!(
            split(&stream(2), 0, 0, 0),
            Err(ReshardError::SplitOutsideRange { .. })
        ));
        let beyond = even_hash_ranges(2)[1].start;
        assert!(matches!(
            split(&stream(2), 0, beyond, 0),
            Err(ReshardError::SplitOutsideRange { .. })
        ));
        let once = split(&stream(1), 0, 5, 0).expect("split").record;
        assert_eq!(split(&once, 0, 9, 0), Err(ReshardError::Closed(0)));
        assert_eq!(split(&once, 9, 9, 0), Err(ReshardError::NoSuchShard(9)));
    }

    #[test]
    fn a_merge_joins_adjacent_shards_in_either_order() {
        let plan = merge(&stream(3), 2, 1, 0).expect("merge");
        assert_eq!(plan.closed, [2, 1]);
        let child = &plan.record.shards[3];
        assert_eq!((child.parent, child.adjacent_parent), (Some(2), Some(1)));
        assert_eq!(child.hash_range.start, even_hash_ranges(3)[1].start);
        assert_eq!(child.hash_range.end, u128::MAX);
        assert_eq!(
            merge(&stream(3), 0, 2, 0),
            Err(ReshardError::NotAdjacent(0, 2))
        );
    }

    #[test]
    fn uniform_scaling_reaches_even_ranges_with_valid_lineage() {
        for (from, to) in [
            (1, 2),
            (2, 4),
            (4, 2),
            (3, 5),
            (5, 3),
            (4, 7),
            (7, 4),
            (6, 6),
            (10, 20),
            (20, 10),
        ] {
            let plan = uniform_scaling(&stream(from), to, 10_000, 0).expect("scaling");
            assert_eq!(
                open_ranges(&plan.record),
                even_hash_ranges(to),
                "{from} -> {to}"
            );
            for shard in &plan.record.shards {
                for parent in [shard.parent, shard.adjacent_parent].into_iter().flatten() {
                    let parent = plan
                        .record
                        .shards
                        .iter()
                        .find(|s| s.index == parent)
                        .expect("parent exists");
                    assert!(
                        parent.closed_ms.is_some(),
                        "{from} -> {to}: parents are closed"
                    );
                }
            }
            if from == to {
                assert!(plan.added.is_empty() && plan.closed.is_empty());
            }
        }
    }

    #[test]
    fn uniform_scaling_is_bounded_to_half_and_double() {
        assert!(matches!(
            uniform_scaling(&stream(4), 9, 10_000, 0),
            Err(ReshardError::TargetOutOfBounds { .. })
        ));
        assert!(matches!(
            uniform_scaling(&stream(4), 1, 10_000, 0),
            Err(ReshardError::TargetOutOfBounds { .. })
        ));
        assert!(matches!(
            uniform_scaling(&stream(4), 8, 6, 0),
            Err(ReshardError::TargetOutOfBounds { .. })
        ));
        assert_eq!(uniform_scaling_bounds(3, 100), (2, 6));
    }
}
