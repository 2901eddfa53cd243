//! The worker's durable progress: per source partition, the last delivered position, the
//! batch sealed but not yet known to be delivered, and whether a closed shard is finished.
//!
//! A batch's range is saved (synced) before it is sent, and the delivered position after the
//! destination acknowledged it. A worker restarted in between redelivers exactly that range
//! under the same object name, so a crash overwrites rather than duplicates. The file is
//! replaced atomically, as the broker replaces its own (`FileSystem::write_atomic`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::broker::shard::fs::{FileSystem, RealFs};

/// Why progress could not be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// A file operation failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// The file is not progress this version wrote.
    #[error("{path}: not a progress file: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What could not be read.
        message: String,
    },
}

/// A sealed batch's range of positions, inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingBatch {
    /// Position of its first record.
    pub first: String,
    /// Position of its last record.
    pub last: String,
}

/// One source partition's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionProgress {
    /// Position of the last record delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<String>,
    /// A batch sealed but not known to be delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingBatch>,
    /// The partition (a closed shard) is read to its end and all of it delivered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
}

/// Every partition's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// By partition: shard id, or `journal`.
    pub partitions: BTreeMap<String, PartitionProgress>,
}

/// The progress file, loaded once and replaced on every change.
pub struct ProgressFile {
    path: PathBuf,
    state: Mutex<Progress>,
}

impl ProgressFile {
    /// Loads `dir/progress.json`, or starts empty when there is none.
    pub fn open(dir: &Path) -> Result<Self, ProgressError> {
        let path = dir.join("progress.json");
        let io = |e: std::io::Error| ProgressError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        // Progress that a power cut loses with its folder would redeliver everything.
        crate::broker::shard::fs::create_dir_durably(dir).map_err(io)?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ProgressError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Progress::default(),
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    /// A copy of the current progress.
    pub async fn snapshot(&self) -> Progress {
        self.state.lock().await.clone()
    }

    /// One partition's progress.
    pub async fn partition(&self, name: &str) -> PartitionProgress {
        self.state
            .lock()
            .await
            .partitions
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Changes one partition's progress and saves it durably before returning.
    pub async fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut PartitionProgress),
    ) -> Result<(), ProgressError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        change(next.partitions.entry(name.to_owned()).or_default());
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| ProgressError::Corrupt {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        let path = self.path.clone();
        let io = |message: String| ProgressError::Io {
            path: self.path.display().to_string(),
            message,
        };
        tokio::task::spawn_blocking(move || RealFs.write_atomic(&path, &bytes))
            .await
            .map_err(|e| io(e.to_string()))?
            .map_err(|e| io(e.to_string()))?;
        *state = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivery_progress_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("brook-progress-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = ProgressFile::open(&dir).expect("open");
        file.update("shardId-000000000000", |p| {
            p.pending = Some(PendingBatch {
                first: "1".into(),
                last: "9".into(),
            });
        })
        .await
        .expect("save");
        file.update("shardId-000000000000", |p| {
            p.delivered = Some("9".into());
            p.pending = None;
        })
        .await
        .expect("save");
        file.update("shardId-000000000001", |p| p.finished = true)
            .await
            .expect("save");
        let again = ProgressFile::open(&dir).expect("reopen");
        assert_eq!(again.snapshot().await, file.snapshot().await);
        let first = again.partition("shardId-000000000000").await;
        assert_eq!(first.delivered.as_deref(), Some("9"));
        assert_eq!(first.pending, None);
        assert!(again.partition("shardId-000000000001").await.finished);
        assert_eq!(
            again.partition("unknown").await,
            PartitionProgress::default()
        );

        std::fs::write(dir.join("progress.json"), b"{not json").expect("write");
        assert!(matches!(
            ProgressFile::open(&dir),
            Err(ProgressError::Corrupt { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
