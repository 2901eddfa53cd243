//! A file layer over the real one that records the journal's calls in order, can hold a sync
//! until released and can fail the next one or a given one; and a one-shard store opened on it.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use brook::broker::shard::batch::BodyBuilder;
use brook::broker::shard::fs::{FileSystem, LogFile, ReadFile, RealFs};
use brook::broker::shard::{AppendPart, Appended, Clock, ShardKey, Store, StoreOptions};

pub const SHARD: ShardKey = ShardKey {
    stream_key: 1,
    shard_index: 0,
};

/// What the file layer saw of the journal, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Append(usize),
    SyncStarted,
    SyncReturned,
    /// A sync of a shard's segment file began (recorded only while segment syncs are held).
    SegmentSyncStarted,
    /// The write-back of a segment's bytes `from..to` was started (on the named thread).
    WritebackStarted {
        from: u64,
        to: u64,
        thread: String,
    },
    /// The removal of a file began (on the named thread).
    RemovalStarted {
        path: std::path::PathBuf,
        thread: String,
    },
    /// The removal of a file returned.
    Removed(std::path::PathBuf),
    /// The test saw the append's acknowledgement.
    Acknowledged,
}

/// Wraps the real file system: records journal calls, can hold a sync until released, and
/// can fail the next sync.
#[derive(Default)]
pub struct Recording {
    pub events: Mutex<Vec<Event>>,
    hold_sync: Mutex<bool>,
    segment_syncs: Gate,
    writebacks: Gate,
    removals: Gate,
    released: Condvar,
    pub recorded: Condvar,
    pub fail_next_sync: AtomicBool,
    /// Fails the journal sync with this number (the first to start is 1; 0 fails none).
    pub fail_sync_number: AtomicUsize,
    /// The name of the thread each journal sync ran on, in order.
    pub sync_threads: Mutex<Vec<String>>,
    /// The name of the thread each journal write ran on, in order.
    pub write_threads: Mutex<Vec<String>>,
}

impl Recording {
    pub fn record(&self, event: Event) {
        self.events.lock().expect("lock").push(event);
        self.recorded.notify_all();
    }

    /// Blocks until `event` has been recorded (or fails after 60 s).
    pub fn wait_for(&self, event: &Event) {
        let events = self.events.lock().expect("lock");
        let (events, timeout) = self
            .recorded
            .wait_timeout_while(events, Duration::from_secs(60), |events| {
                !events.contains(event)
            })
            .expect("wait");
        assert!(!timeout.timed_out(), "{event:?} never happened: {events:?}");
    }

    pub fn hold(&self, hold: bool) {
        *self.hold_sync.lock().expect("lock") = hold;
        self.released.notify_all();
    }

    /// Holds (or lets go) every sync of a segment file from now on.
    pub fn hold_segments(&self, hold: bool) {
        self.segment_syncs.set(hold);
    }

    /// Holds (or lets go) every segment write-back from now on, once it is recorded.
    pub fn hold_writebacks(&self, hold: bool) {
        self.writebacks.set(hold);
    }

    /// Holds (or lets go) every file removal from now on, once it is recorded.
    pub fn hold_removals(&self, hold: bool) {
        self.removals.set(hold);
    }

    /// The write-backs started so far, as `(from, to, thread)`.
    pub fn writebacks(&self) -> Vec<(u64, u64, String)> {
        let events = self.events.lock().expect("lock");
        events
            .iter()
            .filter_map(|e| match e {
                Event::WritebackStarted { from, to, thread } => Some((*from, *to, thread.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A point calls can be held at until the test lets them go.
#[derive(Default)]
struct Gate {
    held: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn set(&self, hold: bool) {
        *self.held.lock().expect("lock") = hold;
        self.opened.notify_all();
    }

    /// Waits while the gate is held.
    fn pass(&self) {
        let mut held = self.held.lock().expect("lock");
        while *held {
            held = self.opened.wait(held).expect("wait");
        }
    }

    fn is_held(&self) -> bool {
        *self.held.lock().expect("lock")
    }
}

pub struct RecordingFs(pub Arc<Recording>);

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string()
}

struct RecordingFile {
    inner: Box<dyn LogFile>,
    journal: bool,
    /// Whether anything was appended through this file or a clone of it: the sync that makes
    /// a new journal generation's room durable, before any append, is not recorded (nor held
    /// or failed), as it covers no write.
    appended: Arc<AtomicBool>,
    /// Room was written through this handle since its last sync: its next sync makes room
    /// durable (the writer thread growing the journal's room ahead), and is not recorded
    /// either; it acknowledges nothing.
    grew: bool,
    recording: Arc<Recording>,
}

impl LogFile for RecordingFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.journal {
            self.recording
                .write_threads
                .lock()
                .expect("lock")
                .push(thread_name());
            self.recording.record(Event::Append(buf.len()));
            self.appended.store(true, Ordering::SeqCst);
        }
        self.inner.append(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if !self.journal {
            if self.recording.segment_syncs.is_held() {
                self.recording.record(Event::SegmentSyncStarted);
            }
            self.recording.segment_syncs.pass();
            return self.inner.sync_data();
        }
        if !self.appended.load(Ordering::SeqCst) || self.grew {
            self.grew = false;
            return self.inner.sync_data();
        }
        let number = {
            let mut threads = self.recording.sync_threads.lock().expect("lock");
            threads.push(thread_name());
            threads.len()
        };
        self.recording.record(Event::SyncStarted);
        let mut held = self.recording.hold_sync.lock().expect("lock");
        while *held {
            held = self.recording.released.wait(held).expect("wait");
        }
        drop(held);
        if self.recording.fail_next_sync.swap(false, Ordering::SeqCst)
            || self.recording.fail_sync_number.load(Ordering::SeqCst) == number
        {
            return Err(io::Error::other("injected fsync failure"));
        }
        let result = self.inner.sync_data();
        self.recording.record(Event::SyncReturned);
        result
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn try_clone(&self) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(RecordingFile {
            inner: self.inner.try_clone()?,
            journal: self.journal,
            appended: self.appended.clone(),
            grew: false,
            recording: self.recording.clone(),
        }))
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.grew = true;
        self.inner.preallocate(len)
    }

    fn reserve(&mut self, len: u64) -> io::Result<()> {
        self.inner.reserve(len)
    }

    fn start_writeback(&self, from: u64, to: u64) -> io::Result<()> {
        if !self.journal {
            self.recording.record(Event::WritebackStarted {
                from,
                to,
                thread: thread_name(),
            });
            self.recording.writebacks.pass();
        }
        self.inner.start_writeback(from, to)
    }
}

impl FileSystem for RecordingFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let journal = path.components().any(|c| c.as_os_str() == "journal");
        let inner = RealFs.open_append(path)?;
        Ok(Box::new(RecordingFile {
            appended: Arc::new(AtomicBool::new(!inner.is_empty()?)),
            grew: false,
            inner,
            journal,
            recording: self.0.clone(),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        RealFs.open_read(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        RealFs.write_atomic(path, bytes)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.record(Event::RemovalStarted {
            path: path.to_owned(),
            thread: thread_name(),
        });
        self.0.removals.pass();
        let removed = RealFs.remove_file(path);
        self.0.record(Event::Removed(path.to_owned()));
        removed
    }
}

/// The options of the stores these tests open.
pub fn options() -> StoreOptions {
    StoreOptions {
        checkpoint_interval: Duration::from_secs(3600),
        // Small, so copies of the store stay small; the room still holds every test's writes.
        journal_room: 64 * 1024,
        ..StoreOptions::default()
    }
}

pub fn open(dir: &Path, fs: Arc<dyn FileSystem>) -> Store {
    open_with(dir, fs, options())
}

pub fn open_with(dir: &Path, fs: Arc<dyn FileSystem>, options: StoreOptions) -> Store {
    let (store, _) = Store::open(dir, fs, options, Clock::default(), &[SHARD], HashMap::new())
        .expect("store opens");
    store
}

/// Shuts `store` down and opens the store in `dir` again on the same recording.
pub async fn restarted(dir: &Path, store: Arc<Store>, recording: Arc<Recording>) -> Store {
    store.shutdown().await.expect("shutdown");
    drop(store);
    open(dir, Arc::new(RecordingFs(recording)))
}

/// A store on the recording file layer with its shard added, and the recording of the calls
/// that made it cleared, so only what follows counts.
pub async fn open_recorded(dir: &Path) -> (Arc<Recording>, Arc<Store>) {
    open_recorded_with(dir, options()).await
}

/// Like [`open_recorded`], with other options.
pub async fn open_recorded_with(dir: &Path, options: StoreOptions) -> (Arc<Recording>, Arc<Store>) {
    let recording = Arc::new(Recording::default());
    let store = Arc::new(open_with(
        dir,
        Arc::new(RecordingFs(recording.clone())),
        options,
    ));
    store.add_shards(vec![SHARD]).await.expect("shard");
    recording.events.lock().expect("lock").clear();
    recording.sync_threads.lock().expect("lock").clear();
    recording.write_threads.lock().expect("lock").clear();
    (recording, store)
}

pub fn part(label: &str, count: usize) -> AppendPart {
    let mut body = BodyBuilder::default();
    for i in 0..count {
        body.push(label, format!("{label}-{i}").as_bytes());
    }
    AppendPart {
        shard: SHARD,
        body: body.finish(),
    }
}

pub fn stored_data(store: &Store) -> Vec<String> {
    super::stored_records(store, SHARD).expect("shard")
}

/// Appends `part` and returns where it landed once acknowledged; fails, saying `stalled`,
/// when that takes over 30 s (something held the writer's lock).
pub async fn append_promptly(store: &Store, part: AppendPart, stalled: &str) -> Vec<Appended> {
    tokio::time::timeout(Duration::from_secs(30), store.append(vec![part]))
        .await
        .unwrap_or_else(|_| panic!("{stalled}"))
        .expect("the append")
}

/// Blocks (off the runtime) until `recording` holds `count` started write-backs.
pub async fn wait_for_writebacks(recording: &Arc<Recording>, count: usize) {
    wait_for_matching(recording, count, "write-backs started", |e| {
        matches!(e, Event::WritebackStarted { .. })
    })
    .await;
}

/// Blocks (off the runtime) until a removal of a file in `folder` has started, and answers
/// its path and the thread it runs on.
pub async fn wait_for_removal_in(
    recording: &Arc<Recording>,
    folder: &Path,
) -> (std::path::PathBuf, String) {
    let in_folder = |e: &Event, folder: &Path| matches!(e, Event::RemovalStarted { path, .. } if path.parent() == Some(folder));
    let wanted = folder.to_owned();
    wait_for_matching(recording, 1, "a removal", move |e| in_folder(e, &wanted)).await;
    let events = recording.events.lock().expect("lock");
    events
        .iter()
        .find_map(|e| match e {
            Event::RemovalStarted { path, thread } if in_folder(e, folder) => {
                Some((path.clone(), thread.clone()))
            }
            _ => None,
        })
        .expect("the removal waited for")
}

/// Blocks (off the runtime) until `recording` holds `count` copies of `event`.
pub async fn wait_for_count(recording: &Arc<Recording>, event: Event, count: usize) {
    let what = format!("x {event:?}");
    wait_for_matching(recording, count, &what, move |e| *e == event).await;
}

/// Blocks (off the runtime) until `recording` holds `count` events that match (or fails
/// after 60 s, naming them `what`).
async fn wait_for_matching(
    recording: &Arc<Recording>,
    count: usize,
    what: &str,
    matching: impl Fn(&Event) -> bool + Send + 'static,
) {
    let recording = recording.clone();
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        let events = recording.events.lock().expect("lock");
        let (events, timeout) = recording
            .recorded
            .wait_timeout_while(events, Duration::from_secs(60), |events| {
                events.iter().filter(|e| matching(e)).count() < count
            })
            .expect("wait");
        assert!(!timeout.timed_out(), "never saw {count} {what}: {events:?}");
    })
    .await
    .expect("wait");
}
