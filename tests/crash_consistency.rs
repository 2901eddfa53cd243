//! Power-loss crash consistency, in the style of CrashMonkey and ALICE. `kill -9` leaves the
//! page cache in place; a power cut does not. A file layer for tests records every call the
//! storage writer makes (creates, appends, data syncs, directory syncs, atomic replaces,
//! removes), interleaved with the acknowledgements the writer gave. For every cut point of a
//! run with appends, segment rolls, checkpoints and a reshard, the image a POSIX file system
//! must keep is built (a file's contents up to its last sync; a new directory entry, or the
//! removal of one, only once its parent directory was synced), recovery runs on it, and every
//! record acknowledged before the cut must be there exactly once, in order, intact.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brook::broker::shard::batch::BodyBuilder;
use brook::broker::shard::fs::{FileSystem, LogFile, ReadFile, RealFs};
use brook::broker::shard::{AppendPart, Clock, ShardKey, Store, StoreOptions};
use support::broker::TempDir;

type Inode = u64;

/// One call of the file layer, or an acknowledgement, in the order they happened.
#[derive(Debug, Clone)]
enum Op {
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
    /// The writer acknowledged these records (shard, data) to their producer.
    Acknowledged {
        shard: ShardKey,
        data: Vec<String>,
    },
}

#[derive(Default)]
struct Recorder {
    ops: Vec<Op>,
    inodes: HashMap<PathBuf, Inode>,
    next_inode: Inode,
}

/// The real file layer under `root`, every call recorded with paths relative to `root`.
struct RecordingFs {
    root: PathBuf,
    recorder: Arc<Mutex<Recorder>>,
}

impl RecordingFs {
    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_path_buf()
    }
}

struct RecordingFile {
    inner: Box<dyn LogFile>,
    inode: Inode,
    recorder: Arc<Mutex<Recorder>>,
}

impl LogFile for RecordingFile {
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
}

impl FileSystem for RecordingFs {
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
struct PowerCutModel {
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

    fn apply(&mut self, op: &Op) {
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
            Op::Acknowledged { .. } => {}
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
    fn materialize(&self, root: &Path, cut: Cut) {
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
enum Cut {
    /// The power went: only synced data and synced directory entries remain.
    Power,
    /// The process was killed: the page cache keeps every write.
    Process,
}

/// A short description of a recorded call, for failure messages.
fn describe(op: Option<&Op>) -> String {
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
        Some(Op::Acknowledged { shard, data }) => {
            format!("acknowledge {} records to {shard:?}", data.len())
        }
    }
}

const PARENT: ShardKey = ShardKey {
    stream_key: 1,
    shard_index: 0,
};
const CHILDREN: [ShardKey; 2] = [
    ShardKey {
        stream_key: 1,
        shard_index: 1,
    },
    ShardKey {
        stream_key: 1,
        shard_index: 2,
    },
];

fn options() -> StoreOptions {
    StoreOptions {
        segment_bytes: 1500,
        checkpoint_interval: Duration::from_secs(3600),
        // Small, so the run grows the journal's room several times.
        journal_room: 2048,
        ..StoreOptions::default()
    }
}

fn retention() -> HashMap<u32, u64> {
    HashMap::from([(1, 24 * 3_600_000)])
}

fn all_shards() -> Vec<ShardKey> {
    std::iter::once(PARENT).chain(CHILDREN).collect()
}

/// Appends one batch of `count` records to `shard` and records its acknowledgement.
async fn append(
    store: &Store,
    recorder: &Mutex<Recorder>,
    shard: ShardKey,
    label: &str,
    count: usize,
) {
    let mut body = BodyBuilder::default();
    let data: Vec<String> = (0..count).map(|i| format!("{label}-{i}")).collect();
    for (i, text) in data.iter().enumerate() {
        body.push(&format!("key-{i}"), text.as_bytes());
    }
    store
        .append(vec![AppendPart {
            shard,
            body: body.finish(),
        }])
        .await
        .expect("append");
    recorder
        .lock()
        .expect("lock")
        .ops
        .push(Op::Acknowledged { shard, data });
}

/// 160 batches of 1 to `largest` records over `shards` in turn, checkpointing every 30.
async fn append_batches(
    store: &Store,
    recorder: &Mutex<Recorder>,
    shards: &[ShardKey],
    label: &str,
    largest: usize,
) {
    for batch in 0..160 {
        let shard = shards[batch % shards.len()];
        append(
            store,
            recorder,
            shard,
            &format!("{label}{batch}"),
            1 + batch % largest,
        )
        .await;
        if batch % 30 == 29 {
            store.checkpoint().await.expect("checkpoint");
        }
    }
}

/// The recorded run: appends, segment rolls, checkpoints, a reshard, more of each.
async fn recorded_run(dir: &Path) -> Vec<Op> {
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let fs = Arc::new(RecordingFs {
        root: dir.to_path_buf(),
        recorder: recorder.clone(),
    });
    let (store, _) = Store::open(dir, fs, options(), Clock::default(), &[PARENT], retention())
        .expect("store opens");
    store.add_shards(vec![PARENT]).await.expect("shard");
    append_batches(&store, &recorder, &[PARENT], "p", 4).await;
    // A reshard: the children come, the parent closes.
    store.add_shards(CHILDREN.to_vec()).await.expect("children");
    store.close_shard(PARENT).await.expect("close the parent");
    append_batches(&store, &recorder, &CHILDREN, "c", 3).await;
    store.shutdown().await.expect("shutdown");
    recorder.lock().expect("lock").ops.clone()
}

/// Every record stored in each shard, in order.
fn stored(store: &Store) -> HashMap<ShardKey, Vec<String>> {
    all_shards()
        .into_iter()
        .filter_map(|key| Some((key, support::stored_records(store, key)?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_consistency_every_power_cut_keeps_every_acknowledged_record() {
    let run = TempDir::new("power-cut-run");
    let ops = recorded_run(run.path()).await;
    let acknowledged_total: usize = ops
        .iter()
        .map(|op| match op {
            Op::Acknowledged { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    let syncs_of_dirs = ops
        .iter()
        .filter(|op| matches!(op, Op::SyncDir { .. }))
        .count();
    assert!(acknowledged_total > 500, "{acknowledged_total} records");
    assert!(syncs_of_dirs > 3, "checkpoints ran");

    let mut model = PowerCutModel::default();
    let mut acknowledged: HashMap<ShardKey, Vec<String>> = HashMap::new();
    let mut images = 0;
    let mut power_cuts = 0;
    for cut in 0..=ops.len() {
        if cut > 0 {
            let op = &ops[cut - 1];
            model.apply(op);
            if let Op::Acknowledged { shard, data } = op {
                acknowledged
                    .entry(*shard)
                    .or_default()
                    .extend(data.iter().cloned());
                // No file call between an acknowledgement and the next op: same image.
                continue;
            }
        }
        for kind in [Cut::Power, Cut::Process] {
            let image = TempDir::new("power-cut-image");
            model.materialize(image.path(), kind);
            let (store, _) = Store::open(
                image.path(),
                Arc::new(RealFs),
                options(),
                Clock::default(),
                &all_shards(),
                retention(),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "{kind:?} cut after {}: recovery failed: {e}",
                    describe(ops.get(cut.wrapping_sub(1)))
                )
            });
            let found = stored(&store);
            for (shard, expected) in &acknowledged {
                let have = found.get(shard).cloned().unwrap_or_default();
                // Exactly once, in order, intact: the acknowledged records are a subsequence
                // of what is stored, and nothing is stored twice.
                let mut positions = have.iter();
                for record in expected {
                    assert!(
                        positions.any(|r| r == record),
                        "{kind:?} cut after op {cut} ({}): acknowledged {record} of {shard:?} lost or out of order; stored {have:?}",
                        describe(ops.get(cut.wrapping_sub(1)))
                    );
                }
                let unique: BTreeSet<&String> = have.iter().collect();
                assert_eq!(
                    unique.len(),
                    have.len(),
                    "{kind:?} cut after op {cut}: a record stored twice in {shard:?}"
                );
            }
            drop(store);
            images += 1;
            power_cuts += usize::from(matches!(kind, Cut::Power));
        }
    }
    eprintln!(
        "crash consistency: {power_cuts} power-cut and {} process-kill images recovered from {} recorded calls, {acknowledged_total} acknowledged records",
        images - power_cuts,
        ops.len()
    );
    assert!(power_cuts > 1000, "{power_cuts} power-cut images");
}

/// The files under `dir` with their sizes, to show recovery changed nothing.
fn listing(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.insert(path, len);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_consistency_recovery_refuses_to_drop_a_listed_segment_within_retention() {
    let dir = TempDir::new("missing-segment");
    let clock = Clock::default();
    let (store, _) = Store::open(
        dir.path(),
        Arc::new(RealFs),
        options(),
        clock.clone(),
        &[PARENT],
        retention(),
    )
    .expect("open");
    store.add_shards(vec![PARENT]).await.expect("shard");
    let recorder = Mutex::new(Recorder::default());
    for batch in 0..30 {
        append(&store, &recorder, PARENT, &format!("r{batch}"), 3).await;
    }
    store.shutdown().await.expect("shutdown");
    drop(store);
    let first_segment = segment_of(dir.path(), 0);
    assert!(first_segment.exists());
    std::fs::remove_file(&first_segment).expect("lose a segment");
    let before = listing(dir.path());
    let refused = Store::open(
        dir.path(),
        Arc::new(RealFs),
        options(),
        clock.clone(),
        &[PARENT],
        retention(),
    )
    .err()
    .expect("recovery must not start without a segment that holds unexpired records");
    let message = refused.to_string();
    assert!(
        message.contains("refusing to start") && message.contains(".seg"),
        "{message}"
    );
    assert_eq!(
        listing(dir.path()),
        before,
        "a refused recovery changes nothing"
    );

    // Once retention has expired every record of that segment, its absence is what retention
    // does, and recovery goes ahead.
    clock.advance(25 * 3_600_000);
    Store::open(
        dir.path(),
        Arc::new(RealFs),
        options(),
        clock,
        &[PARENT],
        retention(),
    )
    .expect("a segment past retention may be missing");
}

fn segment_of(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join("streams/1/0")
        .join(format!("{base_offset:020}.seg"))
}
