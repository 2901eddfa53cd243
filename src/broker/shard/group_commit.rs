//! Group commit: the journal syncs of a store with `Fsync` durability.
//!
//! An append writes its round (journal bytes and its segments' page-cache copies) on its
//! own task, holding the writer, and queues the round here. When no sync is running, nothing
//! else is queued and no other append is under way, the append syncs its round itself once
//! it has let the writer go (a plain blocking call on its runtime worker, see `sync_here`),
//! and replies to itself: a lone write costs its sync and no thread hand-off. With other
//! appends under way, a sync there would hold a runtime worker they need (at 8 producers of
//! single records, leading whenever the pipeline was idle doubled the hand-off to the writer
//! and cost about a tenth of the records/s), so the syncer thread syncs it. Otherwise the
//! syncer thread takes every round queued so far, syncs the journal once — an `fdatasync`
//! covers every byte written before it began, so each round taken is covered — then
//! publishes the rounds to readers and replies to them, in order, and starts the next sync
//! as soon as rounds are queued again; it sleeps when none are, is woken for a round queued
//! on an idle pipeline that its append does not lead, and the end of a sync an append led
//! wakes it for the rounds queued meanwhile. So a round is written while the previous one
//! syncs, by the request itself: no thread stands between a request and the journal.
//!
//! A failed sync fails its rounds and every later one: the store takes no more writes, since
//! a retried sync can lie.
//!
//! Anything that must see every round settled (checkpoints, closing a shard, shutdown) waits
//! for the pipeline to go idle.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::fs::LogFile;
use super::log::{IndexEntry, SegmentView, ShardLog};
use super::stats::{CommitStats, Stage};
use super::writer::{AppendReply, Appended, Committed};
use super::{StoreError, fs::ReadFile};

/// What a committed round changes in one shard's readable state.
pub(super) struct PublishStep {
    pub(super) log: Arc<ShardLog>,
    /// A segment readers do not know yet: its file and path.
    pub(super) new_segment: Option<(Arc<dyn ReadFile>, std::path::PathBuf)>,
    pub(super) base_offset: u64,
    pub(super) end_offset: u64,
    pub(super) len: u64,
    pub(super) last_arrival_ms: u64,
    pub(super) index: Vec<IndexEntry>,
}

impl PublishStep {
    /// Makes the round's records in this shard visible to readers and wakes subscribers.
    pub(super) fn apply(self) {
        let mut view = self.log.view_mut();
        if let Some((file, path)) = self.new_segment {
            view.segments.push(SegmentView {
                base_offset: self.base_offset,
                end_offset: self.base_offset,
                len: 0,
                last_arrival_ms: 0,
                file,
                index: Vec::new(),
                path,
            });
        }
        if let Some(segment) = view.segments.last_mut() {
            segment.end_offset = self.end_offset;
            segment.len = self.len;
            segment.last_arrival_ms = self.last_arrival_ms;
            segment.index.extend_from_slice(&self.index);
        }
        view.next_offset = self.end_offset;
        view.last_arrival_ms = self.last_arrival_ms;
        drop(view);
        self.log.committed.notify_waiters();
    }
}

/// A round written to the journal, waiting for the sync that covers it.
pub(super) struct WrittenRound {
    pub(super) steps: Vec<PublishStep>,
    pub(super) replies: Vec<(AppendReply, Vec<Appended>)>,
    /// When its journal write returned.
    pub(super) written: Instant,
}

impl WrittenRound {
    /// Publishes the round (when `outcome` is a success) and replies to its appends.
    pub(super) fn settle(self, outcome: &Result<(), StoreError>, stats: &CommitStats) {
        let appends = self.replies.len();
        let settled_from = Instant::now();
        if outcome.is_ok() {
            for step in self.steps {
                step.apply();
            }
        }
        let replied_at = Instant::now();
        stats.add(Stage::Publish, replied_at - settled_from, appends);
        stats.round(appends);
        for (reply, landed) in self.replies {
            let _ = reply.send(outcome.clone().map(|()| Committed { landed, replied_at }));
        }
    }
}

/// Syncs the journal for `appends` appends and counts the sync and its time.
fn sync_journal(
    journal: &mut dyn LogFile,
    stats: &CommitStats,
    appends: usize,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let result = journal
        .sync_data()
        .map_err(StoreError::io(std::path::Path::new("journal")));
    stats.sync();
    stats.add(Stage::Sync, started.elapsed(), appends);
    result
}

/// The journal syncs of a store with `Fsync` durability.
pub(super) struct GroupCommit {
    state: Mutex<PipelineState>,
    /// Told when the syncer thread has rounds to sync, when a sync ends, and on close.
    changed: Condvar,
    stats: CommitStats,
    shared_failure: Arc<Mutex<Option<String>>>,
}

struct PipelineState {
    /// Written rounds no sync has begun to cover, oldest first.
    queued: Vec<WrittenRound>,
    /// The handle syncs go through; taken while a sync runs.
    journal: Option<Box<dyn LogFile>>,
    /// Why syncing stopped for good.
    failure: Option<String>,
    /// The store is gone: the syncer thread ends.
    closed: bool,
    /// Threads in [`GroupCommit::wait_idle`].
    idle_waiters: usize,
    /// A round was queued on an idle pipeline and its append is about to sync it
    /// ([`GroupCommit::lead`]): the syncer thread leaves the queue alone until then.
    led: bool,
}

impl PipelineState {
    fn idle(&self) -> bool {
        self.queued.is_empty() && self.journal.is_some()
    }

    /// Rounds wait and no sync runs.
    fn can_sync(&self) -> bool {
        !self.queued.is_empty() && self.journal.is_some()
    }
}

impl GroupCommit {
    /// A pipeline syncing through `journal` (a second handle on the writer's journal file),
    /// with its syncer thread started.
    pub(super) fn start(
        journal: Box<dyn LogFile>,
        stats: CommitStats,
        shared_failure: Arc<Mutex<Option<String>>>,
    ) -> std::io::Result<Arc<Self>> {
        let pipeline = Arc::new(Self {
            state: Mutex::new(PipelineState {
                queued: Vec::new(),
                journal: Some(journal),
                failure: None,
                closed: false,
                idle_waiters: 0,
                led: false,
            }),
            changed: Condvar::new(),
            stats,
            shared_failure,
        });
        let syncer = pipeline.clone();
        std::thread::Builder::new()
            .name("brook-syncer".into())
            .spawn(move || syncer.run_syncer())?;
        Ok(pipeline)
    }

    fn state(&self) -> MutexGuard<'_, PipelineState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a written round; call while holding the writer, so rounds queue in journal order.
    /// Returns whether the caller is to sync it: when no sync was running, nothing else was
    /// queued and `alone` (no other append is under way), the caller syncs the round itself
    /// with [`GroupCommit::lead`] as soon as it lets the writer go, with no wait in between
    /// (nothing else will sync it until then). Otherwise the syncer thread syncs it: woken
    /// now when it sleeps, or when the running sync ends.
    #[must_use = "a round this says to lead is synced only by its caller's `lead`"]
    pub(super) fn queue(&self, round: WrittenRound, alone: bool) -> bool {
        let mut state = self.state();
        let idle = state.idle();
        let lead = idle && alone;
        state.queued.push(round);
        state.led |= lead;
        if idle && !lead {
            self.changed.notify_all();
        }
        lead
    }

    /// Syncs every queued round on the calling thread, unless a sync is already running (its
    /// end starts the next one). Rounds queued during this sync are left to the syncer thread,
    /// woken for them. For an append whose [`GroupCommit::queue`] said so: its own round is
    /// then acknowledged without a wake-up of the syncer thread and of the append's task.
    pub(super) fn lead(&self) {
        let mut state = self.state();
        state.led = false;
        if state.can_sync() {
            drop(self.sync_queued(state));
        }
    }

    /// Blocks until every queued round is synced and replied to. For the writer thread,
    /// holding the writer (so nothing new queues).
    pub(super) fn wait_idle(&self) {
        let mut state = self.state();
        state.idle_waiters += 1;
        let mut state = self
            .changed
            .wait_while(state, |s| !s.idle())
            .unwrap_or_else(PoisonError::into_inner);
        state.idle_waiters -= 1;
    }

    /// Later syncs go through `journal`; call only while idle, holding the writer.
    pub(super) fn replace_journal(&self, journal: Box<dyn LogFile>) {
        self.state().journal = Some(journal);
    }

    /// Ends the syncer thread (once nothing is queued).
    pub(super) fn close(&self) {
        self.state().closed = true;
        self.changed.notify_all();
    }

    fn run_syncer(&self) {
        let mut state = self.state();
        loop {
            if state.can_sync() && !state.led {
                state = self.sync_queued(state);
                continue;
            }
            if state.closed {
                return;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Syncs every queued round once and settles them, in order; the journal is free when no
    /// sync runs. Takes the state locked and returns it locked.
    fn sync_queued<'a>(
        &'a self,
        mut state: MutexGuard<'a, PipelineState>,
    ) -> MutexGuard<'a, PipelineState> {
        let Some(mut journal) = state.journal.take() else {
            return state;
        };
        let mut rounds = std::mem::take(&mut state.queued);
        let failure = state.failure.clone();
        drop(state);
        let outcome = match failure {
            Some(reason) => Err(StoreError::Stopped(reason)),
            None => self.sync(journal.as_mut(), &rounds),
        };
        // Settled before the journal is handed back, so the next sync publishes after these.
        for round in rounds.drain(..) {
            round.settle(&outcome, &self.stats);
        }
        let mut state = self.state();
        state.journal = Some(journal);
        if let Err(error) = &outcome {
            state.failure.get_or_insert_with(|| error.to_string());
        }
        // The syncer thread (when an append led this sync) is woken for the rounds queued
        // meanwhile, a waiter for idleness once there are none; nobody else waits here.
        if !state.queued.is_empty() || state.idle_waiters > 0 || state.closed {
            self.changed.notify_all();
        }
        state
    }

    fn sync(&self, journal: &mut dyn LogFile, rounds: &[WrittenRound]) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut appends = 0;
        for round in rounds {
            appends += round.replies.len();
            self.stats.add(
                Stage::SyncWait,
                started.saturating_duration_since(round.written),
                round.replies.len(),
            );
        }
        let result = sync_journal(journal, &self.stats, appends);
        if let Err(error) = &result {
            tracing::error!(%error, "journal sync failed: no further writes will be accepted");
            *self
                .shared_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::broker::shard::fs::{FileSystem, RealFs};

    /// A round of one append with nothing to publish, and where its reply goes.
    fn round() -> (
        WrittenRound,
        oneshot::Receiver<Result<Committed, StoreError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        let round = WrittenRound {
            steps: Vec::new(),
            replies: vec![(reply, Vec::new())],
            written: Instant::now(),
        };
        (round, answer)
    }

    /// Waits (up to a minute, so that a round nobody syncs fails rather than hangs) for an
    /// answer.
    fn answered(mut answer: oneshot::Receiver<Result<Committed, StoreError>>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match answer.try_recv() {
                Ok(outcome) => return outcome.is_ok(),
                Err(oneshot::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(oneshot::error::TryRecvError::Closed) => return false,
            }
        }
        false
    }

    #[test]
    fn only_an_append_alone_syncs_its_own_round_and_the_syncer_takes_the_others() {
        let dir = std::env::temp_dir().join(format!("brook-lead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let journal = RealFs.open_append(&dir.join("journal")).expect("journal");
        let stats = CommitStats::new();
        let pipeline =
            GroupCommit::start(journal, stats.clone(), Arc::default()).expect("pipeline");

        // Idle and alone: the caller syncs it, on its own thread, when it leads.
        let (first, first_answer) = round();
        assert!(pipeline.queue(first, true));
        pipeline.lead();
        assert!(answered(first_answer));

        // Not idle (a round waits for its leader): a later one is not led, even alone.
        let (second, second_answer) = round();
        let (third, third_answer) = round();
        assert!(pipeline.queue(second, true));
        assert!(!pipeline.queue(third, true));
        pipeline.lead();
        assert!(answered(second_answer));
        assert!(answered(third_answer));

        // Idle, with other appends under way: the syncer thread, asleep since it started
        // (the rounds above were led), is woken for the round.
        pipeline.wait_idle();
        let (fourth, fourth_answer) = round();
        assert!(!pipeline.queue(fourth, false));
        assert!(answered(fourth_answer), "the syncer synced the round");
        pipeline.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
