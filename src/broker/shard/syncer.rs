//! The journal syncer: a second thread that makes written rounds durable, so the writer can
//! take and write the next round while the previous one syncs.
//!
//! The writer writes a round's journal bytes (and its segments' page-cache copies), then hands
//! the round over. The syncer takes every round handed over so far, syncs the journal once —
//! an `fdatasync` covers every byte written before it began, so each round it took is covered
//! — then publishes them to readers and replies, in order. A failed sync fails its rounds and
//! every later one: the store takes no more writes, since a retried sync can lie.
//!
//! Anything that must see every round settled (checkpoints, segment rolls' cleanup, closing
//! a shard, shutdown) first waits for the syncer to go idle.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
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
pub(super) fn sync_journal(
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

enum Message {
    /// The journal rounds are now written to (after a checkpoint started a new one).
    Journal(Box<dyn LogFile>),
    Round(WrittenRound),
}

/// The writer's handle on its syncer thread.
pub(super) struct Syncer {
    sender: mpsc::Sender<Message>,
    in_flight: Arc<(Mutex<usize>, Condvar)>,
    stats: CommitStats,
}

impl Syncer {
    /// Starts a syncer over `journal` (a second handle on the writer's journal file).
    pub(super) fn start(
        journal: Box<dyn LogFile>,
        stats: CommitStats,
        shared_failure: Arc<Mutex<Option<String>>>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
        let thread = SyncerThread {
            journal,
            stats: stats.clone(),
            shared_failure,
            failure: None,
            in_flight: in_flight.clone(),
        };
        std::thread::Builder::new()
            .name("brook-syncer".into())
            .spawn(move || thread.run(receiver))?;
        Ok(Self {
            sender,
            in_flight,
            stats,
        })
    }

    /// Hands a written round over; it is replied to once a sync covers it.
    pub(super) fn submit(&self, round: WrittenRound) {
        *self
            .in_flight
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        if let Err(mpsc::SendError(Message::Round(round))) = self.sender.send(Message::Round(round))
        {
            finish(&self.in_flight, 1);
            round.settle(
                &Err(StoreError::Stopped("the journal syncer has stopped".into())),
                &self.stats,
            );
        }
    }

    /// Later rounds are written to `journal`; call only while idle.
    pub(super) fn replace_journal(&self, journal: Box<dyn LogFile>) {
        let _ = self.sender.send(Message::Journal(journal));
    }

    /// Waits until every round handed over has been synced and replied to.
    pub(super) fn wait_idle(&self) {
        let (count, idle) = &*self.in_flight;
        let mut in_flight = count.lock().unwrap_or_else(PoisonError::into_inner);
        while *in_flight > 0 {
            in_flight = idle.wait(in_flight).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

fn finish(in_flight: &(Mutex<usize>, Condvar), rounds: usize) {
    let (count, idle) = in_flight;
    let mut in_flight = count.lock().unwrap_or_else(PoisonError::into_inner);
    *in_flight = in_flight.saturating_sub(rounds);
    if *in_flight == 0 {
        idle.notify_all();
    }
}

struct SyncerThread {
    journal: Box<dyn LogFile>,
    stats: CommitStats,
    shared_failure: Arc<Mutex<Option<String>>>,
    failure: Option<String>,
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl SyncerThread {
    fn run(mut self, receiver: mpsc::Receiver<Message>) {
        let mut rounds = Vec::new();
        while let Ok(first) = receiver.recv() {
            let mut next = Some(first);
            // Take everything handed over so far: one sync covers all of it.
            while let Some(message) = next.take().or_else(|| receiver.try_recv().ok()) {
                match message {
                    Message::Round(round) => rounds.push(round),
                    Message::Journal(journal) => {
                        self.sync_and_settle(&mut rounds);
                        self.journal = journal;
                    }
                }
            }
            self.sync_and_settle(&mut rounds);
        }
    }

    fn sync_and_settle(&mut self, rounds: &mut Vec<WrittenRound>) {
        if rounds.is_empty() {
            return;
        }
        let outcome = match &self.failure {
            Some(reason) => Err(StoreError::Stopped(reason.clone())),
            None => self.sync(rounds),
        };
        let settled = rounds.len();
        for round in rounds.drain(..) {
            round.settle(&outcome, &self.stats);
        }
        finish(&self.in_flight, settled);
    }

    fn sync(&mut self, rounds: &[WrittenRound]) -> Result<(), StoreError> {
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
        let result = sync_journal(self.journal.as_mut(), &self.stats, appends);
        if let Err(error) = &result {
            tracing::error!(%error, "journal sync failed: no further writes will be accepted");
            self.failure = Some(error.to_string());
            *self
                .shared_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        }
        result
    }
}
