//! One queue's delivery state and the decisions on it, without I/O.
//!
//! Every record the queue has handed out and not yet seen acknowledged is *outstanding*: in
//! flight (invisible until its visibility timeout passes), visible again, or a dead letter.
//! Records never handed out are not stored at all: per shard, a cursor marks the first
//! offset not yet handed out. So memory grows with the outstanding records only, and the
//! queue stops taking new records from the stream while [`MAX_OUTSTANDING`] are outstanding.
//!
//! Every change is a [`Change`]: the queue logs it (see [`super::log`]) and then applies it,
//! so replaying the log rebuilds the state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Most records one queue keeps outstanding (in flight, waiting for redelivery or dead
/// letters); beyond it, receives only redeliver until some are acknowledged or expire.
pub const MAX_OUTSTANDING: usize = 100_000;

/// A record of the stream: shard index and offset in it.
pub type RecordKey = (u32, u64);

/// The delivery state of an outstanding record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Times received without being acknowledged.
    pub receive_count: u32,
    /// Invisible until then (epoch milliseconds).
    pub visible_at_ms: u64,
    /// When it was first received.
    pub first_receive_ms: u64,
    /// When it arrived in the stream (retention ends its delivery).
    pub arrival_ms: u64,
    /// Which delivery: a receipt handle is valid for the delivery it came with only.
    pub generation: u32,
    /// A dead letter: received MaxReceiveCount times without acknowledgement.
    pub dead: bool,
}

/// One change of a queue's state, as the queue logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The record was received (first or again); the shard's cursor moves past it.
    Delivered(RecordKey, Delivery),
    /// The record is done with.
    Acknowledged(RecordKey),
    /// The record's visibility timeout was changed.
    Visibility(RecordKey, u64),
    /// The record became a dead letter, visible to dead-letter receives from this time.
    DeadLettered(RecordKey, u64),
    /// A dead letter went back to the queue, received zero times, visible from this time.
    Restored(RecordKey, u64),
    /// The record passed the stream's retention: it is no longer delivered.
    Expired(RecordKey),
    /// The shard's cursor moved to this offset without a delivery (records past retention).
    Cursor(u32, u64),
}

/// A queue's delivery state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Per shard, the first offset never handed out; a shard missing here starts at 0.
    pub cursors: BTreeMap<u32, u64>,
    /// Records handed out and not acknowledged.
    #[serde(with = "as_pairs")]
    pub outstanding: BTreeMap<RecordKey, Delivery>,
    /// The outstanding records by (dead, visible time): what a receive may take next.
    #[serde(skip)]
    by_visibility: BTreeSet<(bool, u64, RecordKey)>,
}

/// What a receipt handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The record.
    pub key: RecordKey,
    /// Its delivery.
    pub generation: u32,
}

/// Why a receipt handle was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptRefusal {
    /// The record was acknowledged, expired, or received again since.
    Stale,
    /// A dead letter given to a queue operation, or the other way round.
    WrongKind,
}

impl QueueState {
    /// A state whose cursors start at the given offsets.
    pub fn starting_at(cursors: BTreeMap<u32, u64>) -> Self {
        Self {
            cursors,
            ..Self::default()
        }
    }

    /// Rebuilds what is not stored (after loading a snapshot).
    pub fn reindex(&mut self) {
        self.by_visibility = self
            .outstanding
            .iter()
            .map(|(key, d)| (d.dead, d.visible_at_ms, *key))
            .collect();
    }

    /// The first offset of `shard` not yet handed out.
    pub fn cursor(&self, shard: u32) -> u64 {
        self.cursors.get(&shard).copied().unwrap_or(0)
    }

    fn remove(&mut self, key: RecordKey) -> Option<Delivery> {
        let delivery = self.outstanding.remove(&key)?;
        self.by_visibility
            .remove(&(delivery.dead, delivery.visible_at_ms, key));
        Some(delivery)
    }

    fn insert(&mut self, key: RecordKey, delivery: Delivery) {
        self.remove(key);
        self.by_visibility
            .insert((delivery.dead, delivery.visible_at_ms, key));
        self.outstanding.insert(key, delivery);
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match *change {
            Change::Delivered(key, delivery) => {
                let cursor = self.cursors.entry(key.0).or_insert(0);
                *cursor = (*cursor).max(key.1 + 1);
                self.insert(key, delivery);
            }
            Change::Acknowledged(key) | Change::Expired(key) => {
                self.remove(key);
            }
            Change::Visibility(key, visible_at_ms) => {
                if let Some(mut delivery) = self.remove(key) {
                    delivery.visible_at_ms = visible_at_ms;
                    self.insert(key, delivery);
                }
            }
            // A record changing sides takes a new generation: the receipt of its last
            // delivery is no good on either side any more.
            Change::DeadLettered(key, visible_at_ms) => {
                if let Some(mut delivery) = self.remove(key) {
                    delivery.dead = true;
                    delivery.generation = delivery.generation.wrapping_add(1);
                    delivery.visible_at_ms = visible_at_ms;
                    self.insert(key, delivery);
                }
            }
            Change::Restored(key, visible_at_ms) => {
                if let Some(mut delivery) = self.remove(key) {
                    delivery.dead = false;
                    delivery.generation = delivery.generation.wrapping_add(1);
                    delivery.receive_count = 0;
                    delivery.visible_at_ms = visible_at_ms;
                    self.insert(key, delivery);
                }
            }
            Change::Cursor(shard, offset) => {
                let cursor = self.cursors.entry(shard).or_insert(0);
                *cursor = (*cursor).max(offset);
            }
        }
    }

    /// Outstanding records at `now_ms`: in flight (invisible), visible again (waiting for a
    /// receive), and dead letters.
    pub fn counts(&self, now_ms: u64) -> (usize, usize, usize) {
        let dead = self.by_visibility.range((true, 0, (0, 0))..).count();
        let waiting = self
            .by_visibility
            .range((false, 0, (0, 0))..=(false, now_ms, (u32::MAX, u64::MAX)))
            .count();
        (self.outstanding.len() - dead - waiting, waiting, dead)
    }

    /// Whether the queue may take more new records from the stream.
    pub fn has_room(&self) -> bool {
        self.outstanding.len() < MAX_OUTSTANDING
    }

    /// The earliest time an outstanding record of the kind (`dead` or not) becomes visible.
    pub fn next_visible_ms(&self, dead: bool) -> Option<u64> {
        self.by_visibility
            .range((dead, 0, (0, 0))..=(dead, u64::MAX, (u32::MAX, u64::MAX)))
            .next()
            .map(|(_, at, _)| *at)
    }

    /// Decides what a receive at `now_ms` does with the outstanding records: those past
    /// retention (arrived before `not_before_ms`) expire; with dead-letter handling
    /// (`max_receive_count`), visible records received that many times become dead letters;
    /// then up to `limit` visible records of the asked kind are picked for redelivery.
    pub fn plan_redeliveries(
        &self,
        now_ms: u64,
        not_before_ms: u64,
        max_receive_count: Option<u32>,
        dead_letters: bool,
        limit: usize,
    ) -> (Vec<Change>, Vec<RecordKey>) {
        let mut changes = Vec::new();
        let mut picked = Vec::new();
        for kind in [false, true] {
            let visible = self
                .by_visibility
                .range((kind, 0, (0, 0))..=(kind, now_ms, (u32::MAX, u64::MAX)));
            for &(_, _, key) in visible {
                let Some(delivery) = self.outstanding.get(&key) else {
                    continue;
                };
                if delivery.arrival_ms < not_before_ms {
                    changes.push(Change::Expired(key));
                } else if !kind
                    && max_receive_count.is_some_and(|max| delivery.receive_count >= max)
                {
                    changes.push(Change::DeadLettered(key, now_ms));
                    if dead_letters && picked.len() < limit {
                        picked.push(key);
                    }
                } else if kind == dead_letters && picked.len() < limit {
                    picked.push(key);
                }
            }
        }
        (changes, picked)
    }

    /// The delivery that receives `key` at `now_ms`, invisible for `visibility_ms`, as a
    /// dead letter or not (applied as [`Change::Delivered`]); a record not outstanding yet is
    /// received for the first time (it arrived at `arrival_ms`).
    pub fn receive(
        &self,
        key: RecordKey,
        now_ms: u64,
        visibility_ms: u64,
        arrival_ms: u64,
        dead_letter: bool,
    ) -> Delivery {
        let previous = self.outstanding.get(&key);
        Delivery {
            receive_count: previous.map_or(0, |d| d.receive_count).saturating_add(1),
            visible_at_ms: now_ms.saturating_add(visibility_ms),
            first_receive_ms: previous.map_or(now_ms, |d| d.first_receive_ms),
            arrival_ms: previous.map_or(arrival_ms, |d| d.arrival_ms),
            generation: previous.map_or(0, |d| d.generation).wrapping_add(1),
            dead: dead_letter,
        }
    }

    /// The outstanding record a receipt names, if the receipt is of its current delivery
    /// and of the asked kind.
    pub fn check_receipt(
        &self,
        receipt: Receipt,
        dead_letter: bool,
    ) -> Result<&Delivery, ReceiptRefusal> {
        let delivery = self
            .outstanding
            .get(&receipt.key)
            .filter(|d| d.generation == receipt.generation)
            .ok_or(ReceiptRefusal::Stale)?;
        if delivery.dead != dead_letter {
            return Err(ReceiptRefusal::WrongKind);
        }
        Ok(delivery)
    }
}

/// The outstanding records as a list of pairs: JSON object keys must be strings.
mod as_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Delivery, RecordKey};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<RecordKey, Delivery>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<RecordKey, Delivery>, D::Error> {
        let pairs = Vec::<(RecordKey, Delivery)>::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(state: &mut QueueState, key: RecordKey, now: u64, visibility: u64) -> u32 {
        let delivery = state.receive(key, now, visibility, 1, false);
        state.apply(&Change::Delivered(key, delivery));
        state.outstanding[&key].generation
    }

    #[test]
    fn a_record_not_acknowledged_is_picked_again_once_its_timeout_passes() {
        let mut state = QueueState::default();
        received(&mut state, (0, 0), 1_000, 500);
        assert_eq!(state.cursor(0), 1);
        assert_eq!(state.plan_redeliveries(1_499, 0, None, false, 10).1, []);
        assert_eq!(
            state.plan_redeliveries(1_500, 0, None, false, 10).1,
            [(0, 0)]
        );
        assert_eq!(state.next_visible_ms(false), Some(1_500));
    }

    #[test]
    fn an_acknowledged_record_is_never_picked_and_frees_its_room() {
        let mut state = QueueState::default();
        received(&mut state, (1, 7), 0, 10);
        state.apply(&Change::Acknowledged((1, 7)));
        assert!(state.outstanding.is_empty());
        assert_eq!(state.plan_redeliveries(100, 0, None, false, 10).1, []);
        assert_eq!(state.cursor(1), 8, "the cursor stays past it");
    }

    #[test]
    fn receives_past_the_maximum_turn_a_record_into_a_dead_letter() {
        let mut state = QueueState::default();
        for round in 0..3 {
            received(&mut state, (0, 0), round * 10, 5);
        }
        let (changes, picked) = state.plan_redeliveries(100, 0, Some(3), false, 10);
        assert_eq!(changes, [Change::DeadLettered((0, 0), 100)]);
        assert_eq!(picked, [] as [RecordKey; 0]);
        for change in &changes {
            state.apply(change);
        }
        assert_eq!(
            state.plan_redeliveries(100, 0, Some(3), true, 10).1,
            [(0, 0)]
        );
        // Without dead-letter handling the record keeps coming back.
        let mut endless = QueueState::default();
        for round in 0..10 {
            received(&mut endless, (0, 0), round * 10, 5);
        }
        assert_eq!(
            endless.plan_redeliveries(200, 0, None, false, 10).1,
            [(0, 0)]
        );
    }

    #[test]
    fn a_restored_dead_letter_is_received_again_from_a_zero_count() {
        let mut state = QueueState::default();
        received(&mut state, (0, 0), 0, 5);
        state.apply(&Change::DeadLettered((0, 0), 10));
        state.apply(&Change::Restored((0, 0), 20));
        assert_eq!(state.outstanding[&(0, 0)].receive_count, 0);
        assert_eq!(
            state.plan_redeliveries(20, 0, Some(1), false, 10).1,
            [(0, 0)]
        );
    }

    #[test]
    fn records_past_retention_expire_instead_of_coming_back() {
        let mut state = QueueState::default();
        received(&mut state, (0, 0), 0, 5);
        let (changes, picked) = state.plan_redeliveries(100, 50, None, false, 10);
        assert_eq!(changes, [Change::Expired((0, 0))]);
        assert!(picked.is_empty());
    }

    #[test]
    fn a_receipt_is_good_for_its_own_delivery_and_kind_only() {
        let mut state = QueueState::default();
        let first = received(&mut state, (0, 0), 0, 5);
        let second = received(&mut state, (0, 0), 10, 5);
        let receipt = |generation| Receipt {
            key: (0, 0),
            generation,
        };
        assert_eq!(
            state.check_receipt(receipt(first), false).err(),
            Some(ReceiptRefusal::Stale)
        );
        assert!(state.check_receipt(receipt(second), false).is_ok());
        assert_eq!(
            state.check_receipt(receipt(second), true).err(),
            Some(ReceiptRefusal::WrongKind)
        );
        // Once a dead letter, and once restored, the last delivery's receipt is stale.
        state.apply(&Change::DeadLettered((0, 0), 20));
        assert_eq!(
            state.check_receipt(receipt(second), true).err(),
            Some(ReceiptRefusal::Stale)
        );
        let dead = state.outstanding[&(0, 0)].generation;
        state.apply(&Change::Restored((0, 0), 30));
        assert_eq!(
            state.check_receipt(receipt(dead), false).err(),
            Some(ReceiptRefusal::Stale)
        );
    }

    #[test]
    fn replaying_the_changes_rebuilds_the_same_state() {
        let mut state = QueueState::starting_at(BTreeMap::from([(0, 5)]));
        let mut log = Vec::new();
        for change in [
            Change::Delivered((0, 5), state.receive((0, 5), 0, 10, 1, false)),
            Change::Cursor(1, 3),
            Change::Visibility((0, 5), 3),
        ] {
            state.apply(&change);
            log.push(change);
        }
        let mut replayed = QueueState::starting_at(BTreeMap::from([(0, 5)]));
        for change in &log {
            replayed.apply(change);
        }
        assert_eq!(replayed, state);
        assert_eq!(replayed.next_visible_ms(false), Some(3));
    }
}
