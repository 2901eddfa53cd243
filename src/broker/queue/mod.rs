//! Kinesis queues (CreateQueue, ReceiveQueueRecords, …): competing consumers over a stream's
//! records, with visibility timeouts, acknowledgements and dead letters.
//!
//! A queue's definition is part of its stream's catalog record; its delivery state (which
//! records are outstanding, and where each shard's cursor stands) is kept here, one
//! [`log::ChangeLog`] file per queue in the data directory's `queues/` folder, so it survives
//! `kill -9` (every change is written before it is answered) and, with `Fsync` durability, a
//! power cut (every change is synced before it is answered). The decisions are in
//! [`state`], without I/O.

pub mod log;
pub mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use log::{COMPACT_AFTER, ChangeLog, LogSettings};
use state::{Change, QueueState};

use super::protocol::{ApiError, ErrorKind};
use super::shard::fs::FileSystem;

/// What can go wrong with a queue's state file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The file could not be read or written.
    #[error("queue state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("queue state file {path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        tracing::error!(%error, "a queue's state could not be kept");
        ApiError::new(
            ErrorKind::InternalFailure,
            "The broker could not keep the queue's state.",
        )
    }
}

struct QueueInner {
    state: QueueState,
    log: ChangeLog,
}

/// One queue's delivery state, open.
pub struct Queue {
    inner: Mutex<QueueInner>,
    /// Woken when a request makes records visible (a zero visibility timeout, a restore).
    pub changed: tokio::sync::Notify,
}

impl Queue {
    fn new(state: QueueState, log: ChangeLog) -> Self {
        Self {
            inner: Mutex::new(QueueInner { state, log }),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Runs a decision on the state: the changes it returns are written and applied in one
    /// step no other request interleaves with, and durable when this returns.
    pub fn update<T>(
        &self,
        decide: impl FnOnce(&QueueState) -> Result<(Vec<Change>, T), ApiError>,
    ) -> Result<T, ApiError> {
        let (out, unsynced, durability) = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let (changes, out) = decide(&inner.state)?;
            let QueueInner { state, log } = &mut *inner;
            let unsynced = log.record(&changes, state)?;
            for change in &changes {
                state.apply(change);
            }
            (out, unsynced, log.durability())
        };
        // The sync is waited for without holding the queue: other calls write meanwhile,
        // and one sync covers them all.
        if let Some(number) = unsynced {
            durability.wait_synced(number)?;
        }
        Ok(out)
    }

    /// Reads the state.
    pub fn read<T>(&self, look: impl FnOnce(&QueueState) -> T) -> T {
        look(
            &self
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .state,
        )
    }
}

/// The queues of a broker, opened on first use.
pub struct Queues {
    dir: PathBuf,
    settings: LogSettings,
    /// The folder's entry in its parent was synced by this process.
    folder_synced: std::sync::atomic::AtomicBool,
    open: Mutex<HashMap<String, Arc<Queue>>>,
}

impl Queues {
    /// The queues whose files are in `dir`, written through `fs`; `sync` syncs every change
    /// (`Fsync` durability).
    pub fn new(dir: PathBuf, sync: bool, fs: Arc<dyn FileSystem>) -> Self {
        Self {
            dir,
            settings: LogSettings {
                fs,
                sync,
                compact_after: COMPACT_AFTER,
            },
            folder_synced: std::sync::atomic::AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The same, with files rewritten as one snapshot after `changes` changes (beyond twice
    /// the outstanding records) instead of [`COMPACT_AFTER`]: for tests of compaction.
    pub fn compacting_after(mut self, changes: usize) -> Self {
        self.settings.compact_after = changes;
        self
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// Starts the state of a new queue.
    pub fn create(&self, id: &str, state: QueueState) -> Result<Arc<Queue>, QueueError> {
        let failed = |source| QueueError::Io {
            path: self.dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(failed)?;
        let log = ChangeLog::create(&self.path(id), &state, &self.settings)?;
        // The folder's own entry must survive a power cut, or the files in it do not: synced
        // once per process, whether this process made the folder or found it (made by a
        // process killed before it synced it).
        if !self
            .folder_synced
            .swap(true, std::sync::atomic::Ordering::AcqRel)
            && let Some(parent) = self.dir.parent()
            && let Err(error) = self.settings.fs.sync_dir(parent)
        {
            self.folder_synced
                .store(false, std::sync::atomic::Ordering::Release);
            return Err(failed(error));
        }
        let queue = Arc::new(Queue::new(state, log));
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), queue.clone());
        Ok(queue)
    }

    /// A queue's state, loaded from its file the first time.
    pub fn get(&self, id: &str) -> Result<Arc<Queue>, QueueError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = open.get(id) {
            return Ok(queue.clone());
        }
        let (log, state) = ChangeLog::load(&self.path(id), &self.settings)?;
        let queue = Arc::new(Queue::new(state, log));
        open.insert(id.to_owned(), queue.clone());
        Ok(queue)
    }

    /// Removes the files of queues not in `known` (a queue whose creation did not reach the
    /// catalog, or whose deletion was cut short) and leftover temporary files.
    pub fn remove_unknown(&self, known: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let known_log = path.extension().is_some_and(|e| e == "log")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|id| known.contains(id));
            if !known_log {
                tracing::info!(path = %path.display(), "removing the state of a queue that does not exist");
                let _ = self.settings.fs.remove_file(&path);
            }
        }
    }

    /// The queues whose state is open (used since the broker started), by id.
    pub fn open_queues(&self) -> HashMap<String, Arc<Queue>> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets a deleted queue and removes its file.
    pub fn remove(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        let _ = self.settings.fs.remove_file(&self.path(id));
    }
}
