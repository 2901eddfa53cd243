//! A queue's state on disk: one file of JSON lines, a snapshot of the whole state first, then
//! every change since, appended before the change takes effect and synced (with `Fsync`
//! durability) before the call that made it is answered. Syncs are shared: a caller whose
//! lines a sync that started after their write covers does not sync again, and no caller
//! holds the queue while it waits (group commit, as the shard journal does).
//!
//! Only lines written after the last completed sync can be damaged by a crash, and no call
//! that wrote them was answered: loading stops at the first line that does not parse (with a
//! warning if lines follow it). When the changes outnumber the outstanding records by far,
//! the file is rewritten as one snapshot (a temporary file, synced, renamed over it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::QueueError;
use super::state::{Change, QueueState};
use crate::broker::shard::fs::{FileSystem, LogFile};

/// Changes logged since the snapshot before the file is rewritten, beyond twice the
/// outstanding records.
pub const COMPACT_AFTER: usize = 10_000;

/// Where a queue's file lives and how it is written.
#[derive(Clone)]
pub struct LogSettings {
    /// The file layer (the real one, or a recording one in tests).
    pub fs: Arc<dyn FileSystem>,
    /// Sync every change before it is answered (`Fsync` durability).
    pub sync: bool,
    /// Changes since the snapshot, beyond twice the outstanding records, that make the file
    /// be rewritten as one snapshot.
    pub compact_after: usize,
}

/// A handle that syncs the file while another appends to it.
type SharedFile = Arc<Mutex<Box<dyn LogFile>>>;

#[derive(Serialize, Deserialize)]
enum Line {
    Snapshot(QueueState),
    Change(Change),
}

/// An open queue state file.
pub struct ChangeLog {
    path: PathBuf,
    settings: LogSettings,
    file: Box<dyn LogFile>,
    changes_since_snapshot: usize,
    /// Writes so far (each a call's changes), numbered from 1.
    writes: u64,
    durability: Arc<Durability>,
}

/// Where the syncs of a queue's file stand; shared with the callers waiting for one.
pub struct Durability {
    /// The file, for errors.
    path: PathBuf,
    syncs: Mutex<SyncState>,
    synced: Condvar,
}

struct SyncState {
    /// The file the writes go to (replaced by a compaction).
    file: SharedFile,
    /// The newest write.
    written: u64,
    /// The newest write a completed sync covers.
    synced: u64,
    /// A sync is running.
    syncing: bool,
    /// Why the file stopped taking writes: a failed sync (a retried one can lie).
    failed: Option<String>,
}

impl Durability {
    fn new(path: &Path, file: SharedFile) -> Self {
        Self {
            path: path.to_path_buf(),
            syncs: Mutex::new(SyncState {
                file,
                written: 0,
                synced: 0,
                syncing: false,
                failed: None,
            }),
            synced: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.syncs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once write `number` is synced: by a sync this call runs, or by one another
    /// caller started after the write.
    pub fn wait_synced(&self, number: u64) -> Result<(), QueueError> {
        let mut state = self.lock();
        loop {
            if let Some(reason) = &state.failed {
                return Err(QueueError::Io {
                    path: self.path.display().to_string(),
                    source: std::io::Error::other(reason.clone()),
                });
            }
            if state.synced >= number {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.syncing = true;
            let (target, file) = (state.written, state.file.clone());
            drop(state);
            let outcome = file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sync_data();
            state = self.lock();
            state.syncing = false;
            match outcome {
                Ok(()) => state.synced = state.synced.max(target),
                Err(error) => state.failed = Some(error.to_string()),
            }
            self.synced.notify_all();
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ChangeLog {
    /// Creates the file of a new queue with its starting state.
    pub fn create(
        path: &Path,
        state: &QueueState,
        settings: &LogSettings,
    ) -> Result<Self, QueueError> {
        write_snapshot(settings.fs.as_ref(), path, state)?;
        Self::open_append(path, settings, None, 0)
    }

    /// Where this file's syncs stand.
    pub fn durability(&self) -> Arc<Durability> {
        self.durability.clone()
    }

    /// Loads a queue's state from its file and opens it for appending.
    pub fn load(path: &Path, settings: &LogSettings) -> Result<(Self, QueueState), QueueError> {
        let bytes = read_all(settings.fs.as_ref(), path)?;
        let mut state = None;
        let mut changes = 0;
        let mut lines = bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty());
        while let Some(line) = lines.next() {
            match serde_json::from_slice::<Line>(line) {
                Ok(Line::Snapshot(snapshot)) => state = Some(snapshot),
                Ok(Line::Change(change)) => {
                    if let Some(state) = state.as_mut() {
                        state.apply(&change);
                        changes += 1;
                    }
                }
                // A crash can damage only lines no completed sync covered, whose calls were
                // never answered: the log ends here.
                Err(error) => {
                    let dropped = lines.count();
                    if dropped > 0 {
                        tracing::warn!(path = %path.display(), %error, dropped, "a queue state file ends at a damaged line; the lines after it are dropped");
                    }
                    break;
                }
            }
        }
        let mut state = state.ok_or_else(|| QueueError::Corrupt {
            path: path.display().to_string(),
            reason: "no snapshot".into(),
        })?;
        state.reindex();
        let mut log = Self::open_append(path, settings, None, changes)?;
        // Start from a clean file: a torn tail must not sit before the next appends.
        log.compact(&state)?;
        Ok((log, state))
    }

    /// Opens `path` for appending; a reopened file (after a compaction) keeps its
    /// `durability`, marked synced, since the snapshot is.
    fn open_append(
        path: &Path,
        settings: &LogSettings,
        durability: Option<(Arc<Durability>, u64)>,
        changes: usize,
    ) -> Result<Self, QueueError> {
        let file = settings.fs.open_append(path).map_err(io(path))?;
        let shared = Arc::new(Mutex::new(file.try_clone().map_err(io(path))?));
        let (durability, writes) = match durability {
            Some((durability, writes)) => {
                let mut state = durability.lock();
                state.file = shared;
                state.synced = state.synced.max(writes);
                drop(state);
                durability.synced.notify_all();
                (durability, writes)
            }
            None => (Arc::new(Durability::new(path, shared)), 0),
        };
        Ok(Self {
            path: path.to_path_buf(),
            settings: settings.clone(),
            file,
            changes_since_snapshot: changes,
            writes,
            durability,
        })
    }

    /// Writes `changes` (`state` is the state before them, used when the file is rewritten
    /// instead); returns the write's number when the caller must still wait for its sync
    /// ([`Durability::wait_synced`]) before answering.
    pub fn record(
        &mut self,
        changes: &[Change],
        state: &QueueState,
    ) -> Result<Option<u64>, QueueError> {
        if let Some(reason) = &self.durability.lock().failed {
            return Err(QueueError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::other(reason.clone()),
            });
        }
        if changes.is_empty() {
            return Ok(None);
        }
        self.writes += 1;
        if self.changes_since_snapshot + changes.len()
            > self.settings.compact_after + 2 * state.outstanding.len()
        {
            let mut next = state.clone();
            for change in changes {
                next.apply(change);
            }
            self.compact(&next)?;
            return Ok(None);
        }
        let mut text = String::new();
        for change in changes {
            let line = serde_json::to_string(&Line::Change(change.clone())).map_err(|e| {
                QueueError::Corrupt {
                    path: self.path.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
            text.push_str(&line);
            text.push('\n');
        }
        self.file.append(text.as_bytes()).map_err(io(&self.path))?;
        self.changes_since_snapshot += changes.len();
        self.durability.lock().written = self.writes;
        Ok(self.settings.sync.then_some(self.writes))
    }

    /// Rewrites the file as one snapshot of `state`.
    fn compact(&mut self, state: &QueueState) -> Result<(), QueueError> {
        write_snapshot(self.settings.fs.as_ref(), &self.path, state)?;
        let settings = self.settings.clone();
        *self = Self::open_append(
            &self.path,
            &settings,
            Some((self.durability.clone(), self.writes)),
            0,
        )?;
        Ok(())
    }
}

/// The whole file at `path`.
fn read_all(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>, QueueError> {
    let file = fs.open_read(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = file
            .read_at(&mut chunk, bytes.len() as u64)
            .map_err(io(path))?;
        if read == 0 {
            return Ok(bytes);
        }
        bytes.extend_from_slice(&chunk[..read]);
    }
}

/// Writes `state` as the whole file at `path`, atomically and durably.
fn write_snapshot(fs: &dyn FileSystem, path: &Path, state: &QueueState) -> Result<(), QueueError> {
    let mut text =
        serde_json::to_string(&Line::Snapshot(state.clone())).map_err(|e| QueueError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    text.push('\n');
    fs.write_atomic(path, text.as_bytes()).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::broker::shard::fs::RealFs;

    fn settings() -> LogSettings {
        LogSettings {
            fs: Arc::new(RealFs),
            sync: false,
            compact_after: COMPACT_AFTER,
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("brook-queue-log-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("queue.log")
    }

    #[test]
    fn changes_survive_a_reload_and_a_torn_last_line_is_dropped() {
        let path = temp_path("reload");
        let mut state = QueueState::starting_at(BTreeMap::from([(0, 4)]));
        let mut log = ChangeLog::create(&path, &state, &settings()).expect("create");
        let changes = [
            Change::Delivered((0, 4), state.receive((0, 4), 10, 100, 1, false)),
            Change::Cursor(1, 9),
        ];
        log.record(&changes, &state).expect("record");
        for change in &changes {
            state.apply(change);
        }
        drop(log);
        let mut file = RealFs.open_append(&path).expect("open");
        file.append(b"{\"Change\":{\"Acknow").expect("torn write");
        let (_, loaded) = ChangeLog::load(&path, &settings()).expect("load");
        assert_eq!(loaded, state);
        // The reload rewrote the file without the torn line.
        let (_, again) = ChangeLog::load(&path, &settings()).expect("load again");
        assert_eq!(again, state);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn a_damaged_line_ends_the_log() {
        let path = temp_path("damaged");
        let state = QueueState::default();
        let mut log = ChangeLog::create(&path, &state, &settings()).expect("create");
        log.record(&[Change::Cursor(0, 1)], &state).expect("record");
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(
            &path,
            text.replace("Cursor", "Cursxr") + "{\"Change\":{\"Cursor\":[0,2]}}\n",
        )
        .expect("write");
        // Lines after the damaged one were written after the last completed sync: their
        // calls were never answered.
        let (_, loaded) = ChangeLog::load(&path, &settings()).expect("load");
        assert_eq!(loaded.cursor(0), 0);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}
