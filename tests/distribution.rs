//! The record distribution strategy (UpdateStreamRecordDistributionStrategy, CreateStream's
//! RecordDistributionStrategy), driven by the AWS SDK for Rust: AUTO spreads records evenly
//! over the open shards whatever their partition keys, USER_PARTITION_KEY routes by key again,
//! and AUTO is refused for a PROVISIONED stream.

mod support;

use std::collections::BTreeMap;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, RecordDistributionStrategy, StreamMode, StreamModeDetails,
};
use support::broker::{Broker, TempDir, error_code, wait_for_status};

fn on_demand() -> StreamModeDetails {
    StreamModeDetails::builder()
        .stream_mode(StreamMode::OnDemand)
        .build()
        .expect("mode")
}

async fn arn_of(client: &Client, name: &str) -> String {
    client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary()
        .expect("a summary")
        .stream_arn()
        .to_owned()
}

async fn set_strategy(client: &Client, arn: &str, strategy: RecordDistributionStrategy) {
    client
        .update_stream_record_distribution_strategy()
        .stream_arn(arn)
        .record_distribution_strategy(strategy)
        .send()
        .await
        .expect("UpdateStreamRecordDistributionStrategy");
}

/// Puts 20 records one by one and 20 in one PutRecords, all with partition key `same`
/// (the single ones also with an explicit hash key); returns how many each shard took.
async fn put_forty(client: &Client, stream: &str) -> BTreeMap<String, usize> {
    let mut by_shard = BTreeMap::new();
    for i in 0..20 {
        let put = client
            .put_record()
            .stream_name(stream)
            .partition_key("same")
            .explicit_hash_key("0")
            .data(Blob::new(format!("single {i}")))
            .send()
            .await
            .expect("PutRecord");
        *by_shard.entry(put.shard_id().to_owned()).or_insert(0) += 1;
    }
    let records: Vec<PutRecordsRequestEntry> = (0..20)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key("same")
                .data(Blob::new(format!("batch {i}")))
                .build()
                .expect("a record")
        })
        .collect();
    let answer = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(records))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(answer.failed_record_count(), Some(0));
    for record in answer.records() {
        *by_shard
            .entry(record.shard_id().expect("a shard").to_owned())
            .or_insert(0) += 1;
    }
    by_shard
}

#[tokio::test]
async fn distribution_auto_spreads_one_partition_key_over_every_shard_and_user_partition_key_routes_by_key_again()
 {
    let dir = TempDir::new("distribution-auto");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    client
        .create_stream()
        .stream_name("events")
        .stream_mode_details(on_demand())
        .send()
        .await
        .expect("CreateStream");
    wait_for_status(&client, "events", "ACTIVE").await;
    let arn = arn_of(&client, "events").await;

    set_strategy(&client, &arn, RecordDistributionStrategy::Auto).await;
    let summary = client
        .describe_stream_summary()
        .stream_name("events")
        .send()
        .await
        .expect("DescribeStreamSummary");
    assert_eq!(
        summary
            .stream_description_summary()
            .and_then(|s| s.record_distribution_strategy()),
        Some(&RecordDistributionStrategy::Auto)
    );
    let spread = put_forty(&client, "events").await;
    assert_eq!(spread.len(), 4, "every open shard took records: {spread:?}");
    assert!(spread.values().all(|n| *n == 10), "evenly: {spread:?}");

    // New records follow the key again; the records already stored stay where they are.
    set_strategy(&client, &arn, RecordDistributionStrategy::UserPartitionKey).await;
    let by_key = put_forty(&client, "events").await;
    assert_eq!(
        by_key.len(),
        2,
        "one shard for the key, one for hash key 0: {by_key:?}"
    );
}

#[tokio::test]
async fn distribution_auto_is_refused_for_a_provisioned_stream() {
    let dir = TempDir::new("distribution-provisioned");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    support::broker::create_active_stream(&client, "fixed", 2).await;
    let arn = arn_of(&client, "fixed").await;
    let refused = client
        .update_stream_record_distribution_strategy()
        .stream_arn(&arn)
        .record_distribution_strategy(RecordDistributionStrategy::Auto)
        .send()
        .await
        .expect_err("AUTO on a PROVISIONED stream");
    assert_eq!(error_code(&refused), "InvalidArgumentException");
    // USER_PARTITION_KEY, the default, is what a PROVISIONED stream does anyway.
    set_strategy(&client, &arn, RecordDistributionStrategy::UserPartitionKey).await;

    let created = client
        .create_stream()
        .stream_name("fixed-auto")
        .shard_count(2)
        .record_distribution_strategy(RecordDistributionStrategy::Auto)
        .send()
        .await
        .expect_err("CreateStream PROVISIONED with AUTO");
    assert_eq!(error_code(&created), "InvalidArgumentException");

    // An AUTO stream cannot become PROVISIONED while it is AUTO.
    client
        .create_stream()
        .stream_name("auto")
        .stream_mode_details(on_demand())
        .record_distribution_strategy(RecordDistributionStrategy::Auto)
        .send()
        .await
        .expect("CreateStream ON_DEMAND with AUTO");
    wait_for_status(&client, "auto", "ACTIVE").await;
    let auto_arn = arn_of(&client, "auto").await;
    let switched = client
        .update_stream_mode()
        .stream_arn(&auto_arn)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::Provisioned)
                .build()
                .expect("mode"),
        )
        .send()
        .await
        .expect_err("PROVISIONED while AUTO");
    assert_eq!(error_code(&switched), "InvalidArgumentException");
    let spread = put_forty(&client, "auto").await;
    assert_eq!(spread.len(), 4, "AUTO from creation: {spread:?}");
}
