//! Power cuts, in the style of CrashMonkey and ALICE: a file layer for tests that records
//! every call a writer makes (creates, appends, data syncs, directory syncs, atomic replaces,
//! removes), interleaved with the acknowledgements the writer gave, and a model of what a
//! POSIX file system must keep when the power goes after any prefix of them (a file's
//! contents up to its last sync; a new directory entry, or the removal of one, only once its
//! parent directory was synced) or when the process is killed (everything written).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use brook::broker::shard::fs::{FileSystem, LogFile, ReadFile, RealFs};

type Inode = u64;

/// One call of the file layer, or an acknowledgement `A`, in the order they happened.
#[derive(Debug, Clone)]
pub enum Op<A> {
    Create {
        path: PathBuf,
        inode: Inode,
    },
    /// Write `bytes` at `at`, the end of the file's data.
    Append {
        inode: Inode,
        at: u64,
        bytes: Vec<u8>,
    },
    /// Room allocated up to `len` bytes, reading as zeros; the data's end stays.
    Preallocate {
        inode: Inode,
        len: u64,
    },
    Truncate {
        inode: Inode,
        len: u64,
    },
    SyncData {
        inode: Inode,
    },
    SyncDir {
        dir: PathBuf,
    },
    /// Write a temporary file, sync it, rename it over `path`, sync the directory.
    ReplaceAtomically {
        path: PathBuf,
        inode: Inode,
        bytes: Vec<u8>,
    },
    Remove {
        path: PathBuf,
    },
    /// The writer acknowledged something (records, a change) to its caller.
    Acknowledged(A),
}

/// The calls recorded so far.
pub struct Recorder<A> {
    /// Every call and acknowledgement, in order.
    pub ops: Vec<Op<A>>,
    inodes: HashMap<PathBuf, Inode>,
    next_inode: Inode,
}

impl<A> Default for Recorder<A> {
    fn default() -> Self {
        Self {
            ops: Vec::new(),
            inodes: HashMap::new(),
            next_inode: 0,
        }
    }
}

/// The real file layer under `root`, every call recorded with paths relative to `root`.
pub struct RecordingFs<A> {
    /// The folder the paths are relative to.
    pub root: PathBuf,
    /// Where the calls go.
    pub recorder: Arc<Mutex<Recorder<A>>>,
}

impl<A> RecordingFs<A> {
    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_path_buf()
    }
}

struct RecordingFile<A> {
    inner: Box<dyn LogFile>,
    inode: Inode,
    recorder: Arc<Mutex<Recorder<A>>>,
}

impl<A: Send + 'static> LogFile for RecordingFile<A> {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        let at = self.inner.len()?;
        self.inner.append(buf)?;
        recorder.ops.push(Op::Append {
            inode: self.inode,
            at,
            bytes: buf.to_vec(),
        });
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        self.inner.sync_data()?;
        recorder.ops.push(Op::SyncData { inode: self.inode });
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        self.inner.truncate(len)?;
        recorder.ops.push(Op::Truncate {
            inode: self.inode,
            len,
        });
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn try_clone(&self) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(RecordingFile {
            inner: self.inner.try_clone()?,
            inode: self.inode,
            recorder: self.recorder.clone(),
        }))
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        self.inner.preallocate(len)?;
        recorder.ops.push(Op::Preallocate {
            inode: self.inode,
            len,
        });
        Ok(())
    }
    // A write-back started makes nothing durable: the model's unsynced writes stay unsynced.
    fn start_writeback(&self, from: u64, to: u64) -> io::Result<()> {
        self.inner.start_writeback(from, to)
    }
    // Reserved room reads as zeros as written room does: the same call to the model.
    fn reserve(&mut self, len: u64) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        self.inner.reserve(len)?;
        recorder.ops.push(Op::Preallocate {
            inode: self.inode,
            len,
        });
        Ok(())
    }
}

impl<A: Send + 'static> FileSystem for RecordingFs<A> {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut recorder = self.recorder.lock().expect("lock");
        let existed = path.exists();
        let inner = RealFs.open_append(path)?;
        let relative = self.relative(path);
        let inode = match recorder.inodes.get(&relative) {
            Some(&inode) if existed => inode,
            _ => {
                recorder.next_inode += 1;
                let inode = recorder.next_inode;
                recorder.inodes.insert(relative.clone(), inode);
                recorder.ops.push(Op::Create {
                    path: relative,
                    inode,
                });
                inode
            }
        };
        Ok(Box::new(RecordingFile {
            inner,
            inode,
            recorder: self.recorder.clone(),
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        RealFs.open_read(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        RealFs.sync_dir(path)?;
        recorder.ops.push(Op::SyncDir {
            dir: self.relative(path),
        });
        Ok(())
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        RealFs.write_atomic(path, bytes)?;
        recorder.next_inode += 1;
        let inode = recorder.next_inode;
        let relative = self.relative(path);
        recorder.inodes.insert(relative.clone(), inode);
        recorder.ops.push(Op::ReplaceAtomically {
            path: relative,
            inode,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut recorder = self.recorder.lock().expect("lock");
        RealFs.remove_file(path)?;
        let relative = self.relative(path);
        recorder.inodes.remove(&relative);
        recorder.ops.push(Op::Remove { path: relative });
        Ok(())
    }
}

/// What survives a power cut after a prefix of the recorded calls.
#[derive(Default)]
pub struct PowerCutModel {
    /// Each inode's contents as the process saw them, and as last synced.
    contents: HashMap<Inode, (Vec<u8>, Vec<u8>)>,
    /// The namespace as the process saw it.
    visible: BTreeMap<PathBuf, Inode>,
    /// The namespace a power cut keeps.
    durable: BTreeMap<PathBuf, Inode>,
    /// Directories the process created (seen through files made in them), and those whose
    /// own entry a synced parent made durable.
    visible_dirs: BTreeSet<PathBuf>,
    durable_dirs: BTreeSet<PathBuf>,
}

impl PowerCutModel {
    fn note_dirs(&mut self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            self.visible_dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }

    fn sync_dir(&mut self, dir: &Path) {
        let in_dir = |p: &Path| p.parent() == Some(dir);
        self.durable.retain(|p, _| !in_dir(p));
        for (path, &inode) in &self.visible {
            if in_dir(path) {
                self.durable.insert(path.clone(), inode);
            }
        }
        for sub in self.visible_dirs.clone() {
            if in_dir(&sub) {
                self.durable_dirs.insert(sub);
            }
        }
    }

    /// Takes one more recorded call into account.
    pub fn apply<A>(&mut self, op: &Op<A>) {
        match op {
            Op::Create { path, inode } => {
                self.contents.insert(*inode, (Vec::new(), Vec::new()));
                self.visible.insert(path.clone(), *inode);
                self.note_dirs(path);
            }
            Op::Append { inode, at, bytes } => {
                if let Some((seen, _)) = self.contents.get_mut(inode) {
                    let (start, end) = (*at as usize, *at as usize + bytes.len());
                    if seen.len() < end {
                        seen.resize(end, 0);
                    }
                    seen[start..end].copy_from_slice(bytes);
                }
            }
            Op::Preallocate { inode, len } => {
                if let Some((seen, _)) = self.contents.get_mut(inode)
                    && seen.len() < *len as usize
                {
                    seen.resize(*len as usize, 0);
                }
            }
            Op::Truncate { inode, len } => {
                if let Some((seen, _)) = self.contents.get_mut(inode) {
                    seen.resize(*len as usize, 0);
                }
            }
            Op::SyncData { inode } => {
                if let Some((seen, synced)) = self.contents.get_mut(inode) {
                    *synced = seen.clone();
                }
            }
            Op::SyncDir { dir } => {
                self.visible_dirs.insert(dir.clone());
                self.sync_dir(dir);
            }
            Op::ReplaceAtomically { path, inode, bytes } => {
                self.contents.insert(*inode, (bytes.clone(), bytes.clone()));
                self.visible.insert(path.clone(), *inode);
                self.note_dirs(path);
                let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
                self.sync_dir(&parent);
            }
            Op::Remove { path } => {
                self.visible.remove(path);
            }
            Op::Acknowledged(_) => {}
        }
    }

    /// Whether a path's every ancestor directory survives the cut.
    fn reachable(&self, path: &Path) -> bool {
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if !self.durable_dirs.contains(d) {
                return false;
            }
            dir = d.parent();
        }
        true
    }

    /// Writes under `root` the files a power cut keeps (`Cut::Power`: only what was synced),
    /// or everything the process wrote (`Cut::Process`, as after `kill -9`).
    pub fn materialize(&self, root: &Path, cut: Cut) {
        let (entries, synced_only) = match cut {
            Cut::Power => (&self.durable, true),
            Cut::Process => (&self.visible, false),
        };
        for (path, inode) in entries {
            if synced_only && !self.reachable(path) {
                continue;
            }
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).expect("image dir");
            }
            let contents = self
                .contents
                .get(inode)
                .map(|(seen, synced)| if synced_only { synced } else { seen });
            std::fs::write(&target, contents.cloned().unwrap_or_default()).expect("image file");
        }
    }
}

/// How the run was cut short.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// The power went: only synced data and synced directory entries remain.
    Power,
    /// The process was killed: the page cache keeps every write.
    Process,
}

/// A short description of a recorded call, for failure messages.
pub fn describe<A: std::fmt::Debug>(op: Option<&Op<A>>) -> String {
    match op {
        None => "the start".to_owned(),
        Some(Op::Create { path, .. }) => format!("create {}", path.display()),
        Some(Op::Append { inode, at, bytes }) => {
            format!("write {} bytes at {at} of inode {inode}", bytes.len())
        }
        Some(Op::Preallocate { inode, len }) => format!("preallocate inode {inode} to {len}"),
        Some(Op::Truncate { inode, len }) => format!("truncate inode {inode} to {len}"),
        Some(Op::SyncData { inode }) => format!("sync inode {inode}"),
        Some(Op::SyncDir { dir }) => format!("sync folder {}", dir.display()),
        Some(Op::ReplaceAtomically { path, .. }) => format!("replace {}", path.display()),
        Some(Op::Remove { path }) => format!("remove {}", path.display()),
        Some(Op::Acknowledged(what)) => format!("acknowledge {what:?}"),
    }
}
