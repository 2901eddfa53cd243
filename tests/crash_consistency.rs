//! Power-loss crash consistency, in the style of CrashMonkey and ALICE. `kill -9` leaves the
//! page cache in place; a power cut does not. A file layer for tests records every call the
//! storage writer makes (creates, appends, data syncs, directory syncs, atomic replaces,
//! removes), interleaved with the acknowledgements the writer gave. For every cut point of a
//! run with appends, segment rolls, checkpoints, a restart (recovery's own calls
//! included) and a reshard, the image a POSIX file system
//! must keep is built (a file's contents up to its last sync; a new directory entry, or the
//! removal of one, only once its parent directory was synced), recovery runs on it, and every
//! record acknowledged before the cut must be there exactly once, in order, intact.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brook::broker::shard::batch::BodyBuilder;
use brook::broker::shard::fs::RealFs;
use brook::broker::shard::{AppendPart, Clock, ShardKey, Store, StoreOptions};
use support::broker::TempDir;
use support::power_cut::{Cut, PowerCutModel, RecordingFs, describe};

/// Records the store acknowledged to a producer.
#[derive(Debug, Clone)]
struct Acknowledged {
    shard: ShardKey,
    data: Vec<String>,
}

type Op = support::power_cut::Op<Acknowledged>;
type Recorder = support::power_cut::Recorder<Acknowledged>;

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
        journal_growth: 2048,
        // Small, so the writer thread starts segment write-backs all through the run (they
        // make nothing durable: the model keeps a file's unsynced bytes out of a power cut).
        segment_writeback: 1024,
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
        .push(Op::Acknowledged(Acknowledged { shard, data }));
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

/// The recorded run: appends, segment rolls, checkpoints, a restart, a reshard, more of each.
async fn recorded_run(dir: &Path) -> Vec<Op> {
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let fs = Arc::new(RecordingFs {
        root: dir.to_path_buf(),
        recorder: recorder.clone(),
    });
    let (store, _) = Store::open(
        dir,
        fs.clone(),
        options(),
        Clock::default(),
        &[PARENT],
        retention(),
    )
    .expect("store opens");
    store.add_shards(vec![PARENT]).await.expect("shard");
    append_batches(&store, &recorder, &[PARENT], "p", 4).await;
    // The process ends without a shutdown and starts again: recovery's own calls are recorded
    // too, so power cuts while it replays, checkpoints and removes old journals are tried.
    drop(store);
    support::threads_ended(&["brook-writer", "brook-syncer", "brook-ticker"]).await;
    let (store, _) = Store::open(dir, fs, options(), Clock::default(), &[PARENT], retention())
        .expect("store recovers");
    append_batches(&store, &recorder, &[PARENT], "q", 4).await;
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
            Op::Acknowledged(Acknowledged { data, .. }) => data.len(),
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
            if let Op::Acknowledged(Acknowledged { shard, data }) = op {
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
