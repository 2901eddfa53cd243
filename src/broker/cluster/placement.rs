//! Shard placement: which pod of a stream's StatefulSet owns each shard. One pure function
//! decides it; an existing shard never moves (its log lives on its owner's volume), new
//! shards go to the least loaded pods.

use std::collections::HashMap;

use crate::broker::catalog::Catalog;

/// How loaded one pod is, as placement weighs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLoad {
    /// The pod's StatefulSet ordinal.
    pub ordinal: u32,
    /// Open shards it owns, over every stream.
    pub open_shards: u32,
    /// Records per second written to its shards, as last measured (0 when unknown).
    pub write_rate: f64,
}

/// The load of pods `0..pods` in `catalog`: open shards per owner, and each pod's measured
/// write rate from `rates` (by ordinal). Shards owned by a pod at or beyond `pods` count for
/// no pod (they are on a pod that is leaving).
pub fn loads(catalog: &Catalog, pods: u32, rates: &HashMap<u32, f64>) -> Vec<PodLoad> {
    let mut open = vec![0u32; pods as usize];
    for stream in catalog.streams.values() {
        for shard in stream
            .shards
            .iter()
            .filter(|s| s.closed_at_offset.is_none())
        {
            if let Some(count) = open.get_mut(shard.owner as usize) {
                *count += 1;
            }
        }
    }
    (0..pods)
        .map(|ordinal| PodLoad {
            ordinal,
            open_shards: open[ordinal as usize],
            write_rate: rates.get(&ordinal).copied().unwrap_or(0.0),
        })
        .collect()
}

/// Owners for `count` new shards, in order: each goes to the pod with the fewest open shards,
/// then the lowest measured write rate, then the lowest ordinal, counting the shards placed
/// before it. `closing` are owners of shards this same change closes (a reshard's parents),
/// whose load drops by one each. No pods, no owners: every shard goes to pod 0.
pub fn place(count: usize, loads: &[PodLoad], closing: &[u32]) -> Vec<u32> {
    if loads.is_empty() {
        return vec![0; count];
    }
    let mut loads = loads.to_vec();
    for owner in closing {
        if let Some(load) = loads.iter_mut().find(|l| l.ordinal == *owner) {
            load.open_shards = load.open_shards.saturating_sub(1);
        }
    }
    (0..count)
        .map(|_| {
            let chosen = loads
                .iter_mut()
                .min_by(|a, b| {
                    a.open_shards
                        .cmp(&b.open_shards)
                        .then(a.write_rate.total_cmp(&b.write_rate))
                        .then(a.ordinal.cmp(&b.ordinal))
                })
                .expect("loads is not empty");
            chosen.open_shards += 1;
            chosen.ordinal
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::catalog::StreamRecord;

    fn load(ordinal: u32, open_shards: u32, write_rate: f64) -> PodLoad {
        PodLoad {
            ordinal,
            open_shards,
            write_rate,
        }
    }

    /// A case: its name, shards to place, the pods' loads, owners of closing parents, and the
    /// owners expected.
    type Case = (&'static str, usize, Vec<PodLoad>, Vec<u32>, Vec<u32>);

    #[test]
    fn cluster_new_shards_go_round_the_least_loaded_pods() {
        let cases: Vec<Case> = vec![
            (
                "a new stream over three empty pods",
                4,
                vec![load(0, 0, 0.0), load(1, 0, 0.0), load(2, 0, 0.0)],
                vec![],
                vec![0, 1, 2, 0],
            ),
            (
                "fewest open shards first",
                2,
                vec![load(0, 3, 0.0), load(1, 1, 0.0), load(2, 2, 0.0)],
                vec![],
                vec![1, 1],
            ),
            (
                "a tie on shards goes to the pod written to least",
                1,
                vec![load(0, 1, 900.0), load(1, 1, 10.0), load(2, 1, 500.0)],
                vec![],
                vec![1],
            ),
            (
                "a split's children: the parent's pod loses the parent",
                2,
                vec![load(0, 2, 0.0), load(1, 1, 0.0)],
                vec![0],
                vec![0, 1],
            ),
            (
                "one pod takes everything",
                3,
                vec![load(0, 5, 0.0)],
                vec![],
                vec![0, 0, 0],
            ),
            ("no pods known", 2, vec![], vec![], vec![0, 0]),
        ];
        for (name, count, loads, closing, expected) in cases {
            assert_eq!(place(count, &loads, &closing), expected, "{name}");
        }
    }

    #[test]
    fn cluster_loads_count_open_shards_per_owner_and_ignore_leaving_pods() {
        let mut catalog = Catalog::default();
        let mut orders = StreamRecord::new("orders".into(), 0, 4, 0);
        for (shard, owner) in orders.shards.iter_mut().zip([0, 1, 1, 3]) {
            shard.owner = owner;
        }
        orders.shards[1].closed_at_offset = Some(10);
        catalog.streams.insert("orders".into(), orders);
        let rates = HashMap::from([(1, 42.0)]);
        assert_eq!(
            loads(&catalog, 3, &rates),
            vec![load(0, 1, 0.0), load(1, 1, 42.0), load(2, 0, 0.0)]
        );
    }
}
