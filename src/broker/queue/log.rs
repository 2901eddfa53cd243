//! A queue's state on disk: one file of JSON lines, a snapshot of the whole state first, then
//! every change since, appended (and synced, with `Fsync` durability) before the change takes
//! effect. A torn last line — a crash mid-append — is dropped on load: its change was never
//! answered. When the changes outnumber the outstanding records by far, the file is rewritten
//! as one snapshot (a temporary file, synced, renamed over it).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::QueueError;
use super::state::{Change, QueueState};

/// Changes logged since the snapshot before the file is rewritten, beyond twice the
/// outstanding records.
const COMPACT_AFTER: usize = 10_000;

#[derive(Serialize, Deserialize)]
enum Line {
    Snapshot(QueueState),
    Change(Change),
}

/// An open queue state file.
pub struct ChangeLog {
    path: PathBuf,
    file: File,
    sync: bool,
    changes_since_snapshot: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ChangeLog {
    /// Creates the file of a new queue with its starting state.
    pub fn create(path: &Path, state: &QueueState, sync: bool) -> Result<Self, QueueError> {
        write_snapshot(path, state)?;
        Self::open_append(path, sync, 0)
    }

    /// Loads a queue's state from its file and opens it for appending.
    pub fn load(path: &Path, sync: bool) -> Result<(Self, QueueState), QueueError> {
        let file = File::open(path).map_err(io(path))?;
        let mut state = None;
        let mut changes = 0;
        let mut lines = BufReader::new(file).lines().peekable();
        while let Some(line) = lines.next() {
            let line = line.map_err(io(path))?;
            let last = lines.peek().is_none();
            match serde_json::from_str::<Line>(&line) {
                Ok(Line::Snapshot(snapshot)) => state = Some(snapshot),
                Ok(Line::Change(change)) => {
                    if let Some(state) = state.as_mut() {
                        state.apply(&change);
                        changes += 1;
                    }
                }
                // A crash mid-append leaves a torn last line; its change was never answered.
                Err(_) if last => break,
                Err(error) => {
                    return Err(QueueError::Corrupt {
                        path: path.display().to_string(),
                        reason: error.to_string(),
                    });
                }
            }
        }
        let mut state = state.ok_or_else(|| QueueError::Corrupt {
            path: path.display().to_string(),
            reason: "no snapshot".into(),
        })?;
        state.reindex();
        let mut log = Self::open_append(path, sync, changes)?;
        // Start from a clean file: a torn tail must not sit before the next appends.
        log.compact(&state)?;
        Ok((log, state))
    }

    fn open_append(path: &Path, sync: bool, changes: usize) -> Result<Self, QueueError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            sync,
            changes_since_snapshot: changes,
        })
    }

    /// Makes `changes` durable (written, and synced with `Fsync` durability); `state` is the
    /// state before them, used when the file is rewritten instead.
    pub fn record(&mut self, changes: &[Change], state: &QueueState) -> Result<(), QueueError> {
        if changes.is_empty() {
            return Ok(());
        }
        if self.changes_since_snapshot + changes.len() > COMPACT_AFTER + 2 * state.outstanding.len()
        {
            let mut next = state.clone();
            for change in changes {
                next.apply(change);
            }
            return self.compact(&next);
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
        self.file
            .write_all(text.as_bytes())
            .map_err(io(&self.path))?;
        if self.sync {
            self.file.sync_data().map_err(io(&self.path))?;
        }
        self.changes_since_snapshot += changes.len();
        Ok(())
    }

    /// Rewrites the file as one snapshot of `state`.
    fn compact(&mut self, state: &QueueState) -> Result<(), QueueError> {
        write_snapshot(&self.path, state)?;
        *self = Self::open_append(&self.path, self.sync, 0)?;
        Ok(())
    }
}

/// Writes `state` as the whole file at `path`, atomically and durably.
fn write_snapshot(path: &Path, state: &QueueState) -> Result<(), QueueError> {
    let mut text =
        serde_json::to_string(&Line::Snapshot(state.clone())).map_err(|e| QueueError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    text.push('\n');
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(text.as_bytes()).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

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
        let mut log = ChangeLog::create(&path, &state, false).expect("create");
        let changes = [
            state.receive((0, 4), 10, 100, 1, false),
            Change::Cursor(1, 9),
        ];
        log.record(&changes, &state).expect("record");
        for change in &changes {
            state.apply(change);
        }
        drop(log);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"Change\":{\"Acknow")
            .expect("torn write");
        let (_, loaded) = ChangeLog::load(&path, false).expect("load");
        assert_eq!(loaded, state);
        // The reload rewrote the file without the torn line.
        let (_, again) = ChangeLog::load(&path, false).expect("load again");
        assert_eq!(again, state);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn a_damaged_line_before_the_end_is_an_error() {
        let path = temp_path("damaged");
        let state = QueueState::default();
        let mut log = ChangeLog::create(&path, &state, false).expect("create");
        log.record(&[Change::Cursor(0, 1)], &state).expect("record");
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(
            &path,
            text.replace("Cursor", "Cursxr") + "{\"Change\":{\"Cursor\":[0,2]}}\n",
        )
        .expect("write");
        assert!(matches!(
            ChangeLog::load(&path, false),
            Err(QueueError::Corrupt { .. })
        ));
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}
