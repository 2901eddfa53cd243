//! Power-loss crash consistency of the queues' delivery state, with the recording file layer
//! of `crash_consistency.rs`: a run creates two queues (the first in a new `queues/` folder),
//! receives records, acknowledges them, changes their visibility, makes dead letters and
//! restores them, with a file rewritten as one snapshot every few changes. For every cut point,
//! the image a power cut leaves (and the one `kill -9` leaves) is loaded, and every queue
//! whose creation was answered must be there, in the state after every call answered before
//! the cut (or after the one call under way: its change may have reached the disk before its
//! answer did).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use brook::broker::protocol::ApiError;
use brook::broker::queue::Queues;
use brook::broker::queue::state::{Change, QueueState, RecordKey};
use brook::broker::shard::fs::RealFs;
use support::broker::TempDir;
use support::power_cut::{Cut, PowerCutModel, RecordingFs, describe};

/// What the run answered: a queue created, or a queue's `n`th call done.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answered {
    Created(&'static str),
    Call(&'static str, usize),
}

type Op = support::power_cut::Op<Answered>;

/// The changes of call `n` of a queue whose state is `state`: receive two records,
/// acknowledge, change visibility, dead-letter, restore, acknowledge, in turn (so as many
/// records are acknowledged as received, and the file's snapshots stay small).
fn call(state: &QueueState, n: usize) -> Vec<Change> {
    let now = 1_000_000 + n as u64 * 10;
    let outstanding: Vec<RecordKey> = state.outstanding.keys().copied().collect();
    let pick = |i: usize| outstanding.get(i % outstanding.len().max(1)).copied();
    match (n % 6, pick(n)) {
        (1 | 5, Some(key)) => vec![Change::Acknowledged(key)],
        (2, Some(key)) => vec![Change::Visibility(key, now + 30_000)],
        (3, Some(key)) => vec![Change::DeadLettered(key, now)],
        (4, Some(key)) => vec![Change::Restored(key, now)],
        _ => {
            // Receive the next two records of shard n % 2.
            let shard = (n % 2) as u32;
            let first = state.cursor(shard);
            (first..first + 2)
                .map(|offset| {
                    let key = (shard, offset);
                    Change::Delivered(key, state.receive(key, now, 30_000, now - 5, false))
                })
                .collect()
        }
    }
}

/// Calls on the first queue before the second exists; then as many on each, in turn.
const CALLS: usize = 60;

/// Runs call `number` on queue `name` and checks it against the expected history.
fn run_call(
    queues: &Queues,
    states: &mut HashMap<&'static str, Vec<QueueState>>,
    name: &'static str,
) -> usize {
    let history = states.get_mut(name).expect("history");
    let number = history.len();
    let queue = queues.get(name).expect("open");
    queue
        .update(|state| Ok::<_, ApiError>((call(state, number), ())))
        .expect("update");
    let mut expected = history.last().expect("state").clone();
    for change in call(&expected, number) {
        expected.apply(&change);
    }
    assert_eq!(queue.read(|state| state.clone()), expected, "call {number}");
    history.push(expected);
    number
}

/// The recorded run, and each queue's state after each of its calls (index 0: created).
fn recorded_run(dir: &Path) -> (Vec<Op>, HashMap<&'static str, Vec<QueueState>>) {
    let recorder = Arc::new(Mutex::new(support::power_cut::Recorder::default()));
    let fs = Arc::new(RecordingFs {
        root: dir.to_path_buf(),
        recorder: recorder.clone(),
    });
    let answered = |what| {
        recorder
            .lock()
            .expect("lock")
            .ops
            .push(Op::Acknowledged(what))
    };
    // A snapshot every few changes, so cuts fall around many rewrites.
    let queues = Queues::new(dir.join("queues"), true, fs).compacting_after(1);
    let mut states: HashMap<&'static str, Vec<QueueState>> = HashMap::new();
    let start = QueueState::starting_at(BTreeMap::from([(0, 0), (1, 0)]));
    let create = |states: &mut HashMap<_, _>, name: &'static str| {
        queues.create(name, start.clone()).expect("create");
        answered(Answered::Created(name));
        states.insert(name, vec![start.clone()]);
    };
    create(&mut states, "first");
    for _ in 0..CALLS {
        let number = run_call(&queues, &mut states, "first");
        answered(Answered::Call("first", number));
    }
    create(&mut states, "second");
    for _ in 0..CALLS {
        for name in ["first", "second"] {
            let number = run_call(&queues, &mut states, name);
            answered(Answered::Call(name, number));
        }
    }
    let ops = recorder.lock().expect("lock").ops.clone();
    (ops, states)
}

#[test]
fn crash_consistency_queue_state_survives_every_power_cut() {
    let run = TempDir::new("queue-power-cut-run");
    let (ops, states) = recorded_run(run.path());
    let rewrites = ops
        .iter()
        .filter(|op| matches!(op, Op::ReplaceAtomically { .. }))
        .count();
    assert!(
        rewrites > 10,
        "{rewrites} snapshots written: compaction ran"
    );

    let mut model = PowerCutModel::default();
    // Per queue: calls answered so far (None until its creation was answered).
    let mut answered: HashMap<&str, Option<usize>> = HashMap::new();
    let mut power_cuts = 0;
    for cut in 0..=ops.len() {
        if cut > 0 {
            let op = &ops[cut - 1];
            model.apply(op);
            match op {
                Op::Acknowledged(Answered::Created(name)) => {
                    answered.insert(name, Some(0));
                    continue;
                }
                Op::Acknowledged(Answered::Call(name, n)) => {
                    answered.insert(name, Some(*n));
                    continue;
                }
                _ => {}
            }
        }
        for kind in [Cut::Power, Cut::Process] {
            let image = TempDir::new("queue-power-cut-image");
            model.materialize(image.path(), kind);
            let queues = Queues::new(image.path().join("queues"), true, Arc::new(RealFs));
            for (name, done) in &answered {
                let Some(done) = *done else { continue };
                let at = || describe(ops.get(cut.wrapping_sub(1)));
                let queue = queues.get(name).unwrap_or_else(|e| {
                    panic!(
                        "{kind:?} cut after op {cut} ({}): queue {name}, created and answered, does not load: {e}",
                        at()
                    )
                });
                let loaded = queue.read(|state| state.clone());
                let history = &states[name];
                // The state after every answered call, or after the one under way.
                let fits = history[done] == loaded
                    || history.get(done + 1).is_some_and(|next| *next == loaded);
                assert!(
                    fits,
                    "{kind:?} cut after op {cut} ({}): queue {name} lost answered call {done} or more",
                    at()
                );
            }
            power_cuts += usize::from(matches!(kind, Cut::Power));
        }
    }
    eprintln!(
        "queue crash consistency: {power_cuts} power-cut images and as many process-kill images from {} recorded calls, {rewrites} snapshots",
        ops.len()
    );
    assert!(power_cuts > 300, "{power_cuts} power-cut images");
}
