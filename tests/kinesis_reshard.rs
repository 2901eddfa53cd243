//! Resharding through the official AWS SDK for Rust: split, merge and UpdateShardCount while
//! producers write, then every shard read in lineage order; nothing lost, nothing twice, and
//! per-key order intact.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ScalingType, ShardFilter, ShardFilterType, ShardIteratorType,
    StreamStatus,
};
use support::broker::{BrokerBuilder, TempDir, create_active_stream, error_code, wait_for_status};

/// Reads every shard to its end, parents before children; returns records in reading order.
async fn read_in_lineage_order(client: &Client, stream: &str) -> Vec<(String, String, Vec<u8>)> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let parents: HashMap<String, Vec<String>> = shards
        .shards()
        .iter()
        .map(|s| {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            (s.shard_id().to_owned(), parents)
        })
        .collect();
    let mut done: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    while done.len() < parents.len() {
        let ready: Vec<String> = parents
            .iter()
            .filter(|(id, ps)| {
                !done.contains(*id)
                    && ps
                        .iter()
                        .all(|p| done.contains(p) || !parents.contains_key(p))
            })
            .map(|(id, _)| id.clone())
            .collect();
        assert!(!ready.is_empty(), "lineage has a cycle");
        for id in ready {
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(&id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator()
                .expect("iterator")
                .to_owned();
            loop {
                let page = client
                    .get_records()
                    .shard_iterator(&iterator)
                    .send()
                    .await
                    .expect("GetRecords");
                out.extend(page.records().iter().map(|r| {
                    (
                        id.clone(),
                        r.partition_key().unwrap_or_default().to_owned(),
                        r.data().as_ref().to_vec(),
                    )
                }));
                match page.next_shard_iterator() {
                    Some(next) if !page.records().is_empty() => iterator = next.to_owned(),
                    Some(_) => break,
                    None => {
                        assert!(
                            !page.child_shards().is_empty(),
                            "a closed shard names its children"
                        );
                        break;
                    }
                }
            }
            done.insert(id);
        }
    }
    out
}

async fn produce(
    client: Client,
    producer: usize,
    stop: Arc<Mutex<bool>>,
    acked: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut counters = [0u64; 8];
    while !*stop.lock().expect("lock") {
        let batch: Vec<(String, Vec<u8>)> = (0..16)
            .map(|i| {
                let key = i % 8;
                let n = counters[key];
                counters[key] += 1;
                (
                    format!("p{producer}-k{key}"),
                    format!("p{producer}-k{key}-{n:08}").into_bytes(),
                )
            })
            .collect();
        let entries = batch
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .expect("entry")
            })
            .collect();
        let output = client
            .put_records()
            .stream_name("elastic")
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(output.failed_record_count(), Some(0));
        acked
            .lock()
            .expect("lock")
            .extend(batch.into_iter().map(|(_, data)| data));
    }
}

/// Waits until the producers have had `by` more records acknowledged, so every reshard step
/// overlaps writes however busy the machine is.
async fn until_acked_grows(acked: &Arc<Mutex<Vec<Vec<u8>>>>, by: usize) {
    let target = acked.lock().expect("lock").len() + by;
    support::eventually("the producers to get more records acknowledged", || {
        acked.lock().expect("lock").len() >= target
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_concurrent_writes_loses_nothing_and_keeps_key_order() {
    let dir = TempDir::new("reshard-writes");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "elastic", 2).await;
    let stop = Arc::new(Mutex::new(false));
    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let producers: Vec<_> = (0..3)
        .map(|p| tokio::spawn(produce(broker.client(), p, stop.clone(), acked.clone())))
        .collect();

    until_acked_grows(&acked, 100).await;
    let middle = (u128::MAX / 4).to_string();
    client
        .split_shard()
        .stream_name("elastic")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&middle)
        .send()
        .await
        .expect("SplitShard");
    // Right after SplitShard the stream may still be UPDATING or already ACTIVE again; either
    // way the parent's children are there.
    let after_split = client
        .describe_stream()
        .stream_name("elastic")
        .send()
        .await
        .expect("describe");
    let description = after_split.stream_description().expect("description");
    assert!(
        matches!(
            description.stream_status(),
            StreamStatus::Updating | StreamStatus::Active
        ),
        "{:?}",
        description.stream_status()
    );
    let children: Vec<&str> = description
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some("shardId-000000000000"))
        .map(|s| s.shard_id())
        .collect();
    assert_eq!(children, ["shardId-000000000002", "shardId-000000000003"]);
    wait_for_status(&client, "elastic", "ACTIVE").await;
    until_acked_grows(&acked, 100).await;
    client
        .merge_shards()
        .stream_name("elastic")
        .shard_to_merge("shardId-000000000002")
        .adjacent_shard_to_merge("shardId-000000000003")
        .send()
        .await
        .expect("MergeShards");
    wait_for_status(&client, "elastic", "ACTIVE").await;
    until_acked_grows(&acked, 100).await;
    client
        .update_shard_count()
        .stream_name("elastic")
        .target_shard_count(3)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    wait_for_status(&client, "elastic", "ACTIVE").await;
    until_acked_grows(&acked, 100).await;
    *stop.lock().expect("lock") = true;
    for producer in producers {
        producer.await.expect("producer");
    }

    let read = read_in_lineage_order(&client, "elastic").await;
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 300,
        "enough writes overlapped the reshards: {}",
        acked.len()
    );
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for (_, _, data) in &read {
        *counts.entry(data.as_slice()).or_default() += 1;
    }
    for data in &acked {
        assert_eq!(
            counts.get(data.as_slice()),
            Some(&1),
            "{} is not stored exactly once",
            String::from_utf8_lossy(data)
        );
    }
    assert_eq!(read.len(), acked.len(), "nothing unacknowledged was stored");
    let mut last_per_key: BTreeMap<String, String> = BTreeMap::new();
    for (shard, key, data) in &read {
        let text = String::from_utf8(data.clone()).expect("utf-8");
        if let Some(previous) = last_per_key.get(key) {
            assert!(
                &text > previous,
                "order of {key} broken in {shard}: {text} after {previous}"
            );
        }
        last_per_key.insert(key.clone(), text);
    }

    let description = client
        .describe_stream()
        .stream_name("elastic")
        .send()
        .await
        .expect("DescribeStream");
    let shards = description
        .stream_description()
        .expect("description")
        .shards();
    let parent = &shards[0];
    assert!(
        parent
            .sequence_number_range()
            .expect("range")
            .ending_sequence_number()
            .is_some(),
        "a closed parent has an ending sequence number"
    );
    assert_eq!(shards[2].parent_shard_id(), Some("shardId-000000000000"));
    let merged = shards
        .iter()
        .find(|s| s.adjacent_parent_shard_id().is_some())
        .expect("a merged shard");
    assert_eq!(merged.parent_shard_id(), Some("shardId-000000000002"));
    let open = client
        .list_shards()
        .stream_name("elastic")
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("ListShards");
    assert_eq!(open.shards().len(), 3);
}

#[tokio::test]
async fn update_shard_count_scales_up_and_down_within_kinesis_limits() {
    let dir = TempDir::new("scaling");
    let broker = BrokerBuilder::default().transition_ms(0).start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "scaled", 2).await;
    for target in [4, 3, 6, 3, 2] {
        let output = client
            .update_shard_count()
            .stream_name("scaled")
            .target_shard_count(target)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .expect("UpdateShardCount");
        assert_eq!(output.target_shard_count(), Some(target));
        wait_for_status(&client, "scaled", "ACTIVE").await;
        let summary = client
            .describe_stream_summary()
            .stream_name("scaled")
            .send()
            .await
            .expect("summary");
        assert_eq!(
            summary
                .stream_description_summary()
                .expect("summary")
                .open_shard_count(),
            target
        );
        let open = client
            .list_shards()
            .stream_name("scaled")
            .shard_filter(
                ShardFilter::builder()
                    .r#type(ShardFilterType::AtLatest)
                    .build()
                    .expect("filter"),
            )
            .send()
            .await
            .expect("ListShards");
        let mut starts: Vec<u128> = open
            .shards()
            .iter()
            .map(|s| {
                s.hash_key_range()
                    .expect("range")
                    .starting_hash_key()
                    .parse()
                    .expect("decimal")
            })
            .collect();
        starts.sort_unstable();
        let expected: Vec<u128> = (0..target as u128)
            .map(|i| {
                if i == 0 {
                    0
                } else {
                    ((u128::MAX / target as u128) * i)
                        + (((u128::MAX % target as u128) + 1) * i) / target as u128
                }
            })
            .collect();
        assert_eq!(starts, expected, "even ranges for {target} shards");
    }
    let too_far = client
        .update_shard_count()
        .stream_name("scaled")
        .target_shard_count(5)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await;
    assert_eq!(
        error_code(&too_far.expect_err("more than double")),
        "LimitExceededException"
    );
    let merge_far = client
        .merge_shards()
        .stream_name("scaled")
        .shard_to_merge("shardId-000000000000")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await;
    assert_eq!(
        error_code(&merge_far.expect_err("closed shards")),
        "InvalidArgumentException"
    );
}

#[tokio::test]
async fn the_end_of_a_closed_shard_names_its_children_and_has_no_next_iterator() {
    let dir = TempDir::new("closed-end");
    let broker = BrokerBuilder::default()
        .transition_ms(0)
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "ending", 1).await;
    client
        .put_record()
        .stream_name("ending")
        .partition_key("k")
        .data(Blob::new("before"))
        .send()
        .await
        .expect("put");
    let half = (u128::MAX / 2 + 1).to_string();
    client
        .split_shard()
        .stream_name("ending")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&half)
        .send()
        .await
        .expect("SplitShard");
    let iterator = client
        .get_shard_iterator()
        .stream_name("ending")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("an iterator on a closed shard");
    let page = client
        .get_records()
        .shard_iterator(iterator.shard_iterator().expect("it"))
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(page.records().len(), 1);
    assert!(page.next_shard_iterator().is_none());
    let children: Vec<&str> = page.child_shards().iter().map(|c| c.shard_id()).collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    assert_eq!(
        page.child_shards()[1].parent_shards(),
        ["shardId-000000000000"]
    );
    assert_eq!(
        page.child_shards()[1]
            .hash_key_range()
            .expect("range")
            .starting_hash_key(),
        half
    );
    let outside = client
        .split_shard()
        .stream_name("ending")
        .shard_to_split("shardId-000000000001")
        .new_starting_hash_key("0")
        .send()
        .await;
    assert_eq!(
        error_code(&outside.expect_err("split key outside the shard")),
        "InvalidArgumentException"
    );
    let missing = client
        .split_shard()
        .stream_name("ending")
        .shard_to_split("shardId-000000000009")
        .new_starting_hash_key("5")
        .send()
        .await;
    assert_eq!(
        error_code(&missing.expect_err("no such shard")),
        "ResourceNotFoundException"
    );
}

async fn open_shards(client: &Client, stream: &str) -> i32 {
    client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .expect("summary")
        .stream_description_summary()
        .expect("summary")
        .open_shard_count()
}

/// A broker whose shards take 100 records/s, measured for ON_DEMAND scaling every
/// `interval_ms`, scaling up at once and down after `scale_down_seconds` of low demand.
fn on_demand_broker(
    dir: &TempDir,
    interval_ms: u64,
    scale_down_seconds: u64,
) -> support::broker::Broker {
    BrokerBuilder::default()
        .transition_ms(0)
        .arg("--no-quotas")
        .arg("--write-records-per-second")
        .arg("100")
        .arg("--on-demand-interval-ms")
        .arg(interval_ms.to_string())
        .arg("--on-demand-scale-up-seconds")
        .arg("0")
        .arg("--on-demand-scale-down-seconds")
        .arg(scale_down_seconds.to_string())
        .start(dir.path())
}

/// Creates the ON_DEMAND stream `elastic` (4 shards) and writes to it until it has scaled up;
/// returns its open shards then.
async fn load_until_scaled_up(client: &Client) -> i32 {
    use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails};
    client
        .create_stream()
        .stream_name("elastic")
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .expect("mode"),
        )
        .send()
        .await
        .expect("CreateStream");
    wait_for_status(client, "elastic", "ACTIVE").await;
    assert_eq!(open_shards(client, "elastic").await, 4);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut peak = 4;
    while peak <= 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never scaled up under load"
        );
        let entries = (0..100)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{i}"))
                    .data(Blob::new("x"))
                    .build()
                    .expect("entry")
            })
            .collect();
        client
            .put_records()
            .stream_name("elastic")
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        tokio::time::sleep(Duration::from_millis(40)).await;
        peak = peak.max(open_shards(client, "elastic").await);
    }
    peak
}

/// Rounds the broker's ON_DEMAND autoscaler has made, from its metrics.
fn on_demand_rounds(broker: &support::broker::Broker) -> u64 {
    let (_, text) = broker.observe("/metrics");
    text.lines()
        .find_map(|line| line.strip_prefix("brook_on_demand_rounds_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the autoscaler has made `rounds` more rounds.
async fn after_rounds(broker: &support::broker::Broker, rounds: u64) {
    let target = on_demand_rounds(broker) + rounds;
    support::eventually("more rounds of the autoscaler", || {
        on_demand_rounds(broker) >= target
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_an_on_demand_stream_scales_down_only_after_its_whole_window() {
    let dir = TempDir::new("on-demand-window");
    let broker = on_demand_broker(&dir, 50, 600);
    let client = broker.client();
    let peak = load_until_scaled_up(&client).await;
    // Idle now (the last loaded sample may still add shards once), but measured for far less
    // than the 600 s window, also after the rescale, which keeps the history: no shard goes.
    after_rounds(&broker, 5).await;
    let held = open_shards(&client, "elastic").await;
    assert!(
        held >= peak,
        "scaled down from {peak} to {held} within seconds"
    );
    after_rounds(&broker, 5).await;
    assert_eq!(open_shards(&client, "elastic").await, held);
    broker.advance_clock(300_000);
    after_rounds(&broker, 5).await;
    assert_eq!(
        open_shards(&client, "elastic").await,
        held,
        "300 s of quiet is half the window"
    );
    // Once quiet samples cover the whole window, the stream scales down.
    broker.advance_clock(700_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while open_shards(&client, "elastic").await >= held {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never scaled down after a quiet window"
        );
        after_rounds(&broker, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_stream_follows_its_write_demand() {
    let dir = TempDir::new("on-demand-scaling");
    let broker = on_demand_broker(&dir, 200, 1);
    let client = broker.client();
    let peak = load_until_scaled_up(&client).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now_open = open_shards(&client, "elastic").await;
        if now_open < peak {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never scaled down once idle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn closed_shards_leave_listings_once_past_retention() {
    let dir = TempDir::new("closed-expiry");
    let broker = BrokerBuilder::default()
        .transition_ms(0)
        .arg("--on-demand-interval-ms")
        .arg("100")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "aging", 1).await;
    client
        .put_record()
        .stream_name("aging")
        .partition_key("k")
        .data(Blob::new("old"))
        .send()
        .await
        .expect("put");
    let half = (u128::MAX / 2 + 1).to_string();
    client
        .split_shard()
        .stream_name("aging")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&half)
        .send()
        .await
        .expect("split");
    let listed = client
        .list_shards()
        .stream_name("aging")
        .send()
        .await
        .expect("ListShards");
    assert_eq!(
        listed.shards().len(),
        3,
        "the closed parent stays listed within retention"
    );

    broker.advance_clock(25 * 3600 * 1000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = client
            .list_shards()
            .stream_name("aging")
            .send()
            .await
            .expect("ListShards");
        if listed.shards().len() == 2 {
            assert!(
                listed
                    .shards()
                    .iter()
                    .all(|s| s.shard_id() != "shardId-000000000000")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired parent is still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = client
        .get_shard_iterator()
        .stream_name("aging")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await;
    assert_eq!(
        error_code(&gone.expect_err("an expired shard")),
        "ResourceNotFoundException"
    );
}
