//! Acknowledged records survive `kill -9`: producers write continuously through the AWS SDK,
//! the broker is killed at several points and restarted on the same data directory, and
//! every acknowledged record is read back exactly once, in order, intact.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use support::broker::{BrokerBuilder, TempDir, create_active_stream};

/// An acknowledged record: its shard, sequence number and payload.
type Acked = (String, String, Vec<u8>);

fn payload(producer: usize, n: u64) -> Vec<u8> {
    // Self-checking payload: a header and a body derived from it, so corruption shows.
    let mut bytes = format!("p{producer}-n{n}|").into_bytes();
    bytes.extend((0..64 + (n % 200) as usize).map(|i| (i as u64 * 31 + n) as u8));
    bytes
}

fn payload_is_intact(bytes: &[u8]) -> bool {
    let Some(bar) = bytes.iter().position(|&b| b == b'|') else {
        return false;
    };
    let header = String::from_utf8_lossy(&bytes[..bar]);
    let Some(n) = header
        .split("-n")
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return false;
    };
    let producer: usize = header
        .trim_start_matches('p')
        .split('-')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(usize::MAX);
    payload(producer, n) == bytes
}

async fn produce(client: Client, producer: usize, acked: Arc<Mutex<Vec<Acked>>>) {
    let mut n = 0u64;
    loop {
        let batch: Vec<(u64, Vec<u8>)> =
            (0..20).map(|i| (n + i, payload(producer, n + i))).collect();
        n += 20;
        let entries = batch
            .iter()
            .map(|(i, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{producer}-{}", i % 7))
                    .data(Blob::new(data.clone()))
                    .build()
                    .expect("entry")
            })
            .collect();
        match client
            .put_records()
            .stream_name("durable")
            .set_records(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                let mut acked = acked.lock().expect("lock");
                for ((_, data), result) in batch.into_iter().zip(output.records()) {
                    if let (Some(shard), Some(sequence)) =
                        (result.shard_id(), result.sequence_number())
                    {
                        acked.push((shard.to_owned(), sequence.to_owned(), data));
                    }
                }
            }
            // The broker is gone: stop, as a producer would after exhausting its retries.
            Err(_) => return,
        }
    }
}

async fn read_everything(client: &Client) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    let shards = client
        .list_shards()
        .stream_name("durable")
        .send()
        .await
        .expect("ListShards");
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name("durable")
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator()
            .expect("iterator")
            .to_owned();
        let mut records = Vec::new();
        loop {
            let page = client
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .expect("GetRecords");
            if page.records().is_empty() {
                break;
            }
            records.extend(
                page.records()
                    .iter()
                    .map(|r| (r.sequence_number().to_owned(), r.data().as_ref().to_vec())),
            );
            iterator = page.next_shard_iterator().expect("next").to_owned();
        }
        out.insert(shard.shard_id().to_owned(), records);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_at_any_point() {
    let dir = TempDir::new("crash");
    let builder = BrokerBuilder::default().arg("--no-quotas");
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    // Each round kills the broker once the producers have had this many more records
    // acknowledged: kill points follow the writer's progress, not the clock, so a busy
    // machine moves them nowhere; writes are in flight at every kill.
    let kill_after_acks = [150usize, 420, 90, 700];
    for (round, kill_after) in kill_after_acks.into_iter().enumerate() {
        let mut broker = builder.start(dir.path());
        let client = broker.client();
        if round == 0 {
            create_active_stream(&client, "durable", 3).await;
        }
        let target = acked.lock().expect("lock").len() + kill_after;
        let producers: Vec<_> = (0..4)
            .map(|p| tokio::spawn(produce(broker.client(), round * 10 + p, acked.clone())))
            .collect();
        support::eventually("the round's acknowledgements", || {
            acked.lock().expect("lock").len() >= target
        })
        .await;
        broker.kill();
        for producer in producers {
            producer.await.expect("producer task");
        }
    }

    let broker = builder.start(dir.path());
    let client = broker.client();
    let stored = read_everything(&client).await;
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 500,
        "the producers got enough records acknowledged to mean something: {}",
        acked.len()
    );

    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for (shard, records) in &stored {
        let mut previous = "";
        for (sequence, data) in records {
            assert!(
                payload_is_intact(data),
                "corrupted record in {shard} at {sequence}"
            );
            assert!(
                sequence.as_str() > previous,
                "sequence numbers go backwards in {shard}"
            );
            previous = sequence;
            *seen.entry(data.as_slice()).or_default() += 1;
        }
    }
    assert!(
        seen.values().all(|&count| count == 1),
        "a record was stored twice"
    );
    let by_sequence: HashMap<(&str, &str), &[u8]> = stored
        .iter()
        .flat_map(|(shard, records)| {
            records
                .iter()
                .map(move |(s, d)| ((shard.as_str(), s.as_str()), d.as_slice()))
        })
        .collect();
    for (shard, sequence, data) in &acked {
        let found = by_sequence.get(&(shard.as_str(), sequence.as_str()));
        assert_eq!(
            found.copied(),
            Some(data.as_slice()),
            "acknowledged record {sequence} in {shard} lost or changed"
        );
    }
    // Per partition key, records come back in the order they were acknowledged.
    let position: HashMap<&[u8], usize> = acked
        .iter()
        .enumerate()
        .map(|(i, (_, _, d))| (d.as_slice(), i))
        .collect();
    for records in stored.values() {
        let mut last_per_key: HashMap<String, usize> = HashMap::new();
        for (_, data) in records {
            let Some(&at) = position.get(data.as_slice()) else {
                continue;
            };
            let header =
                String::from_utf8_lossy(&data[..data.iter().position(|&b| b == b'|').unwrap_or(0)])
                    .into_owned();
            let producer = header.split("-n").next().unwrap_or_default().to_owned();
            let n: u64 = header
                .split("-n")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let key = format!("{producer}-{}", n % 7);
            if let Some(&before) = last_per_key.get(&key) {
                assert!(at > before, "order broken for partition key {key}");
            }
            last_per_key.insert(key, at);
        }
    }

    // The restarted broker keeps accepting writes after the stored ones.
    let put = client
        .put_record()
        .stream_name("durable")
        .partition_key("after")
        .data(Blob::new("after the crashes"))
        .send()
        .await
        .expect("PutRecord after recovery");
    let shard_records = &stored[put.shard_id()];
    if let Some((last, _)) = shard_records.last() {
        assert!(put.sequence_number() > last.as_str());
    }
}

#[tokio::test]
async fn sigterm_drains_checkpoints_and_leaves_nothing_to_replay() {
    let dir = TempDir::new("sigterm");
    let mut broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "durable", 2).await;
    for i in 0..50 {
        client
            .put_record()
            .stream_name("durable")
            .partition_key(format!("k{i}"))
            .data(Blob::new(payload(0, i)))
            .send()
            .await
            .expect("PutRecord");
    }
    let (status, _) = broker.observe("/readyz");
    assert_eq!(status, 200);
    let exit = broker.terminate();
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    assert!(broker.log().contains("shut down cleanly"));
    // The journal keeps its preallocated room, which reads as zeros: no data to replay.
    let journal = std::fs::read_dir(dir.path().join("journal")).expect("journal folder");
    let journal_data: usize = journal
        .flatten()
        .map(|e| {
            std::fs::read(e.path())
                .expect("journal file")
                .iter()
                .filter(|&&b| b != 0)
                .count()
        })
        .sum();
    assert_eq!(journal_data, 0, "a clean shutdown leaves an empty journal");

    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    assert!(broker.log().contains("replayed=0"), "{}", broker.log());
    let stored = read_everything(&broker.client()).await;
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), 50);
}

#[tokio::test]
async fn sigterm_keeps_serving_not_ready_for_the_shutdown_delay_and_a_second_signal_ends_it() {
    let dir = TempDir::new("sigterm-delay");
    // A delay no busy machine can outlast before the test's own steps run.
    let mut broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .arg("--shutdown-delay-seconds")
        .arg("300")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "durable", 1).await;
    let put = |client: aws_sdk_kinesis::Client, n: u64| async move {
        client
            .put_record()
            .stream_name("durable")
            .partition_key(format!("k{n}"))
            .data(Blob::new(payload(0, n)))
            .send()
            .await
    };
    put(client.clone(), 0)
        .await
        .expect("PutRecord before SIGTERM");
    broker.signal_term();
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker.observe("/readyz").0 == 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz still ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Not ready, yet still alive and serving, new connections included.
    assert_eq!(
        broker.observe("/healthz").0,
        200,
        "liveness holds while steered away"
    );
    assert!(broker.running());
    put(broker.client(), 1)
        .await
        .expect("a PutRecord on a new connection while not ready is still stored");
    let exit = broker.terminate();
    assert!(
        exit.success(),
        "a second SIGTERM ends the delay cleanly: {exit:?}"
    );
    assert!(broker.log().contains("shut down cleanly"));

    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let stored = read_everything(&broker.client()).await;
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), 2);
}
