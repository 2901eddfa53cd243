//! Enhanced fan-out through the official AWS SDK for Rust: the consumer lifecycle and its
//! limits, and SubscribeToShard receiving records written before and after subscribing,
//! through to the ChildShards event at the end of a resharded shard.

mod support;

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use support::broker::{BrokerBuilder, TempDir, create_active_stream, error_code};

const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/fan";

async fn active_consumer(client: &Client, name: &str) -> String {
    let registered = client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name(name)
        .send()
        .await
        .expect("RegisterStreamConsumer");
    let consumer = registered.consumer().expect("consumer");
    let arn = consumer.consumer_arn().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let described = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await
            .expect("DescribeStreamConsumer");
        if described
            .consumer_description()
            .expect("description")
            .consumer_status()
            == &ConsumerStatus::Active
        {
            return arn;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumer never became ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put(client: &Client, data: &str) {
    client
        .put_record()
        .stream_name("fan")
        .partition_key("k")
        .data(Blob::new(data))
        .send()
        .await
        .expect("PutRecord");
}

async fn subscribe(
    client: &Client,
    arn: &str,
    shard: &str,
    kind: ShardIteratorType,
) -> aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput {
    client
        .subscribe_to_shard()
        .consumer_arn(arn)
        .shard_id(shard)
        .starting_position(
            StartingPosition::builder()
                .r#type(kind)
                .build()
                .expect("position"),
        )
        .send()
        .await
        .expect("SubscribeToShard")
}

/// Receives events until `want` records arrived; returns their data and the last event.
async fn receive(
    output: &mut aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
    want: usize,
) -> (Vec<String>, aws_sdk_kinesis::types::SubscribeToShardEvent) {
    let mut data = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), output.event_stream.recv())
            .await
            .expect("an event within ten seconds")
            .expect("a well-formed event")
            .expect("the stream is still open");
        let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event else {
            panic!("unexpected event {event:?}");
        };
        data.extend(
            event
                .records()
                .iter()
                .map(|r| String::from_utf8(r.data().as_ref().to_vec()).expect("utf-8")),
        );
        if data.len() >= want || !event.child_shards().is_empty() {
            return (data, event);
        }
    }
}

#[tokio::test]
async fn consumers_register_describe_list_and_deregister_within_kinesis_limits() {
    let dir = TempDir::new("consumers");
    let broker = BrokerBuilder::default()
        .transition_ms(100)
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "fan", 1).await;
    let registered = client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("dashboard")
        .send()
        .await
        .expect("register");
    let consumer = registered.consumer().expect("consumer");
    assert_eq!(consumer.consumer_status(), &ConsumerStatus::Creating);
    assert!(
        consumer
            .consumer_arn()
            .starts_with("arn:aws:kinesis:us-east-1:000000000000:stream/fan/consumer/dashboard:")
    );
    let duplicate = client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("dashboard")
        .send()
        .await;
    assert_eq!(
        error_code(&duplicate.expect_err("same name")),
        "ResourceInUseException"
    );
    for i in 1..20 {
        client
            .register_stream_consumer()
            .stream_arn(STREAM_ARN)
            .consumer_name(format!("c{i:02}"))
            .send()
            .await
            .expect("register");
    }
    let over = client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("c21")
        .send()
        .await;
    assert_eq!(
        error_code(&over.expect_err("21st consumer")),
        "LimitExceededException"
    );
    let listed = client
        .list_stream_consumers()
        .stream_arn(STREAM_ARN)
        .max_results(15)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.consumers().len(), 15);
    let rest = client
        .list_stream_consumers()
        .stream_arn(STREAM_ARN)
        .next_token(listed.next_token().expect("more"))
        .send()
        .await
        .expect("list");
    assert_eq!(rest.consumers().len(), 5);
    let summary = client
        .describe_stream_summary()
        .stream_name("fan")
        .send()
        .await
        .expect("summary");
    assert_eq!(
        summary
            .stream_description_summary()
            .expect("summary")
            .consumer_count(),
        Some(20)
    );

    let by_name = client
        .describe_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("dashboard")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        by_name.consumer_description().expect("d").stream_arn(),
        STREAM_ARN
    );
    let in_use = client.delete_stream().stream_name("fan").send().await;
    assert_eq!(
        error_code(&in_use.expect_err("consumers registered")),
        "ResourceInUseException"
    );

    client
        .deregister_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("dashboard")
        .send()
        .await
        .expect("deregister");
    let deleting = client
        .describe_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("dashboard")
        .send()
        .await
        .expect("still there");
    assert_eq!(
        deleting
            .consumer_description()
            .expect("d")
            .consumer_status(),
        &ConsumerStatus::Deleting
    );
    // DELETING lasts a moment; then the consumer is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let described = client
            .describe_stream_consumer()
            .stream_arn(STREAM_ARN)
            .consumer_name("dashboard")
            .send()
            .await;
        match described {
            Err(error) => {
                assert_eq!(error_code(&error), "ResourceNotFoundException");
                break;
            }
            Ok(still) => {
                assert_eq!(
                    still.consumer_description().map(|c| c.consumer_status()),
                    Some(&ConsumerStatus::Deleting)
                );
                assert!(
                    std::time::Instant::now() < deadline,
                    "the consumer never went"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    client
        .delete_stream()
        .stream_name("fan")
        .enforce_consumer_deletion(true)
        .send()
        .await
        .expect("forced delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_records_from_before_and_after_subscribing_and_the_shard_end() {
    let dir = TempDir::new("subscribe");
    let broker = BrokerBuilder::default()
        .transition_ms(0)
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "fan", 1).await;
    let arn = active_consumer(&client, "reader").await;
    put(&client, "before-1").await;
    put(&client, "before-2").await;

    let mut from_start = subscribe(
        &client,
        &arn,
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let (seen, event) = receive(&mut from_start, 2).await;
    assert_eq!(seen, ["before-1", "before-2"]);
    assert_eq!(event.continuation_sequence_number().len(), 56);

    let other = active_consumer(&client, "tail").await;
    let mut from_latest = subscribe(
        &client,
        &other,
        "shardId-000000000000",
        ShardIteratorType::Latest,
    )
    .await;
    let again = client
        .subscribe_to_shard()
        .consumer_arn(&other)
        .shard_id("shardId-000000000000")
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::Latest)
                .build()
                .expect("position"),
        )
        .send()
        .await;
    assert_eq!(
        error_code(&again.expect_err("a second subscription")),
        "ResourceInUseException"
    );
    put(&client, "after-1").await;
    let (tail, _) = receive(&mut from_latest, 1).await;
    assert_eq!(tail, ["after-1"]);
    let (more, _) = receive(&mut from_start, 1).await;
    assert_eq!(
        more,
        ["after-1"],
        "the first subscriber sees new records too"
    );

    let half = (u128::MAX / 2 + 1).to_string();
    client
        .split_shard()
        .stream_name("fan")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&half)
        .send()
        .await
        .expect("split");
    let (_, last) = receive(&mut from_start, usize::MAX).await;
    let children: Vec<&str> = last.child_shards().iter().map(|c| c.shard_id()).collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    let after_end = tokio::time::timeout(Duration::from_secs(5), from_start.event_stream.recv())
        .await
        .expect("ends");
    assert!(
        matches!(after_end, Ok(None)),
        "the subscription ends after the shard's end: {after_end:?}"
    );
}

#[tokio::test]
async fn a_subscription_ends_when_its_lifetime_is_over() {
    let dir = TempDir::new("subscription-lifetime");
    let broker = BrokerBuilder::default()
        .transition_ms(0)
        .arg("--subscription-seconds")
        .arg("2")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "fan", 1).await;
    let arn = active_consumer(&client, "short").await;
    let mut subscription = subscribe(
        &client,
        &arn,
        "shardId-000000000000",
        ShardIteratorType::Latest,
    )
    .await;
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), subscription.event_stream.recv()).await
        {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => break,
            other => panic!("the subscription should end cleanly: {other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it lasted its lifetime"
    );
}
