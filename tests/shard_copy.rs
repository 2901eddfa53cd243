//! Copying a closed shard's log from one store to another (how a leaving broker pod's closed
//! shards are drained to the pods that stay): every record keeps its offset and arrival time,
//! the copy survives a restart without a clean shutdown, a copy that fails or is cut short
//! leaves nothing, and the store that gave the shard up forgets it for good.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use brook::broker::shard::batch::BodyBuilder;
use brook::broker::shard::checkpoint::ShardCheckpoint;
use brook::broker::shard::fs::RealFs;
use brook::broker::shard::transfer::{SegmentSource, TransferError};
use brook::broker::shard::{
    AppendPart, Clock, ReadLimits, ShardKey, Store, StoreError, StoreOptions,
};
use support::broker::TempDir;

const SHARD: ShardKey = ShardKey {
    stream_key: 7,
    shard_index: 3,
};

fn options() -> StoreOptions {
    StoreOptions {
        checkpoint_interval: Duration::from_secs(3600),
        journal_room: 64 * 1024,
        // Small, so the shard spans many segments.
        segment_bytes: 4 * 1024,
        ..StoreOptions::default()
    }
}

fn open(dir: &Path) -> Store {
    let (store, _) = Store::open(
        dir,
        Arc::new(RealFs),
        options(),
        Clock::default(),
        &[SHARD],
        HashMap::new(),
    )
    .expect("store opens");
    store
}

/// Every record of the shard: offset, arrival time, key and data.
fn records(store: &Store) -> Vec<(u64, u64, String, Vec<u8>)> {
    let limits = ReadLimits {
        max_records: 1_000_000,
        max_bytes: u64::MAX,
        not_before_ms: 0,
    };
    let outcome = store
        .log(SHARD)
        .expect("the shard")
        .read(0, limits)
        .expect("read");
    outcome
        .records()
        .map(|r| {
            let r = r.expect("a well-formed record");
            (
                r.offset,
                r.arrival_ms,
                r.record.partition_key.to_owned(),
                r.record.data.to_vec(),
            )
        })
        .collect()
}

/// Appends batch `batch`: 10 records under one key.
async fn append_batch(store: &Store, batch: usize) {
    let mut body = BodyBuilder::default();
    for i in 0..10 {
        body.push(
            &format!("key-{batch}"),
            format!("record {batch}/{i}").as_bytes(),
        );
    }
    store
        .append(vec![AppendPart {
            shard: SHARD,
            body: body.finish(),
        }])
        .await
        .expect("append");
}

/// Copies the shard whole from `source` into `target`.
async fn copy_whole(target: &Store, source: &Store) -> Result<ShardCheckpoint, StoreError> {
    let source = StoreSource {
        store: source,
        damage_at: None,
    };
    target.import_shard(SHARD, &source).await
}

/// A source store with 60 batches of 10 records (each batch a few milliseconds apart), the
/// shard then closed.
async fn filled_source(dir: &Path) -> Store {
    let store = open(dir);
    store.add_shards(vec![SHARD]).await.expect("shard");
    for batch in 0..60 {
        append_batch(&store, batch).await;
        if batch % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    store.close_shard(SHARD).await.expect("close");
    store
}

/// Reads a store the way the internal port would serve it, optionally damaging one byte of
/// the batches it hands out.
struct StoreSource<'a> {
    store: &'a Store,
    damage_at: Option<usize>,
}

impl SegmentSource for StoreSource<'_> {
    async fn listing(&self) -> Result<ShardCheckpoint, TransferError> {
        self.store
            .listing(SHARD)
            .ok_or_else(|| TransferError::Source("no such shard".into()))
    }

    async fn batches(&self, base_offset: u64, position: u64) -> Result<Vec<u8>, TransferError> {
        let mut bytes = self
            .store
            .batches(SHARD, base_offset, position)
            .ok_or_else(|| TransferError::Source("no such segment".into()))??;
        if let Some(at) = self.damage_at
            && base_offset > 0
            && at < bytes.len()
        {
            bytes[at] ^= 0x40;
        }
        Ok(bytes)
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

fn shard_dir(data: &Path) -> std::path::PathBuf {
    data.join("streams").join("7").join("3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_copied_shard_keeps_every_offset_and_arrival_time_and_survives_a_restart() {
    let (from_dir, to_dir) = (TempDir::new("copy-from"), TempDir::new("copy-to"));
    let source = filled_source(from_dir.path()).await;
    let listing = source.listing(SHARD).expect("listing");
    assert!(
        listing.segments.len() > 3,
        "the shard spans several segments: {listing:?}"
    );
    let expected = records(&source);
    assert_eq!(expected.len(), 600);

    let target = open(to_dir.path());
    target.add_shards(vec![SHARD]).await.expect("empty shard");
    let copied = copy_whole(&target, &source).await.expect("copy");
    assert_eq!(copied, listing);
    assert_eq!(records(&target), expected, "read back from the copy");
    // Asking again changes nothing: the copy is already whole.
    copy_whole(&target, &source)
        .await
        .expect("the same copy again");
    // The copy is closed like its source: nothing more is written to it.
    let mut body = BodyBuilder::default();
    body.push("late", b"late");
    let refused = target
        .append(vec![AppendPart {
            shard: SHARD,
            body: body.finish(),
        }])
        .await;
    assert!(
        matches!(refused, Err(StoreError::ShardClosed(_))),
        "{refused:?}"
    );
    // No clean shutdown (a kill -9): the checkpoint the copy made is what recovery reads.
    drop(target);
    let reopened = open(to_dir.path());
    assert_eq!(records(&reopened), expected, "read back after a restart");
    assert_eq!(reopened.listing(SHARD), Some(listing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_copy_of_damaged_bytes_is_refused_and_leaves_nothing_behind() {
    let (from_dir, to_dir) = (TempDir::new("copy-bad-from"), TempDir::new("copy-bad-to"));
    let source = filled_source(from_dir.path()).await;
    let target = open(to_dir.path());
    target.add_shards(vec![SHARD]).await.expect("empty shard");
    for damage_at in [3usize, 60, 200] {
        let failed = target
            .import_shard(
                SHARD,
                &StoreSource {
                    store: &source,
                    damage_at: Some(damage_at),
                },
            )
            .await;
        assert!(
            matches!(failed, Err(StoreError::Copy(_))),
            "byte {damage_at} damaged: {failed:?}"
        );
        assert_eq!(records(&target), Vec::new(), "nothing readable");
        assert_eq!(
            files_under(&shard_dir(to_dir.path())),
            Vec::<String>::new(),
            "no file left"
        );
    }
    // A whole copy afterwards succeeds.
    copy_whole(&target, &source).await.expect("copy");
    assert_eq!(records(&target), records(&source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_segments_a_copy_wrote_but_never_adopted_are_removed_at_restart() {
    let (from_dir, to_dir) = (TempDir::new("copy-cut-from"), TempDir::new("copy-cut-to"));
    let source = filled_source(from_dir.path()).await;
    {
        let target = open(to_dir.path());
        target.add_shards(vec![SHARD]).await.expect("empty shard");
        target.checkpoint().await.expect("checkpoint");
        // The process dies after writing segment files, before the copy is adopted: as a
        // copy cut short would leave them (bytes copied verbatim).
        let dir = shard_dir(to_dir.path());
        std::fs::create_dir_all(&dir).expect("dir");
        for entry in std::fs::read_dir(shard_dir(from_dir.path()))
            .expect("source files")
            .flatten()
        {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy file");
        }
        assert!(!files_under(&dir).is_empty());
    }
    let reopened = open(to_dir.path());
    assert_eq!(records(&reopened), Vec::new(), "nothing of the cut copy");
    assert_eq!(files_under(&shard_dir(to_dir.path())), Vec::<String>::new());
    drop(source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_store_that_gave_a_shard_up_forgets_it_and_its_files_for_good() {
    let dir = TempDir::new("copy-forget");
    let source = filled_source(dir.path()).await;
    let expected = records(&source);
    // A reader that took the log before the shard was given up reads on from its files.
    let held = source.log(SHARD).expect("log");
    source.forget_shard(SHARD).await.expect("forget");
    assert_eq!(records(&source), Vec::new(), "a new reader finds nothing");
    assert_eq!(
        files_under(&shard_dir(dir.path())),
        Vec::<String>::new(),
        "the files are deleted"
    );
    let limits = ReadLimits {
        max_records: 1_000_000,
        max_bytes: u64::MAX,
        not_before_ms: 0,
    };
    let outcome = held.read(0, limits).expect("the held log still reads");
    assert_eq!(outcome.records().count(), expected.len());
    // Nothing comes back at restart, without a clean shutdown either.
    drop(source);
    let reopened = open(dir.path());
    assert_eq!(records(&reopened), Vec::new());
    assert_eq!(reopened.listing(SHARD).map(|l| l.next_offset), Some(0));
}

type Op = support::power_cut::Op<()>;
type Recorder = support::power_cut::Recorder<()>;
type Record = (u64, u64, String, Vec<u8>);

/// A store over a recording file layer in `dir`, with the shard (empty), and its recorder.
async fn recorded_store(dir: &Path) -> (Store, Arc<std::sync::Mutex<Recorder>>) {
    let recorder = Arc::new(std::sync::Mutex::new(Recorder::default()));
    let fs = Arc::new(support::power_cut::RecordingFs {
        root: dir.to_path_buf(),
        recorder: recorder.clone(),
    });
    let (store, _) = Store::open(
        dir,
        fs,
        options(),
        Clock::default(),
        &[SHARD],
        HashMap::new(),
    )
    .expect("store opens");
    store.add_shards(vec![SHARD]).await.expect("shard");
    (store, recorder)
}

/// Recovers the image of every cut point of `ops`, after a power cut and after a `kill -9`,
/// and hands `check` how many acknowledgements came before the cut, the records recovered
/// and where the cut was. Returns the number of power-cut images.
fn every_cut(ops: &[Op], mut check: impl FnMut(usize, &[Record], &str)) -> usize {
    use support::power_cut::{Cut, PowerCutModel, describe};
    let mut model = PowerCutModel::default();
    let (mut acknowledged, mut power_cuts) = (0, 0);
    for cut in 0..=ops.len() {
        if cut > 0 {
            model.apply(&ops[cut - 1]);
            if matches!(ops[cut - 1], Op::Acknowledged(())) {
                acknowledged += 1;
                continue;
            }
        }
        for kind in [Cut::Power, Cut::Process] {
            let image = TempDir::new("copy-cut-image");
            model.materialize(image.path(), kind);
            let at = format!(
                "{kind:?} cut after op {cut} ({})",
                describe(ops.get(cut.wrapping_sub(1)))
            );
            let (store, _) = Store::open(
                image.path(),
                Arc::new(RealFs),
                options(),
                Clock::default(),
                &[SHARD],
                HashMap::new(),
            )
            .unwrap_or_else(|e| panic!("{at}: recovery failed: {e}"));
            check(acknowledged, &records(&store), &at);
            power_cuts += usize::from(matches!(kind, Cut::Power));
        }
    }
    power_cuts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_copy_cut_by_a_power_cut_anywhere_is_whole_once_done_and_never_in_part() {
    let (from_dir, run) = (TempDir::new("copy-cut-src"), TempDir::new("copy-cut-run"));
    let source = filled_source(from_dir.path()).await;
    let expected = records(&source);
    let (target, recorder) = recorded_store(run.path()).await;
    copy_whole(&target, &source).await.expect("copy");
    // The copy is done: from here on it must survive anything.
    recorder
        .lock()
        .expect("lock")
        .ops
        .push(Op::Acknowledged(()));
    target.shutdown().await.expect("shutdown");
    let ops = recorder.lock().expect("lock").ops.clone();
    let mut whole_early = 0;
    let power_cuts = every_cut(&ops, |done, found, at| {
        if done > 0 {
            assert_eq!(found, expected, "{at}: after the copy was done");
        } else {
            assert!(
                found.is_empty() || found == expected,
                "{at}: {} of {} records, a copy in part",
                found.len(),
                expected.len()
            );
            whole_early += usize::from(!found.is_empty());
        }
    });
    eprintln!(
        "copy: {power_cuts} power-cut and as many kill -9 images over {} recorded calls; whole before the copy returned in {whole_early}",
        ops.len()
    );
    assert!(power_cuts > 30, "{power_cuts} power-cut images");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_shard_given_up_is_whole_or_gone_at_any_power_cut_and_gone_once_done() {
    let run = TempDir::new("forget-cut-run");
    let (store, recorder) = recorded_store(run.path()).await;
    for batch in 0..40 {
        append_batch(&store, batch).await;
    }
    store.close_shard(SHARD).await.expect("close");
    store.checkpoint().await.expect("checkpoint");
    let expected = records(&store);
    assert_eq!(expected.len(), 400);
    // Whole from here on, until it is given up.
    recorder
        .lock()
        .expect("lock")
        .ops
        .push(Op::Acknowledged(()));
    store.forget_shard(SHARD).await.expect("forget");
    recorder
        .lock()
        .expect("lock")
        .ops
        .push(Op::Acknowledged(()));
    store.shutdown().await.expect("shutdown");
    let ops = recorder.lock().expect("lock").ops.clone();
    let power_cuts = every_cut(&ops, |phase, found, at| match phase {
        0 => {}
        1 => assert!(
            found == expected || found.is_empty(),
            "{at}: {} of {} records while giving the shard up",
            found.len(),
            expected.len()
        ),
        _ => assert!(
            found.is_empty(),
            "{at}: the shard is back after it was given up"
        ),
    });
    assert!(power_cuts > 30, "{power_cuts} power-cut images");
}
