//! Durability below the process, where `kill -9` cannot look: a file layer that records and
//! fails calls shows that no acknowledgement leaves before the journal sync that covers it,
//! that a failed sync fails its writes (a lone write's own sync or one behind another) and those
//! queued behind it and stops the writer, and that recovery from a journal
//! cut at every byte of its last batches keeps exactly the whole batches before the cut.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use brook::broker::shard::batch::{BodyBuilder, records};
use brook::broker::shard::fs::RealFs;
use brook::broker::shard::{AppendPart, Clock, ReadLimits, Store, StoreError, StoreOptions};
use support::broker::TempDir;
use support::eventually;
use support::recording_fs::{
    Event, Recording, SHARD, open, open_recorded, part, stored_data, wait_for_count,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledgement_leaves_before_the_sync_that_covers_it_returns() {
    let dir = TempDir::new("ack-order");
    let (recording, store) = open_recorded(dir.path()).await;
    recording.hold(true);
    let writer = store.clone();
    let acknowledged = recording.clone();
    let append = tokio::spawn(async move {
        let landed = writer.append(vec![part("a", 3)]).await;
        acknowledged.record(Event::Acknowledged);
        landed
    });
    // The writer reached the journal sync, which is held: nothing may be acknowledged or
    // readable until it returns.
    let waiting = recording.clone();
    tokio::task::spawn_blocking(move || waiting.wait_for(&Event::SyncStarted))
        .await
        .expect("wait");
    assert!(
        stored_data(&store).is_empty(),
        "readers saw records before their sync"
    );
    recording.hold(false);
    let landed = append.await.expect("task").expect("append");
    assert_eq!(landed[0].base_offset, 0);
    // The order the file layer and the caller saw: the acknowledgement after the sync returned.
    assert_eq!(
        *recording.events.lock().expect("lock"),
        [
            Event::Append(48 + 3 * (2 + 1 + 4 + 3)),
            Event::SyncStarted,
            Event::SyncReturned,
            Event::Acknowledged
        ]
    );
    assert_eq!(stored_data(&store), ["a-0", "a-1", "a-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_is_written_while_the_previous_one_syncs_and_acknowledged_after_its_own_sync() {
    let dir = TempDir::new("pipelined");
    let (recording, store) = open_recorded(dir.path()).await;
    recording.hold(true);
    let spawn_append = |label: &'static str| {
        let writer = store.clone();
        let acknowledged = recording.clone();
        tokio::spawn(async move {
            let landed = writer.append(vec![part(label, 1)]).await;
            acknowledged.record(Event::Acknowledged);
            landed
        })
    };
    let first = spawn_append("a");
    wait_for_count(&recording, Event::SyncStarted, 1).await;
    // The first round's sync is held; the second round is written meanwhile.
    let second = spawn_append("b");
    wait_for_count(&recording, Event::Append(48 + 10), 2).await;
    assert!(
        stored_data(&store).is_empty(),
        "readers saw records before their sync"
    );
    recording.hold(false);
    let first = first.await.expect("task").expect("append");
    let second = second.await.expect("task").expect("append");
    assert_eq!((first[0].base_offset, second[0].base_offset), (0, 1));
    let events = recording.events.lock().expect("lock").clone();
    let at = |event: &Event, nth: usize| {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| *e == event)
            .nth(nth)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no {event:?} #{nth} in {events:?}"))
    };
    let write = Event::Append(48 + 10);
    assert!(
        at(&write, 1) < at(&Event::SyncReturned, 0),
        "the second round waited for the first sync before being written: {events:?}"
    );
    assert!(
        at(&Event::SyncStarted, 1) > at(&write, 1),
        "the second round was acknowledged by a sync that began before its write: {events:?}"
    );
    assert!(
        at(&Event::Acknowledged, 1) > at(&Event::SyncReturned, 1),
        "an acknowledgement left before the sync that covers it returned: {events:?}"
    );
    assert_eq!(stored_data(&store), ["a-0", "b-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_fails_the_writes_it_covered_and_stops_the_writer() {
    let dir = TempDir::new("failed-sync");
    let (recording, store) = open_recorded(dir.path()).await;
    store
        .append(vec![part("before", 2)])
        .await
        .expect("a healthy append");
    recording.fail_next_sync.store(true, Ordering::SeqCst);
    let failed = store.append(vec![part("doomed", 2)]).await;
    assert!(
        failed.is_err(),
        "a write whose sync failed was acknowledged"
    );
    assert!(
        store.failure().is_some(),
        "the writer reports why it stopped"
    );
    let after = store.append(vec![part("after", 1)]).await;
    assert!(
        matches!(after, Err(StoreError::Stopped(_))),
        "the writer kept going after a failed sync: {after:?}"
    );
    assert_eq!(
        stored_data(&store),
        ["before-0", "before-1"],
        "readers never see unsynced records"
    );
}

/// Journal bytes of a one-record part labelled with one letter: header 48, key length 2, key
/// 1, data length 4, data 3.
const ONE_RECORD: usize = 48 + 2 + 1 + 4 + 3;

type AppendTask = tokio::task::JoinHandle<Result<Vec<brook::broker::shard::Appended>, StoreError>>;

/// Two appends on a store whose journal sync number `failing` fails: `a` alone, then `b`,
/// written while `a`'s sync is held (so a later sync covers it), then the sync let go.
async fn a_then_b_during_its_sync(
    name: &str,
    failing: usize,
) -> (TempDir, Arc<Recording>, Arc<Store>, AppendTask, AppendTask) {
    let dir = TempDir::new(name);
    let (recording, store) = open_recorded(dir.path()).await;
    recording.hold(true);
    recording.fail_sync_number.store(failing, Ordering::SeqCst);
    let writer = store.clone();
    let a = tokio::spawn(async move { writer.append(vec![part("a", 1)]).await });
    wait_for_count(&recording, Event::SyncStarted, 1).await;
    let writer = store.clone();
    let b = tokio::spawn(async move { writer.append(vec![part("b", 1)]).await });
    wait_for_count(&recording, Event::Append(ONE_RECORD), 2).await;
    recording.hold(false);
    (dir, recording, store, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_behind_another_fails_its_writes_and_stops_the_writer() {
    let (_dir, _recording, store, a, b) = a_then_b_during_its_sync("failed-later-sync", 2).await;
    a.await.expect("task").expect("the first sync succeeded");
    let b = b.await.expect("task");
    assert!(
        b.is_err(),
        "a write whose sync failed was acknowledged: {b:?}"
    );
    let after = store.append(vec![part("c", 1)]).await;
    assert!(
        matches!(after, Err(StoreError::Stopped(_))),
        "the writer kept going after a failed sync: {after:?}"
    );
    assert_eq!(
        stored_data(&store),
        ["a-0"],
        "readers never see unsynced records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_a_failed_sync_are_failed_not_synced_again() {
    let (_dir, recording, store, a, b) = a_then_b_during_its_sync("behind-failed-sync", 1).await;
    assert!(
        a.await.expect("task").is_err(),
        "the failed sync's write was acknowledged"
    );
    // A sync after a failed one can report success for bytes the failure lost.
    let b = b.await.expect("task");
    assert!(
        matches!(b, Err(StoreError::Stopped(_))),
        "a write queued behind a failed sync was not refused as stopped: {b:?}"
    );
    assert_eq!(
        recording.sync_threads.lock().expect("lock").len(),
        1,
        "the journal was synced again after a failed sync"
    );
    assert!(
        stored_data(&store).is_empty(),
        "readers never see unsynced records"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The journal generations in `dir`, oldest first.
fn journal_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("journal"))
        .expect("journal dir")
        .flatten()
        .filter_map(|e| {
            let generation = e.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((generation, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// The journal being appended to: the oldest generation there (the one after it, when there,
/// is the next generation, made ahead of the checkpoint that will start it).
fn journal_file(dir: &Path) -> PathBuf {
    journal_files(dir)
        .into_iter()
        .next()
        .expect("a journal file")
        .1
}

/// The extents of `path` as `filefrag -v` lists them (file system's FIEMAP).
fn extents(path: &Path) -> String {
    let out = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .expect("filefrag (e2fsprogs) runs");
    assert!(out.status.success(), "filefrag {}: {out:?}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A one-shard store on the real file system whose journal generations start with `room`
/// bytes and grow by `growth`.
fn open_with_journal_room(dir: &Path, room: u64, growth: u64) -> Store {
    let options = StoreOptions {
        checkpoint_interval: Duration::from_secs(3600),
        journal_room: room,
        journal_growth: growth,
        ..StoreOptions::default()
    };
    Store::open(
        dir,
        Arc::new(RealFs),
        options,
        Clock::default(),
        &[SHARD],
        HashMap::new(),
    )
    .expect("store opens")
    .0
}

/// Appends the records of `body` to the shard as one round.
async fn append_body(store: &Store, body: BodyBuilder) {
    store
        .append(vec![AppendPart {
            shard: SHARD,
            body: body.finish(),
        }])
        .await
        .expect("append");
}

/// Large rounds only reserve the room they grow (written zeros would double the journal's
/// disk writes where the disk's bandwidth is the limit), and recover like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_rounds_grow_the_journal_room_by_reserving_it() {
    let dir = TempDir::new("reserved-room");
    let store = open_with_journal_room(dir.path(), 64 * 1024, 256 * 1024);
    let mut body = BodyBuilder::default();
    for i in 0..3 {
        body.push("big", &vec![b'a' + i; 100 * 1024]);
    }
    append_body(&store, body).await;
    let journal = journal_file(dir.path());
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        512 * 1024,
        "grown by whole steps"
    );
    let listing = extents(&journal);
    assert!(listing.contains("unwritten"), "{listing}");
    drop(store);
    let store = open(dir.path(), Arc::new(RealFs));
    let data = stored_data(&store);
    assert_eq!(data.len(), 3, "every record recovered");
    assert!(data[2].len() == 100 * 1024 && data[2].bytes().all(|b| b == b'c'));
}

/// A durable append's sync writes only data when the journal's room is written zeros: room
/// reserved with fallocate ("unwritten" extents) must be converted by each sync that first
/// writes into it, which on ext4 commits the file system's own journal as well. Checked on the
/// generation the store opened with, on room an append grew, and on the next generation the
/// writer thread makes ahead — which the following checkpoint then starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_room_is_written_zeros_and_the_next_generation_is_made_ahead() {
    let dir = TempDir::new("written-room");
    let store = open_with_journal_room(dir.path(), 64 * 1024, 16 * 1024);
    store.add_shards(vec![SHARD]).await.expect("shard");
    // Past the first room, so that appends grow it.
    let label = append_until_journal_holds(&store, dir.path(), 80 * 1024, 0).await;
    let current = journal_file(dir.path());
    let len = std::fs::metadata(&current).expect("journal").len();
    assert_eq!(len % (16 * 1024), 0, "grown by whole steps: {len}");
    assert!(len > 64 * 1024, "grown past the first room: {len}");
    let listing = extents(&current);
    assert!(listing.contains(" found"), "{listing}");
    assert!(!listing.contains("unwritten"), "{listing}");

    // Adding the shard was a control: the writer thread then made the next generation.
    eventually("the next journal generation made ahead", || {
        journal_files(dir.path()).len() == 2
    })
    .await;
    let next = journal_files(dir.path())[1].1.clone();
    eventually("the next generation's room zeroed", || {
        std::fs::metadata(&next).is_ok_and(|m| m.len() == 64 * 1024)
    })
    .await;
    let next_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&next).expect("next"));
    assert!(!extents(&next).contains("unwritten"));

    store.checkpoint().await.expect("checkpoint");
    // The checkpoint answers before the writer thread removes the generation it retired.
    eventually("the retired generation removed", || {
        journal_files(dir.path())
            .iter()
            .all(|(_, path)| *path != current)
    })
    .await;
    assert_eq!(journal_file(dir.path()), next, "the checkpoint started it");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&next).expect("next")),
        next_inode,
        "the file made ahead, not a new one"
    );
    store
        .append(vec![part("after", 3)])
        .await
        .expect("append in the new generation");
    assert!(journal_data_len(dir.path()) > 0);
    assert_eq!(
        std::fs::metadata(&next).expect("next").len(),
        64 * 1024,
        "the append went into the room"
    );
    drop(store);
    let store = open(dir.path(), Arc::new(RealFs));
    let data = stored_data(&store);
    assert_eq!(data.len(), label * 50 + 3, "every record recovered");
    assert_eq!(data.last().map(String::as_str), Some("after-2"));
}

/// Once less than half a growth step of room is left, the writer thread grows the room by a
/// step of synced zeros on its own, so appends do not wait for zeros to be written and synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_thread_grows_the_journal_room_ahead_of_the_appends() {
    let dir = TempDir::new("room-ahead");
    let store = open_with_journal_room(dir.path(), 64 * 1024, 64 * 1024);
    store.add_shards(vec![SHARD]).await.expect("shard");
    let label = append_until_journal_holds(&store, dir.path(), 33 * 1024, 0).await;
    let current = journal_file(dir.path());
    // No append needs more than the first room; the file grows all the same.
    eventually("the room grown ahead by a step", || {
        std::fs::metadata(&current).is_ok_and(|m| m.len() == 128 * 1024)
    })
    .await;
    assert!(journal_data_len(dir.path()) < 64 * 1024);
    let listing = extents(&current);
    assert!(!listing.contains("unwritten"), "{listing}");
    // Appends go on into the room made ahead.
    let later = append_until_journal_holds(&store, dir.path(), 90 * 1024, label).await;
    assert!(later > label);
    let label = later;
    drop(store);
    let store = open(dir.path(), Arc::new(RealFs));
    assert_eq!(
        stored_data(&store).len(),
        label * 50,
        "every record recovered"
    );
}

/// Appends 50-record parts labelled `r<n>` (after `label`) until the newest journal holds
/// more than `bytes`; returns the last label.
async fn append_until_journal_holds(
    store: &Store,
    dir: &Path,
    bytes: u64,
    mut label: usize,
) -> usize {
    while journal_data_len(dir) <= bytes {
        label += 1;
        store
            .append(vec![part(&format!("r{label}"), 50)])
            .await
            .expect("append");
    }
    label
}

/// Where the newest journal's data ends: its length without the preallocated zeros after it
/// (the test records never end in a zero byte).
fn journal_data_len(dir: &Path) -> u64 {
    let bytes = std::fs::read(journal_file(dir)).expect("journal");
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last as u64 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_from_a_journal_cut_at_every_byte_keeps_exactly_the_whole_batches_before_it() {
    let dir = TempDir::new("cut-source");
    let store = open(dir.path(), Arc::new(RealFs));
    store.add_shards(vec![SHARD]).await.expect("shard");
    let mut boundaries = vec![(0u64, Vec::<String>::new())];
    let mut expected = Vec::new();
    for batch in 0..6 {
        let label = format!("b{batch}");
        store
            .append(vec![part(&label, batch + 1)])
            .await
            .expect("append");
        expected.extend((0..=batch).map(|i| format!("{label}-{i}")));
        let len = journal_data_len(dir.path());
        boundaries.push((len, expected.clone()));
    }
    // Crash: the journal and segments are copied as the writer left them, without a checkpoint.
    let snapshot = TempDir::new("cut-snapshot");
    copy_dir(dir.path(), snapshot.path());
    drop(store);

    let total = boundaries.last().expect("boundaries").0;
    let last_batches_start = boundaries[boundaries.len() - 4].0;
    for cut in last_batches_start..=total {
        let trial = TempDir::new("cut-trial");
        copy_dir(snapshot.path(), trial.path());
        let journal = journal_file(trial.path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&journal)
            .expect("open")
            .set_len(cut)
            .expect("cut");
        let store = open(trial.path(), Arc::new(RealFs));
        let whole = boundaries
            .iter()
            .rev()
            .find(|(end, _)| *end <= cut)
            .expect("a boundary");
        assert_eq!(stored_data(&store), whole.1, "journal cut at byte {cut}");
        // Recovery leaves a store that appends after what it kept.
        let landed = store
            .append(vec![part("next", 1)])
            .await
            .expect("append after recovery");
        assert_eq!(
            landed[0].base_offset,
            whole.1.len() as u64,
            "cut at byte {cut}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_byte_in_the_journal_stops_replay_at_the_batch_it_damages() {
    let dir = TempDir::new("corrupt");
    let store = open(dir.path(), Arc::new(RealFs));
    store.add_shards(vec![SHARD]).await.expect("shard");
    store.append(vec![part("keep", 2)]).await.expect("append");
    let keep_len = journal_data_len(dir.path());
    store
        .append(vec![part("damaged", 2)])
        .await
        .expect("append");
    store.append(vec![part("after", 2)]).await.expect("append");
    let snapshot = TempDir::new("corrupt-snapshot");
    copy_dir(dir.path(), snapshot.path());
    drop(store);
    let journal = journal_file(snapshot.path());
    let mut bytes = std::fs::read(&journal).expect("journal");
    bytes[keep_len as usize + 60] ^= 0x40;
    std::fs::write(&journal, bytes).expect("write");
    let store = open(snapshot.path(), Arc::new(RealFs));
    assert_eq!(stored_data(&store), ["keep-0", "keep-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_over_a_preallocated_journal_ends_at_its_data_and_reports_only_real_damage() {
    let dir = TempDir::new("room");
    let store = open(dir.path(), Arc::new(RealFs));
    store.add_shards(vec![SHARD]).await.expect("shard");
    store.append(vec![part("one", 2)]).await.expect("append");
    store.append(vec![part("two", 2)]).await.expect("append");
    let data_len = journal_data_len(dir.path());
    let file_len = std::fs::metadata(journal_file(dir.path()))
        .expect("journal")
        .len();
    assert!(
        file_len > data_len,
        "the journal has no preallocated room ({file_len} bytes, {data_len} of data)"
    );
    let reopen = |from: &Path| {
        let trial = TempDir::new("room-trial");
        copy_dir(from, trial.path());
        let options = StoreOptions {
            checkpoint_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        };
        let (store, report) = Store::open(
            trial.path(),
            Arc::new(RealFs),
            options,
            Clock::default(),
            &[SHARD],
            HashMap::new(),
        )
        .expect("store opens");
        (trial, store, report)
    };
    // A crash with the room still zero: everything is replayed, nothing is called damaged.
    let (_trial, recovered, report) = reopen(dir.path());
    assert_eq!(
        stored_data(&recovered),
        ["one-0", "one-1", "two-0", "two-1"]
    );
    assert_eq!((report.replayed_batches, report.dropped_bytes), (2, 0));
    assert_eq!(report.stopped_because, None);
    drop(recovered);
    // A torn write: the second batch's header zeroed while its body reached the disk. Replay
    // stops there and reports the bytes it dropped.
    let torn = TempDir::new("room-torn");
    copy_dir(dir.path(), torn.path());
    drop(store);
    let journal = journal_file(torn.path());
    let mut bytes = std::fs::read(&journal).expect("journal");
    let second = (48 + 2 * (2 + 3 + 4 + 5)) as usize;
    bytes[second..second + 48].fill(0);
    std::fs::write(&journal, bytes).expect("write");
    let (_trial, recovered, report) = reopen(torn.path());
    assert_eq!(stored_data(&recovered), ["one-0", "one-1"]);
    assert_eq!(report.dropped_bytes, data_len - second as u64);
    assert!(report.stopped_because.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_make_segments_durable_and_recovery_reads_them_back() {
    let dir = TempDir::new("checkpoint");
    let options = StoreOptions {
        checkpoint_interval: Duration::from_millis(200),
        segment_bytes: 1024,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(
        dir.path(),
        Arc::new(RealFs),
        options.clone(),
        Clock::default(),
        &[SHARD],
        HashMap::new(),
    )
    .expect("open");
    store.add_shards(vec![SHARD]).await.expect("shard");
    let mut expected = Vec::new();
    for batch in 0..40 {
        let label = format!("c{batch}");
        store.append(vec![part(&label, 20)]).await.expect("append");
        expected.extend((0..20).map(|i| format!("{label}-{i}")));
    }
    // A periodic checkpoint (every 200 ms) comes to cover every record appended.
    let checkpointed = || -> Option<u64> {
        let bytes = std::fs::read(dir.path().join("checkpoint.json")).ok()?;
        let checkpoint: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        checkpoint["shards"].as_array()?.first()?["next_offset"].as_u64()
    };
    eventually("a checkpoint of all 800 records", || {
        checkpointed() == Some(800)
    })
    .await;
    let segments = std::fs::read_dir(dir.path().join("streams/1/0"))
        .expect("shard dir")
        .flatten()
        .count();
    assert!(
        segments > 4,
        "segments roll at their size limit: {segments} files"
    );
    drop(store);
    let (reopened, report) = Store::open(
        dir.path(),
        Arc::new(RealFs),
        options,
        Clock::default(),
        &[SHARD],
        HashMap::new(),
    )
    .expect("reopen");
    assert_eq!(
        report.replayed_batches, 0,
        "the checkpoint already covered every batch"
    );
    assert_eq!(stored_data(&reopened), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_whole_expired_segments() {
    let dir = TempDir::new("retention-files");
    let options = StoreOptions {
        segment_bytes: 512,
        ..StoreOptions::default()
    };
    let clock = Clock::default();
    let retention = HashMap::from([(SHARD.stream_key, 24 * 3_600_000u64)]);
    let (store, _) = Store::open(
        dir.path(),
        Arc::new(RealFs),
        options,
        clock.clone(),
        &[SHARD],
        retention,
    )
    .expect("open");
    store.add_shards(vec![SHARD]).await.expect("shard");
    for batch in 0..20 {
        store
            .append(vec![part(&format!("old{batch}"), 5)])
            .await
            .expect("append");
    }
    let segment_files = |dir: &Path| {
        std::fs::read_dir(dir.join("streams/1/0"))
            .expect("shard dir")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
            .count()
    };
    let before = segment_files(dir.path());
    assert!(before > 3, "small segments rolled: {before}");
    clock.advance(25 * 3_600_000);
    store.append(vec![part("fresh", 1)]).await.expect("append");
    // The writer's housekeeping deletes them on its next rounds.
    eventually(
        "every sealed segment older than the retention deleted",
        || segment_files(dir.path()) == 1,
    )
    .await;
    let log = store.log(SHARD).expect("shard");
    let cutoff = clock.now_ms() - 24 * 3_600_000;
    let limits = ReadLimits {
        max_records: 1000,
        max_bytes: u64::MAX,
        not_before_ms: cutoff,
    };
    let outcome = log.read(0, limits).expect("read");
    let data: Vec<Vec<u8>> = outcome
        .batches
        .iter()
        .flat_map(|b| {
            records(&b.body)
                .skip(b.skip as usize)
                .take(b.take as usize)
                .map(|r| r.expect("record").data.to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(data, [b"fresh-0".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_land_on_the_right_record_in_sealed_segments_before_and_after_recovery() {
    let dir = TempDir::new("sealed-index");
    let options = StoreOptions {
        segment_bytes: 2 * 1024 * 1024,
        checkpoint_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let open_store = || {
        Store::open(
            dir.path(),
            Arc::new(RealFs),
            options.clone(),
            Clock::default(),
            &[SHARD],
            HashMap::new(),
        )
        .expect("open")
        .0
    };
    let store = open_store();
    store.add_shards(vec![SHARD]).await.expect("shard");
    let payload = vec![b'p'; 4000];
    for batch in 0..60u64 {
        let mut body = BodyBuilder::default();
        for i in 0..20u64 {
            let mut data = format!("{:06}|", batch * 20 + i).into_bytes();
            data.extend_from_slice(&payload);
            body.push("k", &data);
        }
        append_body(&store, body).await;
    }
    let segments = std::fs::read_dir(dir.path().join("streams/1/0"))
        .expect("shard dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert!(
        segments >= 2,
        "the shard rolled into sealed segments: {segments}"
    );
    let check = |store: &Store| {
        let log = store.log(SHARD).expect("shard");
        for offset in [0u64, 17, 333, 600, 871, 1199] {
            let limits = ReadLimits {
                max_records: 1,
                max_bytes: u64::MAX,
                not_before_ms: 0,
            };
            let outcome = log.read(offset, limits).expect("read");
            let batch = &outcome.batches[0];
            let record = records(&batch.body)
                .nth(batch.skip as usize)
                .expect("a record")
                .expect("intact");
            assert_eq!(
                &record.data[..7],
                format!("{offset:06}|").as_bytes(),
                "read at offset {offset}"
            );
        }
    };
    check(&store);
    drop(store);
    check(&open_store());
}
