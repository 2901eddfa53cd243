//! Group commit as a caller sees it: appends write the journal on their own task, a lone
//! append syncs it there too, appends written while a sync runs share one later sync on the
//! syncer thread, and a round
//! whose caller went away is still synced, published in order and waited for by a checkpoint;
//! a checkpoint syncs the bulk of the segments before it takes the writer and removes the old
//! journal after letting it go, and segment bytes are written back as they are written. A file layer records the journal's calls
//! and holds a sync until the test lets it go, so every step is an event, never a delay.

mod support;

use brook::broker::shard::StoreOptions;
use support::broker::TempDir;
use support::recording_fs::{
    Event, append_promptly, open_recorded, open_recorded_with, part, restarted, stored_data,
    wait_for_count, wait_for_removal_in, wait_for_writebacks,
};

/// Journal bytes of a one-record part whose data is `x-0`: header 48, then per record its key
/// length (2), key (1), data length (4) and data (3).
const ONE_RECORD: usize = 48 + 2 + 1 + 4 + 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_write_on_their_own_task_and_those_written_during_a_sync_share_one_later_sync() {
    appends_written_during_a_lone_append_s_sync_share_one_later_sync().await;
}

/// With one worker the lone append's sync must not hold the runtime: the four later appends
/// are written while it is held only if the worker's other tasks moved to another thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn on_a_runtime_of_one_worker_appends_are_still_written_during_a_lone_append_s_sync() {
    appends_written_during_a_lone_append_s_sync_share_one_later_sync().await;
}

async fn appends_written_during_a_lone_append_s_sync_share_one_later_sync() {
    let dir = TempDir::new("group-commit");
    let (recording, store) = open_recorded(dir.path()).await;
    recording.hold(true);
    let spawn_append = |label: String| {
        let writer = store.clone();
        let acknowledged = recording.clone();
        tokio::spawn(async move {
            let landed = writer.append(vec![part(&label, 1)]).await;
            acknowledged.record(Event::Acknowledged);
            landed
        })
    };
    let first = spawn_append("a".into());
    wait_for_count(&recording, Event::SyncStarted, 1).await;
    // Four appends are written while the first one's sync is held.
    let later: Vec<_> = (1..=4).map(|i| spawn_append(format!("{i}"))).collect();
    wait_for_count(&recording, Event::Append(ONE_RECORD), 5).await;
    assert!(
        stored_data(&store).is_empty(),
        "readers saw records before their sync"
    );
    recording.hold(false);
    let first = first.await.expect("task").expect("append");
    let mut offsets = vec![first[0].base_offset];
    for append in later {
        offsets.push(append.await.expect("task").expect("append")[0].base_offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 1, 2, 3, 4], "every append has its own offset");

    let events = recording.events.lock().expect("lock").clone();
    let syncs = events.iter().filter(|e| **e == Event::SyncStarted).count();
    // The last of the four may be queued a moment after its write was seen: at most two syncs.
    assert!(
        (2..=3).contains(&syncs),
        "four appends written during one sync took {} syncs of their own: {events:?}",
        syncs - 1
    );
    let last_write = events
        .iter()
        .rposition(|e| *e == Event::Append(ONE_RECORD))
        .expect("writes");
    let first_return = events
        .iter()
        .position(|e| *e == Event::SyncReturned)
        .expect("a sync returned");
    assert!(
        last_write < first_return,
        "an append waited for the running sync before being written: {events:?}"
    );
    let acknowledgements_after_first_return = events[first_return..]
        .iter()
        .filter(|e| **e == Event::Acknowledged)
        .count();
    assert_eq!(acknowledgements_after_first_return, 5, "{events:?}");

    let writes = recording.write_threads.lock().expect("lock").clone();
    assert!(
        writes
            .iter()
            .all(|t| t != "brook-syncer" && t != "brook-writer"),
        "journal writes went through another thread instead of the request's own: {writes:?}"
    );
    let syncs = recording.sync_threads.lock().expect("lock").clone();
    let lone_append_synced_on = &syncs[0];
    assert!(
        lone_append_synced_on != "brook-syncer" && lone_append_synced_on != "brook-writer",
        "the first append, alone, handed its sync to another thread: {syncs:?}"
    );
    assert!(
        syncs.iter().all(|t| t != "brook-writer"),
        "a sync ran on the writer thread: {syncs:?}"
    );
    let mut stored = stored_data(&store);
    assert_eq!(stored.remove(0), "a-0", "the first append is first");
    stored.sort();
    assert_eq!(stored, ["1-0", "2-0", "3-0", "4-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_whose_caller_went_away_is_synced_and_published_and_a_checkpoint_waits_for_it() {
    let dir = TempDir::new("abandoned-round");
    let (recording, store) = open_recorded(dir.path()).await;
    recording.hold(true);
    let writer = store.clone();
    let first = tokio::spawn(async move { writer.append(vec![part("a", 1)]).await });
    wait_for_count(&recording, Event::SyncStarted, 1).await;
    let writer = store.clone();
    let abandoned = tokio::spawn(async move { writer.append(vec![part("b", 1)]).await });
    wait_for_count(&recording, Event::Append(ONE_RECORD), 2).await;
    // Its caller goes away (a client that hung up) once the round is written.
    abandoned.abort();
    assert!(
        abandoned.await.is_err_and(|e| e.is_cancelled()),
        "the abandoned append finished before it was cut short"
    );
    let checkpointing = store.clone();
    let checkpoint = tokio::spawn(async move { checkpointing.checkpoint().await });
    recording.hold(false);
    first.await.expect("task").expect("append");
    checkpoint.await.expect("task").expect("checkpoint");
    // The checkpoint waited for every written round: both are readable once it returns.
    assert_eq!(stored_data(&store), ["a-0", "b-0"]);
    let syncs = recording
        .events
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| **e == Event::SyncStarted)
        .count();
    assert!(syncs >= 2, "the abandoned round was never synced");
    let reopened = restarted(dir.path(), store, recording).await;
    assert_eq!(stored_data(&reopened), ["a-0", "b-0"], "after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_syncs_the_bulk_of_the_segments_while_appends_go_on() {
    let dir = TempDir::new("checkpoint-ahead");
    let (recording, store) = open_recorded(dir.path()).await;
    store
        .append(vec![part("a", 1)])
        .await
        .expect("the first append");
    // Every segment sync is held from now on: the checkpoint's first one is the sync ahead.
    recording.hold_segments(true);
    let checkpointing = store.clone();
    let checkpoint = tokio::spawn(async move { checkpointing.checkpoint().await });
    wait_for_count(&recording, Event::SegmentSyncStarted, 1).await;

    // While that sync is held, an append is written, synced and acknowledged: the writer's
    // lock is free.
    let appended = append_promptly(
        &store,
        part("b", 1),
        "an append waited for the checkpoint's segment sync",
    )
    .await;
    assert_eq!(appended[0].base_offset, 1);
    assert!(!checkpoint.is_finished(), "the checkpoint did not wait");

    recording.hold_segments(false);
    checkpoint
        .await
        .expect("task")
        .expect("the checkpoint completes");
    assert_eq!(stored_data(&store), ["a-0", "b-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_bytes_are_written_back_on_the_writer_thread_as_they_are_written() {
    let dir = TempDir::new("segment-writeback");
    let options = StoreOptions {
        segment_writeback: 64 * 1024,
        journal_room: 1024 * 1024,
        ..support::recording_fs::options()
    };
    let (recording, store) = open_recorded_with(dir.path(), options).await;
    recording.hold_writebacks(true);
    // A part of 2,000 records takes 26 KiB: the third passes the 64 KiB step.
    for label in ["a", "b", "c"] {
        store.append(vec![part(label, 2000)]).await.expect("append");
    }
    wait_for_writebacks(&recording, 1).await;

    // While the write-back is held, an append is written, synced and acknowledged: the
    // writer's lock is free.
    let appended =
        append_promptly(&store, part("d", 1), "an append waited for the write-back").await;
    assert_eq!(appended[0].base_offset, 6000);

    recording.hold_writebacks(false);
    for label in ["e", "f", "g"] {
        store.append(vec![part(label, 2000)]).await.expect("append");
    }
    wait_for_writebacks(&recording, 2).await;

    let writebacks = recording.writebacks();
    let mut expected_from = 0;
    for (from, to, thread) in &writebacks {
        assert_eq!(
            *from, expected_from,
            "write-backs leave a gap or overlap: {writebacks:?}"
        );
        assert!(
            to > from && to % 4096 == 0,
            "not whole pages: {writebacks:?}"
        );
        assert_eq!(thread, "brook-writer", "{writebacks:?}");
        expected_from = *to;
    }
    assert!(
        writebacks[0].1 >= 64 * 1024,
        "the first write-back started before the step was written: {writebacks:?}"
    );

    let expected: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .flat_map(|label| {
            let count = if *label == "d" { 1 } else { 2000 };
            (0..count).map(move |i| format!("{label}-{i}"))
        })
        .collect();
    assert_eq!(stored_data(&store), expected);
    let reopened = restarted(dir.path(), store, recording).await;
    assert_eq!(stored_data(&reopened), expected, "after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_removes_the_old_journal_after_letting_the_writer_go() {
    let dir = TempDir::new("journal-removal");
    let (recording, store) = open_recorded(dir.path()).await;
    store
        .append(vec![part("a", 1)])
        .await
        .expect("the first append");
    // Every removal is held from now on: the checkpoint retires the journal generation that
    // holds the first append.
    recording.hold_removals(true);
    let checkpointing = store.clone();
    let checkpoint = tokio::spawn(async move { checkpointing.checkpoint().await });
    let journal_folder = dir.path().join("journal");
    let (old_journal, thread) = wait_for_removal_in(&recording, &journal_folder).await;
    assert_eq!(thread, "brook-writer");

    // While that removal is held, an append is written, synced and acknowledged: the
    // writer's lock is free.
    let appended = append_promptly(
        &store,
        part("b", 1),
        "an append waited for the old journal's removal",
    )
    .await;
    assert_eq!(appended[0].base_offset, 1);
    assert!(old_journal.exists(), "the removal was not held");

    recording.hold_removals(false);
    checkpoint
        .await
        .expect("task")
        .expect("the checkpoint completes");
    wait_for_count(&recording, Event::Removed(old_journal.clone()), 1).await;
    assert!(!old_journal.exists(), "the old journal is still there");
    let generations = std::fs::read_dir(&journal_folder)
        .expect("the journal folder")
        .count();
    assert!(
        generations <= 2,
        "the current generation and at most the next one made ahead: {generations} files"
    );
    let reopened = restarted(dir.path(), store, recording).await;
    assert_eq!(stored_data(&reopened), ["a-0", "b-0"], "after a restart");
}
