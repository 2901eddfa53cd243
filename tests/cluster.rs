//! A stream's shards spread over pods: three broker processes on loopback (own ports, own
//! data directories) play one Stream's StatefulSet, driven by the AWS SDK through one of
//! them and read through another. One pod is killed with `kill -9` and restarted.

mod support;

#[path = "cluster/cbor.rs"]
mod cbor;
#[path = "cluster/distribution.rs"]
mod distribution;
#[path = "cluster/failures.rs"]
mod failures;
#[path = "cluster/frozen.rs"]
mod frozen;
#[path = "cluster/moves.rs"]
mod moves;
#[path = "cluster/on_demand.rs"]
mod on_demand;
#[path = "cluster/operator.rs"]
mod operator;
#[path = "cluster/stale_map.rs"]
mod stale_map;
#[path = "cluster/tls.rs"]
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use support::broker::{Broker, BrokerBuilder, TempDir, client_for, trim_horizon_iterator};

const STREAM: &str = "spread";
const SHARDS: i32 = 6;
const KEYS: usize = 60;

/// Starts pod `ordinal` of a cluster whose internal ports are `internal`.
fn start_pod(dir: &TempDir, ordinal: usize, internal: &[SocketAddr]) -> Broker {
    start_pod_with(BrokerBuilder::default(), dir, ordinal, internal)
}

/// The same, from `builder` (extra arguments).
fn start_pod_with(
    builder: BrokerBuilder,
    dir: &TempDir,
    ordinal: usize,
    internal: &[SocketAddr],
) -> Broker {
    let peers: Vec<String> = internal.iter().map(|a| format!("http://{a}")).collect();
    builder
        .transition_ms(0)
        .arg("--cluster-peers")
        .arg(peers.join(","))
        .arg("--pod-ordinal")
        .arg(ordinal.to_string())
        .arg("--cluster-listen")
        .arg(internal[ordinal].to_string())
        .start(dir.path())
}

/// A shard pod 2 stores records of, with its hash range.
async fn shard_on_pod_2(pod_2: &Broker, client: &Client) -> (String, u128, u128) {
    let id = incoming_records(pod_2)
        .into_iter()
        .find(|(_, count)| *count > 0.0)
        .map(|(shard, _)| shard)
        .expect("pod 2 owns a shard");
    let listed = client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .expect("ListShards");
    let range = listed
        .shards()
        .iter()
        .find(|s| s.shard_id() == id)
        .and_then(|s| s.hash_key_range())
        .expect("the shard is listed");
    let start = range.starting_hash_key().parse().expect("a number");
    let end = range.ending_hash_key().parse().expect("a number");
    (id, start, end)
}

async fn split(client: &Client, parent: &str, start: u128, end: u128) -> bool {
    client
        .split_shard()
        .stream_name(STREAM)
        .shard_to_split(parent)
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await
        .is_ok()
}

/// Waits until every pod serves the stream (`client_of` reaches a pod) from a replica of
/// pod 0's catalog.
async fn served_everywhere(pods: &[Broker], client_of: impl Fn(&Broker) -> Client) {
    for pod in pods {
        wait_until_served(&client_of(pod)).await;
    }
    wait_for_replicas(pods).await;
}

/// Three pods (data folders labelled `label`, internal ports below the ephemeral range) and
/// the stream, created through pod 1, which relays the change to pod 0; returns once every
/// pod serves it from its own replica.
async fn start_cluster(label: &str) -> (Vec<TempDir>, Vec<SocketAddr>, Vec<Broker>) {
    start_cluster_with(label, BrokerBuilder::default()).await
}

/// The same, with pod 0 started from `pod_0` (extra arguments, such as a crash hook).
async fn start_cluster_with(
    label: &str,
    pod_0: BrokerBuilder,
) -> (Vec<TempDir>, Vec<SocketAddr>, Vec<Broker>) {
    start_cluster_of(
        label,
        [pod_0, BrokerBuilder::default(), BrokerBuilder::default()],
    )
    .await
}

/// The same, each pod started from its own builder.
async fn start_cluster_of(
    label: &str,
    builders: [BrokerBuilder; 3],
) -> (Vec<TempDir>, Vec<SocketAddr>, Vec<Broker>) {
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("{label}-{i}")))
        .collect();
    let internal = support::reserved_addresses(3);
    let pods: Vec<Broker> = builders
        .into_iter()
        .enumerate()
        .map(|(ordinal, builder)| start_pod_with(builder, &dirs[ordinal], ordinal, &internal))
        .collect();
    client_for(&pods[1].endpoint)
        .create_stream()
        .stream_name(STREAM)
        .shard_count(SHARDS)
        .send()
        .await
        .expect("CreateStream through a pod other than pod 0");
    served_everywhere(&pods, |pod| client_for(&pod.endpoint)).await;
    (dirs, internal, pods)
}

/// Waits until `client`'s pod describes the stream as ACTIVE (its replica has it).
async fn wait_until_served(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = client
            .describe_stream_summary()
            .stream_name(STREAM)
            .send()
            .await;
        if described.is_ok_and(|d| {
            d.stream_description_summary()
                .is_some_and(|s| s.stream_status().as_str() == "ACTIVE")
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never reached this pod"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until pods 1 and 2 hold pod 0's catalog (the placement map), as their
/// `brook_catalog_epoch` shows.
async fn wait_for_replicas(pods: &[Broker]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let home = catalog_epoch(&pods[0]);
        if pods[1..].iter().all(|pod| catalog_epoch(pod) == home) {
            return;
        }
        assert!(Instant::now() < deadline, "the replicas never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One record: its partition key and its number within that key.
fn record(key: usize, seq: usize) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(format!("key-{key}"))
        .data(Blob::new(format!("key-{key}:{seq}")))
        .build()
        .expect("a record")
}

/// Puts `records` through `client`; returns the positions that failed, with their codes.
async fn put(client: &Client, records: &[PutRecordsRequestEntry]) -> Vec<(usize, String)> {
    let answer = client
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(records.to_vec()))
        .send()
        .await
        .expect("PutRecords is answered");
    answer
        .records()
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.error_code().map(|code| (i, code.to_owned())))
        .collect()
}

/// Puts `records` while pod 2 is out: the records of pod 2's shards fail with the retryable
/// `InternalFailure`, the other pods' are stored in the same request. Returns the failed.
async fn put_with_pod_2_out(
    client: &Client,
    records: &[PutRecordsRequestEntry],
) -> Vec<(usize, String)> {
    let failed = put(client, records).await;
    assert!(!failed.is_empty(), "pod 2's shards cannot be written");
    assert!(
        failed.len() < records.len(),
        "the other pods' shards kept serving"
    );
    assert!(
        failed.iter().all(|(_, code)| code == "InternalFailure"),
        "{failed:?}"
    );
    failed
}

/// Puts `records`, retrying the failed ones until every one is stored.
async fn put_all(client: &Client, mut records: Vec<PutRecordsRequestEntry>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !records.is_empty() {
        let failed = put(client, &records).await;
        records = failed.iter().map(|(i, _)| records[*i].clone()).collect();
        assert!(
            Instant::now() < deadline,
            "records kept failing: {failed:?}"
        );
        if !records.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One record read back: its shard id, sequence number, arrival time (ms) and data.
type ReadRecord = (String, String, i64, String);

/// Every record of every shard read through `client`, in shard order.
async fn read_positions(client: &Client) -> Vec<ReadRecord> {
    let shards = client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .expect("ListShards");
    let mut read = Vec::new();
    for shard in shards.shards() {
        let mut iterator = Some(trim_horizon_iterator(client, STREAM, shard.shard_id()).await);
        while let Some(current) = iterator {
            let page = client
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .expect("GetRecords");
            for r in page.records() {
                read.push((
                    shard.shard_id().to_owned(),
                    r.sequence_number().to_owned(),
                    r.approximate_arrival_timestamp()
                        .map_or(0, |t| t.to_millis().unwrap_or(0)),
                    String::from_utf8_lossy(r.data().as_ref()).into_owned(),
                ));
            }
            let caught_up = page.records().is_empty() && page.millis_behind_latest() == Some(0);
            iterator = if caught_up {
                None
            } else {
                page.next_shard_iterator().map(str::to_owned)
            };
        }
        // A shard with no records is listed too.
        if !read.iter().any(|r: &ReadRecord| r.0 == shard.shard_id()) {
            read.push((shard.shard_id().to_owned(), String::new(), 0, String::new()));
        }
    }
    read
}

/// Every record of every shard, read through `client`: data by shard id, in shard order.
async fn read_all(client: &Client) -> BTreeMap<String, Vec<String>> {
    let mut read: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (shard, sequence, _, data) in read_positions(client).await {
        let records = read.entry(shard).or_default();
        if !sequence.is_empty() {
            records.push(data);
        }
    }
    read
}

/// The numbers read for each partition key, in the order read (shards in id order, so a
/// parent's records come before its children's).
fn numbers_by_key(read: &BTreeMap<String, Vec<String>>) -> HashMap<String, Vec<usize>> {
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for data in read.values().flatten() {
        let (key, seq) = data.split_once(':').expect("key:seq");
        seen.entry(key.to_owned())
            .or_default()
            .push(seq.parse().expect("a number"));
    }
    seen
}

/// `brook_incoming_records_total` per shard id on one pod.
fn incoming_records(pod: &Broker) -> HashMap<String, f64> {
    let (_, text) = pod.observe("/metrics");
    text.lines()
        .filter(|l| l.starts_with("brook_incoming_records_total{"))
        .filter_map(|l| {
            let shard = l.split("shard=\"").nth(1)?.split('"').next()?.to_owned();
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((shard, value))
        })
        .collect()
}

fn catalog_epoch(pod: &Broker) -> Option<u64> {
    let (_, text) = pod.observe("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("brook_catalog_epoch "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_records_spread_over_pods_survive_a_killed_pod_and_read_back_exactly_once() {
    let (dirs, internal, mut pods) = start_cluster("cluster-pod").await;
    let writer = client_for(&pods[1].endpoint);
    let reader = client_for(&pods[0].endpoint);

    // Phase 1, everything up: two records per key, in order, through pod 1.
    for seq in 0..2 {
        let batch: Vec<_> = (0..KEYS).map(|k| record(k, seq)).collect();
        assert_eq!(put(&writer, &batch).await, vec![], "all pods are up");
    }
    // Every shard's records were stored by exactly one pod, and every pod owns some.
    let per_pod: Vec<HashMap<String, f64>> = pods.iter().map(incoming_records).collect();
    let mut owners: HashMap<String, Vec<usize>> = HashMap::new();
    for (ordinal, counts) in per_pod.iter().enumerate() {
        for (shard, count) in counts.iter().filter(|(_, c)| **c > 0.0) {
            owners.entry(shard.clone()).or_default().push(ordinal);
            assert!(*count > 0.0);
        }
    }
    assert_eq!(owners.len(), SHARDS as usize, "{owners:?}");
    assert!(owners.values().all(|o| o.len() == 1), "{owners:?}");
    // Each shard's stored-bytes series comes from its owner only.
    for (ordinal, pod) in pods.iter().enumerate() {
        let (_, text) = pod.observe("/metrics");
        for (shard, owner) in &owners {
            let series = format!("brook_stored_bytes{{shard=\"{shard}\"");
            let shown = text.lines().any(|l| {
                l.starts_with("brook_stored_bytes{") && l.contains(&format!("shard=\"{shard}\""))
            });
            assert_eq!(shown, owner == &[ordinal], "{series} on pod {ordinal}");
        }
    }
    for ordinal in 0..3 {
        assert!(
            owners.values().any(|o| o == &[ordinal]),
            "pod {ordinal} owns no shard: {owners:?}"
        );
    }
    let epoch = catalog_epoch(&pods[0]).expect("pod 0 shows its epoch");
    assert!(epoch > 0);
    for pod in &pods[1..] {
        assert_eq!(
            catalog_epoch(pod),
            Some(epoch),
            "replicas serve pod 0's map"
        );
    }

    // Phase 2, pod 2 killed: its records fail with a retryable per-record error, the others
    // are stored in the same requests, and reads of the other pods' shards go on.
    pods[2].kill();
    let batch: Vec<_> = (0..KEYS).map(|k| record(k, 2)).collect();
    let failed = put_with_pod_2_out(&writer, &batch).await;
    let pod2_shards: Vec<&String> = owners
        .iter()
        .filter(|(_, o)| o == &&vec![2])
        .map(|(s, _)| s)
        .collect();
    let live_shard = owners
        .iter()
        .find(|(_, o)| o != &&vec![2])
        .map(|(s, _)| s.clone())
        .expect("a shard on a live pod");
    let iterator = trim_horizon_iterator(&reader, STREAM, &live_shard).await;
    reader
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords on a live pod's shard");
    let down = reader
        .get_shard_iterator()
        .stream_name(STREAM)
        .shard_id(pod2_shards[0])
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("pod 2's shard is unavailable, not wrong");
    assert_eq!(support::broker::error_code(&down), "ServiceUnavailable");

    // Pod 2 comes back on its volume; the failed records are retried and stored.
    pods[2] = start_pod(&dirs[2], 2, &internal);
    let retry: Vec<_> = failed.iter().map(|(i, _)| batch[*i].clone()).collect();
    put_all(&writer, retry).await;
    // Phase 3: one more record per key, after the retries.
    put_all(&writer, (0..KEYS).map(|k| record(k, 3)).collect()).await;

    // Read back through pod 0: every acknowledged record exactly once, each key in order.
    let read = read_all(&reader).await;
    let seen = numbers_by_key(&read);
    assert_eq!(seen.len(), KEYS);
    for (key, seqs) in &seen {
        assert_eq!(seqs, &[0, 1, 2, 3], "{key}: once each, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_writer_through_a_pod_with_a_stale_map_during_a_reshard_loses_and_duplicates_nothing()
 {
    let (_dirs, _internal, pods) = start_cluster("cluster-split").await;
    let writer = client_for(&pods[1].endpoint);
    // A shard pod 2 owns: pod 0 runs the reshard, pod 2 closes the parent in its own log,
    // and the children are placed over the pods.
    let batch: Vec<_> = (0..KEYS).map(|k| record(k, 0)).collect();
    assert_eq!(put(&writer, &batch).await, vec![]);
    let splitter = client_for(&pods[2].endpoint);
    let (parent_id, start, end) = shard_on_pod_2(&pods[2], &splitter).await;

    // The writer keeps putting through pod 1 while pod 2 asks for the split: pod 1's replica
    // lags pod 0's map by up to one refresh.
    let writing = tokio::spawn({
        let writer = writer.clone();
        async move {
            for seq in 1..=20 {
                put_all(&writer, (0..KEYS).map(|k| record(k, seq)).collect()).await;
            }
        }
    });
    assert!(
        split(&splitter, &parent_id, start, end).await,
        "SplitShard of a shard on pod 2, asked through pod 2"
    );
    writing.await.expect("the writer finished");

    read_back_once_after_a_split(&client_for(&pods[0].endpoint), 20).await;
}

/// Every key's numbers 0..=`last` read back through `client` once each, in order, from the
/// stream's shards plus a split's two children.
async fn read_back_once_after_a_split(client: &Client, last: usize) {
    let read = read_all(client).await;
    assert_eq!(
        read.len(),
        SHARDS as usize + 2,
        "the parent and its two children"
    );
    let seen = numbers_by_key(&read);
    assert_eq!(seen.len(), KEYS);
    let expected: Vec<usize> = (0..=last).collect();
    for (key, seqs) in &seen {
        assert_eq!(seqs, &expected, "{key}: once each, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_put_record_refused_under_a_stale_map_is_routed_again_by_the_pod_it_reached() {
    let (_dirs, _internal, pods) = start_cluster("cluster-reroute").await;
    let batch: Vec<_> = (0..KEYS).map(|k| record(k, 0)).collect();
    assert_eq!(put(&client_for(&pods[1].endpoint), &batch).await, vec![]);
    let home = client_for(&pods[0].endpoint);
    let (parent_id, start, end) = shard_on_pod_2(&pods[2], &home).await;
    // Split at pod 0 itself: pod 1 hears of it only at its next refresh (every 0.5 s).
    assert!(
        split(&home, &parent_id, start, end).await,
        "SplitShard at pod 0"
    );
    // At once, single records for the parent's range through pod 1, each sent once (no SDK
    // retry): pod 1 still routes them to the parent's pod, which refuses them; pod 1 then
    // refreshes its map and sends them to the children's pods.
    for i in 0..20u128 {
        let key = if i % 2 == 0 { start + i } else { end - i };
        let body = format!(
            r#"{{"StreamName":"{STREAM}","PartitionKey":"k","ExplicitHashKey":"{key}","Data":"eA=="}}"#
        );
        let (status, answer) = support::broker::post_json(&pods[1].endpoint, "PutRecord", &body);
        assert_eq!(status, 200, "record {i}: {answer}");
        assert!(
            !answer.contains(&parent_id),
            "stored in the closed parent: {answer}"
        );
    }
}

/// Pod 0's placement map, as `BrookCluster_20261130.DescribePlacement` answers it.
fn placement(pod: &Broker) -> serde_json::Value {
    let answer = support::broker::raw_post(
        &pod.endpoint,
        Some("BrookCluster_20261130.DescribePlacement"),
        "application/x-amz-json-1.1",
        format!(r#"{{"StreamName":"{STREAM}"}}"#).as_bytes(),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    serde_json::from_slice(&answer.body).expect("a JSON answer")
}

/// Open shards by owner: (shard id, owner).
fn open_shards_by_owner(placement: &serde_json::Value) -> Vec<(String, u64)> {
    placement["Streams"][0]["Shards"]
        .as_array()
        .expect("shards")
        .iter()
        .filter(|s| s["ClosedMs"].is_null())
        .map(|s| {
            (
                s["ShardId"].as_str().expect("an id").to_owned(),
                s["Owner"].as_u64().expect("an owner"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_new_shards_go_to_the_pod_that_takes_fewer_writes_when_open_shards_tie() {
    let (_dirs, _internal, pods) = start_cluster("cluster-rates").await;
    let before = open_shards_by_owner(&placement(&pods[0]));
    let client = client_for(&pods[1].endpoint);
    let listed = client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .expect("ListShards");
    let start_of = |id: &str| -> String {
        listed
            .shards()
            .iter()
            .find(|s| s.shard_id() == id)
            .and_then(|s| s.hash_key_range())
            .map(|r| r.starting_hash_key().to_owned())
            .expect("a listed shard")
    };
    // Writes keep going to the shards of pods 0 and 2 (sent through pod 1, which stores
    // none of them); pod 1 takes none.
    let hot: Vec<String> = before
        .iter()
        .filter(|(_, owner)| *owner != 1)
        .map(|(id, _)| start_of(id))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for key in &hot {
                    client
                        .put_record()
                        .stream_name(STREAM)
                        .partition_key("k")
                        .explicit_hash_key(key)
                        .data(Blob::new("x"))
                        .send()
                        .await
                        .expect("PutRecord");
                }
            }
        }
    });
    // Pod 0 has heard of the load: its own, and pod 2's with pod 2's catalog fetches.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rates = placement(&pods[0])["PodWriteRates"].clone();
        let rate = |pod: &str| rates[pod].as_f64().unwrap_or(0.0);
        if rate("0") > 0.0 && rate("2") > 0.0 && rates.get("1").is_some() {
            assert_eq!(rate("1"), 0.0, "pod 1 stores none of the records: {rates}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod 0 never heard the rates: {rates}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Split a shard of pod 2: its first child goes back to pod 2 (the fewest open shards);
    // for the second, every pod has two, and pod 1 takes the fewest writes (by ordinal alone
    // it would be pod 0).
    let (parent, _) = before
        .iter()
        .find(|(_, owner)| *owner == 2)
        .expect("pod 2 owns a shard");
    let start: u128 = start_of(parent).parse().expect("a number");
    client
        .split_shard()
        .stream_name(STREAM)
        .shard_to_split(parent)
        .new_starting_hash_key((start + 1000).to_string())
        .send()
        .await
        .expect("SplitShard");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("the writer stopped");
    let after = open_shards_by_owner(&placement(&pods[0]));
    let mut children: Vec<u64> = after
        .iter()
        .filter(|shard| !before.contains(shard))
        .map(|(_, owner)| *owner)
        .collect();
    children.sort_unstable();
    assert_eq!(children, [1, 2], "the children's pods: {after:?}");
}
