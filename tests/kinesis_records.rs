//! Record operations through the official AWS SDK for Rust against a real broker: routing by
//! MD5, every iterator type, GetRecords limits, retention, quotas and their errors.

mod support;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use std::collections::HashMap;

use md5::{Digest, Md5};
use support::broker::{
    Broker, BrokerBuilder, TempDir, create_active_stream, error_code, error_message,
};

fn entry(key: &str, data: impl Into<Vec<u8>>) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(key)
        .data(Blob::new(data.into()))
        .build()
        .expect("entry")
}

async fn iterator(client: &Client, stream: &str, shard: &str, kind: ShardIteratorType) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator()
        .expect("an iterator")
        .to_owned()
}

/// Reads a shard from `iterator` until a call returns nothing; returns (sequence, key, data).
async fn drain(client: &Client, mut iterator: String) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let page = client
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .expect("GetRecords");
        if page.records().is_empty() {
            return out;
        }
        for record in page.records() {
            out.push((
                record.sequence_number().to_owned(),
                record.partition_key().unwrap_or_default().to_owned(),
                record.data().as_ref().to_vec(),
            ));
        }
        iterator = page
            .next_shard_iterator()
            .expect("open shards have a next iterator")
            .to_owned();
    }
}

#[tokio::test]
async fn records_go_to_the_shard_whose_range_holds_the_md5_of_their_key() {
    let dir = TempDir::new("routing");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "routed", 4).await;
    let shards = client
        .list_shards()
        .stream_name("routed")
        .send()
        .await
        .expect("ListShards");
    let ranges: Vec<(String, u128, u128)> = shards
        .shards()
        .iter()
        .map(|s| {
            let range = s.hash_key_range().expect("range");
            (
                s.shard_id().to_owned(),
                range.starting_hash_key().parse().expect("decimal"),
                range.ending_hash_key().parse().expect("decimal"),
            )
        })
        .collect();
    let keys: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let put = client
        .put_records()
        .stream_name("routed")
        .set_records(Some(keys.iter().map(|k| entry(k, k.as_bytes())).collect()))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(put.failed_record_count(), Some(0));
    let mut used = std::collections::HashSet::new();
    for (key, result) in keys.iter().zip(put.records()) {
        let hash = u128::from_be_bytes(Md5::digest(key.as_bytes()).into());
        let expected = ranges
            .iter()
            .find(|(_, start, end)| *start <= hash && hash <= *end)
            .expect("a range");
        assert_eq!(result.shard_id(), Some(expected.0.as_str()), "key {key}");
        used.insert(expected.0.clone());
    }
    assert_eq!(used.len(), 4, "300 keys spread over all four shards");

    let explicit = client
        .put_record()
        .stream_name("routed")
        .partition_key("ignored-for-routing")
        .explicit_hash_key("340282366920938463463374607431768211455")
        .data(Blob::new("last"))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(explicit.shard_id(), "shardId-000000000003");
    let bad = client
        .put_record()
        .stream_name("routed")
        .partition_key("k")
        .explicit_hash_key("340282366920938463463374607431768211456")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("2^128 is out of range");
    assert_eq!(error_code(&bad), "InvalidArgumentException");

    for (shard, _, _) in &ranges {
        let records = drain(
            &client,
            iterator(&client, "routed", shard, ShardIteratorType::TrimHorizon).await,
        )
        .await;
        for (_, key, data) in records.iter().filter(|r| r.1.starts_with("user-")) {
            assert_eq!(key.as_bytes(), &data[..], "data came back with its key");
        }
        let mut sorted = records.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(sorted, records, "sequence numbers increase within {shard}");
    }
}

#[tokio::test]
async fn every_iterator_type_starts_where_kinesis_starts() {
    let dir = TempDir::new("iterators");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "it", 1).await;
    let shard = "shardId-000000000000";
    let mut sequences = Vec::new();
    for i in 0..5 {
        let put = client
            .put_record()
            .stream_name("it")
            .partition_key("k")
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .expect("PutRecord");
        sequences.push(put.sequence_number().to_owned());
    }
    let data = |records: Vec<(String, String, Vec<u8>)>| -> Vec<String> {
        records
            .into_iter()
            .map(|(_, _, d)| String::from_utf8(d).expect("utf-8"))
            .collect()
    };
    let all = data(
        drain(
            &client,
            iterator(&client, "it", shard, ShardIteratorType::TrimHorizon).await,
        )
        .await,
    );
    assert_eq!(all, ["r0", "r1", "r2", "r3", "r4"]);

    let at = client
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&sequences[2])
        .send()
        .await
        .expect("AT_SEQUENCE_NUMBER");
    assert_eq!(
        data(drain(&client, at.shard_iterator().expect("it").to_owned()).await),
        ["r2", "r3", "r4"]
    );

    let after = client
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .starting_sequence_number(&sequences[2])
        .send()
        .await
        .expect("AFTER_SEQUENCE_NUMBER");
    assert_eq!(
        data(drain(&client, after.shard_iterator().expect("it").to_owned()).await),
        ["r3", "r4"]
    );

    let latest = iterator(&client, "it", shard, ShardIteratorType::Latest).await;
    let empty = client
        .get_records()
        .shard_iterator(&latest)
        .send()
        .await
        .expect("GetRecords");
    assert!(empty.records().is_empty());
    assert_eq!(empty.millis_behind_latest(), Some(0));
    client
        .put_record()
        .stream_name("it")
        .partition_key("k")
        .data(Blob::new("r5"))
        .send()
        .await
        .expect("put");
    assert_eq!(data(drain(&client, latest).await), ["r5"]);

    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let cut = DateTime::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64,
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    client
        .put_record()
        .stream_name("it")
        .partition_key("k")
        .data(Blob::new("r6"))
        .send()
        .await
        .expect("put");
    let timed = client
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(cut)
        .send()
        .await
        .expect("AT_TIMESTAMP");
    assert_eq!(
        data(drain(&client, timed.shard_iterator().expect("it").to_owned()).await),
        ["r6"]
    );
    let page = client
        .get_records()
        .shard_iterator(iterator(&client, "it", shard, ShardIteratorType::TrimHorizon).await)
        .send()
        .await
        .expect("GetRecords");
    let arrival = page.records()[6]
        .approximate_arrival_timestamp()
        .expect("arrival time");
    assert!(arrival.to_millis().expect("millis") >= cut.to_millis().expect("millis"));

    let foreign = client
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number("49000000000000000000000000000000000018446744073709551616")
        .send()
        .await
        .expect_err("a sequence number of another shard");
    assert_eq!(error_code(&foreign), "InvalidArgumentException");
    let missing = client
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .send()
        .await
        .expect_err("no sequence number");
    assert_eq!(error_code(&missing), "InvalidArgumentException");
    let no_shard = client
        .get_shard_iterator()
        .stream_name("it")
        .shard_id("shardId-000000000009")
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await
        .expect_err("no such shard");
    assert_eq!(error_code(&no_shard), "ResourceNotFoundException");
}

#[tokio::test]
async fn get_records_honours_its_limit_and_reports_how_far_behind_it_is() {
    let dir = TempDir::new("limits");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "paged", 1).await;
    for batch in 0..3 {
        let records = (0..500)
            .map(|i| entry("p", format!("{batch}-{i}")))
            .collect();
        client
            .put_records()
            .stream_name("paged")
            .set_records(Some(records))
            .send()
            .await
            .expect("PutRecords");
    }
    let start = iterator(
        &client,
        "paged",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let first = client
        .get_records()
        .shard_iterator(&start)
        .limit(700)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(first.records().len(), 700);
    assert_eq!(first.records()[699].data().as_ref(), b"1-199");
    assert!(first.millis_behind_latest().is_some());
    let next = first.next_shard_iterator().expect("next");
    let second = client
        .get_records()
        .shard_iterator(next)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(second.records().len(), 800);
    assert_eq!(second.millis_behind_latest(), Some(0));
    let too_many = client
        .get_records()
        .shard_iterator(&start)
        .limit(10_001)
        .send()
        .await;
    assert_eq!(
        error_code(&too_many.expect_err("limit above 10000")),
        "ValidationException"
    );
}

#[tokio::test]
async fn iterators_expire_after_five_minutes_and_cannot_be_forged() {
    let dir = TempDir::new("iterator-errors");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "guarded", 1).await;
    create_active_stream(&client, "other", 1).await;
    let token = iterator(
        &client,
        "guarded",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;

    let mut forged = token.clone().into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let refused = client
        .get_records()
        .shard_iterator(&forged)
        .send()
        .await
        .expect_err("forged");
    assert_eq!(error_code(&refused), "InvalidArgumentException");

    let wrong_stream = client
        .get_records()
        .shard_iterator(&token)
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/other")
        .send()
        .await
        .expect_err("an iterator of another stream");
    assert_eq!(error_code(&wrong_stream), "InvalidArgumentException");

    broker.advance_clock(5 * 60 * 1000 + 1000);
    let expired = client
        .get_records()
        .shard_iterator(&token)
        .send()
        .await
        .expect_err("expired");
    assert_eq!(error_code(&expired), "ExpiredIteratorException");
}

#[tokio::test]
async fn records_older_than_the_retention_period_are_gone_for_every_iterator() {
    let dir = TempDir::new("trim");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "short", 1).await;
    let old = client
        .put_record()
        .stream_name("short")
        .partition_key("k")
        .data(Blob::new("old"))
        .send()
        .await
        .expect("put");
    broker.advance_clock(25 * 3600 * 1000);
    client
        .put_record()
        .stream_name("short")
        .partition_key("k")
        .data(Blob::new("new"))
        .send()
        .await
        .expect("put");
    let shard = "shardId-000000000000";
    let from_horizon = drain(
        &client,
        iterator(&client, "short", shard, ShardIteratorType::TrimHorizon).await,
    )
    .await;
    assert_eq!(
        from_horizon
            .iter()
            .map(|r| r.2.as_slice())
            .collect::<Vec<_>>(),
        [b"new"]
    );
    let at_old = client
        .get_shard_iterator()
        .stream_name("short")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(old.sequence_number())
        .send()
        .await
        .expect("an iterator at a trimmed record");
    let read = drain(&client, at_old.shard_iterator().expect("it").to_owned()).await;
    assert_eq!(
        read.iter().map(|r| r.2.as_slice()).collect::<Vec<_>>(),
        [b"new"]
    );
    let timed = client
        .get_shard_iterator()
        .stream_name("short")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(DateTime::from_secs(0))
        .send()
        .await
        .expect("AT_TIMESTAMP");
    let read = drain(&client, timed.shard_iterator().expect("it").to_owned()).await;
    assert_eq!(
        read.iter().map(|r| r.2.as_slice()).collect::<Vec<_>>(),
        [b"new"]
    );
}

#[tokio::test]
async fn writes_beyond_a_shards_quota_fail_per_record_and_reads_beyond_it_are_throttled() {
    let dir = TempDir::new("quota");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "busy", 1).await;
    // The clock stands still, so the buckets do not refill however slow the machine is.
    broker.freeze_clock();
    let mut failed = 0;
    let mut stored = 0;
    for _ in 0..3 {
        let records = (0..500).map(|i| entry(&format!("k{i}"), "x")).collect();
        let put = client
            .put_records()
            .stream_name("busy")
            .set_records(Some(records))
            .send()
            .await
            .expect("PutRecords");
        failed += put.failed_record_count().unwrap_or(0);
        for result in put.records() {
            match result.error_code() {
                Some(code) => {
                    assert_eq!(code, "ProvisionedThroughputExceededException");
                    assert!(
                        result
                            .error_message()
                            .expect("a message")
                            .contains("Rate exceeded for shard shardId-000000000000")
                    );
                    assert!(result.sequence_number().is_none());
                }
                None => stored += 1,
            }
        }
    }
    assert_eq!(
        (stored, failed),
        (1000, 500),
        "a second's 1000 records fit, the rest exceed the quota"
    );
    let token = iterator(
        &client,
        "busy",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let mut throttled = false;
    for _ in 0..8 {
        if let Err(error) = client.get_records().shard_iterator(&token).send().await {
            assert_eq!(error_code(&error), "ProvisionedThroughputExceededException");
            throttled = true;
        }
    }
    assert!(
        throttled,
        "eight GetRecords calls at once exceed five per second"
    );
    let (_, metrics) = broker.observe("/metrics");
    assert!(metrics.contains("brook_throttled_requests_total{direction=\"write\",shard=\"shardId-000000000000\",stream=\"busy\"}"));
}

#[tokio::test]
async fn record_size_limits_follow_the_streams_maximum() {
    let dir = TempDir::new("sizes");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "std", 1).await;
    let exactly = vec![7u8; 1024 * 1024 - 1];
    client
        .put_record()
        .stream_name("std")
        .partition_key("k")
        .data(Blob::new(exactly))
        .send()
        .await
        .expect("1 MiB with its key");
    let over = vec![7u8; 1024 * 1024];
    let refused = client
        .put_record()
        .stream_name("std")
        .partition_key("k")
        .data(Blob::new(over))
        .send()
        .await;
    assert_eq!(
        error_code(&refused.expect_err("over 1 MiB")),
        "ValidationException"
    );

    client
        .create_stream()
        .stream_name("large")
        .shard_count(1)
        .max_record_size_in_kib(4096)
        .send()
        .await
        .expect("CreateStream with large records");
    support::broker::wait_for_status(&client, "large", "ACTIVE").await;
    let big = vec![9u8; 3 * 1024 * 1024];
    client
        .put_record()
        .stream_name("large")
        .partition_key("k")
        .data(Blob::new(big.clone()))
        .send()
        .await
        .expect("3 MiB record");
    let read = drain(
        &client,
        iterator(
            &client,
            "large",
            "shardId-000000000000",
            ShardIteratorType::TrimHorizon,
        )
        .await,
    )
    .await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].2, big);

    let six = (0..6)
        .map(|i| entry(&i.to_string(), vec![1u8; 1000 * 1000]))
        .collect();
    let batch = client
        .put_records()
        .stream_name("std")
        .set_records(Some(six))
        .send()
        .await;
    let batch = batch.expect_err("6 MB in one PutRecords");
    assert_eq!(error_code(&batch), "InvalidArgumentException");
    assert!(error_message(&batch).contains("5 MB"));
}

#[tokio::test]
async fn puts_to_a_creating_stream_or_a_missing_one_are_refused() {
    let dir = TempDir::new("not-ready");
    let broker = BrokerBuilder::default()
        .transition_ms(60_000)
        .start(dir.path());
    let client = broker.client();
    client
        .create_stream()
        .stream_name("slow")
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream");
    let early = client
        .put_record()
        .stream_name("slow")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await;
    assert_eq!(
        error_code(&early.expect_err("CREATING")),
        "ResourceNotFoundException"
    );
    let missing = client
        .put_records()
        .stream_name("ghost")
        .records(entry("k", "x"))
        .send()
        .await;
    assert_eq!(
        error_code(&missing.expect_err("no stream")),
        "ResourceNotFoundException"
    );
    let (status, body) = broker.observe("/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains(
            "brook_requests_total{operation=\"PutRecord\",outcome=\"ResourceNotFoundException\"} 1"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn quotas_can_differ_per_stream() {
    let dir = TempDir::new("stream-quotas");
    let quotas = dir.path().join("quotas.yaml");
    std::fs::write(&quotas, "loud:\n  writeRecordsPerSecond: 5000\n").expect("quota file");
    let data = TempDir::new("stream-quotas-data");
    let broker = BrokerBuilder::default()
        .arg("--stream-quotas")
        .arg(quotas.to_string_lossy())
        .start(data.path());
    let client = broker.client();
    create_active_stream(&client, "loud", 1).await;
    create_active_stream(&client, "quiet", 1).await;
    // With the clock stopped the buckets do not refill between the calls, however long they
    // take on a busy machine: the quotas alone decide.
    broker.freeze_clock();
    let mut failed = HashMap::new();
    for stream in ["loud", "quiet"] {
        let mut count = 0;
        for _ in 0..3 {
            let records = (0..500).map(|i| entry(&format!("k{i}"), "x")).collect();
            let put = client
                .put_records()
                .stream_name(stream)
                .set_records(Some(records))
                .send()
                .await
                .expect("PutRecords");
            count += put.failed_record_count().unwrap_or(0);
        }
        failed.insert(stream, count);
    }
    assert_eq!(failed["loud"], 0, "5000 records/s take 1500 at once");
    assert_eq!(
        failed["quiet"], 500,
        "the default 1000 records/s takes 1000 of the 1500"
    );
}
