//! Where an acknowledged write's time goes inside the store, stage by stage, summed over
//! appends: Prometheus counters the writer and its syncer add to (an atomic add per stage and
//! round), and which `brook bench` reads to print its breakdown.

use std::time::Duration;

use prometheus::{Counter, CounterVec, IntCounter, Opts};

/// The stages of an append, in the order it passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// From the append call until it holds the writer's lock.
    Handoff,
    /// The round staged and written to the journal and its shards' segments.
    Write,
    /// Written, waiting for a sync to start (one that began earlier does not cover it).
    SyncWait,
    /// The journal sync that covers it.
    Sync,
    /// Published to readers and the reply sent.
    Publish,
    /// From the reply being sent until the request's task runs again.
    Wakeup,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 6] = [
        Stage::Handoff,
        Stage::Write,
        Stage::SyncWait,
        Stage::Sync,
        Stage::Publish,
        Stage::Wakeup,
    ];

    /// The stage's label value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Handoff => "handoff",
            Stage::Write => "write",
            Stage::SyncWait => "sync_wait",
            Stage::Sync => "sync",
            Stage::Publish => "publish",
            Stage::Wakeup => "wakeup",
        }
    }
}

/// The store's commit counters.
#[derive(Clone)]
pub struct CommitStats {
    stage_seconds: CounterVec,
    stages: Vec<Counter>,
    appends: IntCounter,
    rounds: IntCounter,
    syncs: IntCounter,
}

impl CommitStats {
    /// Fresh counters.
    pub fn new() -> Self {
        let stage_seconds = CounterVec::new(
            Opts::new(
                "brook_store_append_stage_seconds_total",
                "Time acknowledged appends spent in each stage of a commit, summed over appends.",
            ),
            &["stage"],
        )
        .expect("static metric definition");
        let stages = Stage::ALL
            .iter()
            .map(|s| stage_seconds.with_label_values(&[s.name()]))
            .collect();
        Self {
            stage_seconds,
            stages,
            appends: IntCounter::new(
                "brook_store_appends_total",
                "Appends acknowledged by the store (one per PutRecord or PutRecords call).",
            )
            .expect("static metric definition"),
            rounds: IntCounter::new(
                "brook_store_commit_rounds_total",
                "Commit rounds: the appends queued together, written to the journal at once.",
            )
            .expect("static metric definition"),
            syncs: IntCounter::new(
                "brook_store_syncs_total",
                "Journal syncs that acknowledged appends.",
            )
            .expect("static metric definition"),
        }
    }

    /// Adds `spent` to `stage` for each of `appends` appends.
    pub fn add(&self, stage: Stage, spent: Duration, appends: usize) {
        if let Some(counter) = self.stages.get(stage as usize) {
            counter.inc_by(spent.as_secs_f64() * appends as f64);
        }
    }

    /// Counts a round of `appends` appends.
    pub fn round(&self, appends: usize) {
        self.rounds.inc();
        self.appends.inc_by(appends as u64);
    }

    /// Counts a journal sync.
    pub fn sync(&self) {
        self.syncs.inc();
    }

    /// The collectors, for a registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.stage_seconds.clone()),
            Box::new(self.appends.clone()),
            Box::new(self.rounds.clone()),
            Box::new(self.syncs.clone()),
        ]
    }
}

impl Default for CommitStats {
    fn default() -> Self {
        Self::new()
    }
}
