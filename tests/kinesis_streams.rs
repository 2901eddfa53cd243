//! Stream operations through the official AWS SDK for Rust against a real broker: lifecycle,
//! description, pagination, retention, tags, limits and their documented errors.

mod support;

use aws_sdk_kinesis::types::{
    ShardFilter, ShardFilterType, StreamMode, StreamModeDetails, StreamStatus,
};
use support::broker::{
    Broker, BrokerBuilder, TempDir, create_active_stream, error_code, error_message,
    wait_for_status,
};

#[tokio::test]
async fn a_stream_goes_from_creating_to_active_and_from_deleting_to_gone() {
    let dir = TempDir::new("lifecycle");
    let broker = BrokerBuilder::default()
        .transition_ms(300)
        .start(dir.path());
    let client = broker.client();
    client
        .create_stream()
        .stream_name("orders")
        .shard_count(3)
        .send()
        .await
        .expect("CreateStream");
    let first = client
        .describe_stream()
        .stream_name("orders")
        .send()
        .await
        .expect("DescribeStream");
    assert_eq!(
        first
            .stream_description()
            .expect("description")
            .stream_status(),
        &StreamStatus::Creating
    );
    wait_for_status(&client, "orders", "ACTIVE").await;

    let description = client
        .describe_stream()
        .stream_name("orders")
        .send()
        .await
        .expect("DescribeStream");
    let description = description.stream_description().expect("description");
    assert_eq!(description.stream_name(), "orders");
    assert_eq!(
        description.stream_arn(),
        "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
    );
    assert_eq!(description.retention_period_hours(), 24);
    assert!(!description.has_more_shards());
    let ids: Vec<&str> = description.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(
        ids,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002"
        ]
    );
    let ranges: Vec<(String, String)> = description
        .shards()
        .iter()
        .map(|s| {
            let range = s.hash_key_range().expect("range");
            (
                range.starting_hash_key().to_owned(),
                range.ending_hash_key().to_owned(),
            )
        })
        .collect();
    assert_eq!(ranges[0].0, "0");
    assert_eq!(ranges[0].1, "113427455640312821154458202477256070484");
    assert_eq!(ranges[1].0, "113427455640312821154458202477256070485");
    assert_eq!(ranges[2].1, "340282366920938463463374607431768211455");

    let summary = client
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("summary");
    let summary = summary.stream_description_summary().expect("summary");
    assert_eq!(summary.open_shard_count(), 3);
    assert_eq!(
        summary.stream_mode_details().map(|m| m.stream_mode()),
        Some(&StreamMode::Provisioned)
    );

    client
        .delete_stream()
        .stream_name("orders")
        .send()
        .await
        .expect("DeleteStream");
    let deleting = client
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("still there");
    assert_eq!(
        deleting
            .stream_description_summary()
            .expect("summary")
            .stream_status(),
        &StreamStatus::Deleting
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match client.describe_stream().stream_name("orders").send().await {
            Err(error) if error_code(&error) == "ResourceNotFoundException" => {
                assert_eq!(
                    error_message(&error),
                    "Stream orders under account 000000000000 not found."
                );
                break;
            }
            _ => assert!(
                std::time::Instant::now() < deadline,
                "the stream was never deleted"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let names = client.list_streams().send().await.expect("ListStreams");
    assert!(names.stream_names().is_empty());
}

#[tokio::test]
async fn creating_a_stream_twice_or_with_bad_arguments_fails_like_kinesis() {
    let dir = TempDir::new("create-errors");
    let broker = BrokerBuilder::default()
        .arg("--shard-limit")
        .arg("10")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "dup", 2).await;
    let again = client
        .create_stream()
        .stream_name("dup")
        .shard_count(1)
        .send()
        .await
        .expect_err("exists");
    assert_eq!(error_code(&again), "ResourceInUseException");

    let bad_name = client
        .create_stream()
        .stream_name("bad name!")
        .shard_count(1)
        .send()
        .await
        .expect_err("bad name");
    assert_eq!(error_code(&bad_name), "ValidationException");
    assert!(
        error_message(&bad_name).contains("regular expression pattern"),
        "{}",
        error_message(&bad_name)
    );

    let zero = client
        .create_stream()
        .stream_name("zero")
        .shard_count(0)
        .send()
        .await
        .expect_err("no shards");
    assert_eq!(error_code(&zero), "ValidationException");

    let too_many = client
        .create_stream()
        .stream_name("big")
        .shard_count(9)
        .send()
        .await
        .expect_err("limit");
    assert_eq!(error_code(&too_many), "LimitExceededException");

    let missing = client
        .describe_stream()
        .stream_name("nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(error_code(&missing), "ResourceNotFoundException");

    let limits = client
        .describe_limits()
        .send()
        .await
        .expect("DescribeLimits");
    assert_eq!(limits.shard_limit(), 10);
    assert_eq!(limits.open_shard_count(), 2);
}

#[tokio::test]
async fn on_demand_streams_start_with_four_shards() {
    let dir = TempDir::new("on-demand");
    let broker = Broker::start(dir.path());
    let client = broker.client();
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
    wait_for_status(&client, "elastic", "ACTIVE").await;
    let shards = client
        .list_shards()
        .stream_name("elastic")
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 4);
    let limits = client
        .describe_limits()
        .send()
        .await
        .expect("DescribeLimits");
    assert_eq!(limits.on_demand_stream_count(), 1);
}

#[tokio::test]
async fn list_streams_pages_with_next_token_and_exclusive_start() {
    let dir = TempDir::new("list-streams");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    for name in ["a", "b", "c", "d", "e"] {
        client
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
            .expect("CreateStream");
    }
    let mut seen = Vec::new();
    let mut page = client.list_streams().limit(2).send().await.expect("page 1");
    loop {
        seen.extend(page.stream_names().iter().cloned());
        assert_eq!(page.stream_summaries().len(), page.stream_names().len());
        match page.next_token() {
            Some(token) => {
                assert!(page.has_more_streams());
                page = client
                    .list_streams()
                    .next_token(token)
                    .send()
                    .await
                    .expect("next page");
            }
            None => {
                assert!(!page.has_more_streams());
                break;
            }
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let after = client
        .list_streams()
        .exclusive_start_stream_name("c")
        .send()
        .await
        .expect("after c");
    assert_eq!(after.stream_names(), ["d", "e"]);
    let both = client
        .list_streams()
        .next_token("x")
        .exclusive_start_stream_name("a")
        .send()
        .await;
    assert_eq!(
        error_code(&both.expect_err("both")),
        "InvalidArgumentException"
    );
}

#[tokio::test]
async fn list_shards_pages_and_filters() {
    let dir = TempDir::new("list-shards");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "wide", 5).await;
    let mut ids = Vec::new();
    let mut page = client
        .list_shards()
        .stream_name("wide")
        .max_results(2)
        .send()
        .await
        .expect("page");
    loop {
        ids.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
        match page.next_token() {
            Some(token) => {
                page = client
                    .list_shards()
                    .next_token(token)
                    .max_results(2)
                    .send()
                    .await
                    .expect("next")
            }
            None => break,
        }
    }
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[4], "shardId-000000000004");

    let after = client
        .list_shards()
        .stream_name("wide")
        .exclusive_start_shard_id("shardId-000000000002")
        .send()
        .await
        .expect("after");
    assert_eq!(after.shards().len(), 2);

    let filter =
        |kind: ShardFilterType| ShardFilter::builder().r#type(kind).build().expect("filter");
    let latest = client
        .list_shards()
        .stream_name("wide")
        .shard_filter(filter(ShardFilterType::AtLatest))
        .send()
        .await;
    assert_eq!(latest.expect("AT_LATEST").shards().len(), 5);
    let horizon = client
        .list_shards()
        .stream_name("wide")
        .shard_filter(filter(ShardFilterType::AtTrimHorizon))
        .send()
        .await;
    assert_eq!(horizon.expect("AT_TRIM_HORIZON").shards().len(), 5);
    let from_horizon = client
        .list_shards()
        .stream_name("wide")
        .shard_filter(filter(ShardFilterType::FromTrimHorizon))
        .send()
        .await;
    assert_eq!(from_horizon.expect("FROM_TRIM_HORIZON").shards().len(), 5);
    let after_filter = ShardFilter::builder()
        .r#type(ShardFilterType::AfterShardId)
        .shard_id("shardId-000000000003")
        .build()
        .expect("filter");
    let after = client
        .list_shards()
        .stream_name("wide")
        .shard_filter(after_filter)
        .send()
        .await
        .expect("AFTER_SHARD_ID");
    assert_eq!(
        after
            .shards()
            .iter()
            .map(|s| s.shard_id())
            .collect::<Vec<_>>(),
        ["shardId-000000000004"]
    );
    let now = aws_smithy_types::DateTime::from_secs(4_102_444_800);
    let at_time = ShardFilter::builder()
        .r#type(ShardFilterType::AtTimestamp)
        .timestamp(now)
        .build()
        .expect("filter");
    let at = client
        .list_shards()
        .stream_name("wide")
        .shard_filter(at_time)
        .send()
        .await
        .expect("AT_TIMESTAMP");
    assert_eq!(at.shards().len(), 5);
    let missing_timestamp = client
        .list_shards()
        .stream_name("wide")
        .shard_filter(filter(ShardFilterType::FromTimestamp))
        .send()
        .await;
    assert_eq!(
        error_code(&missing_timestamp.expect_err("no timestamp")),
        "InvalidArgumentException"
    );

    let described = client
        .describe_stream()
        .stream_name("wide")
        .limit(2)
        .exclusive_start_shard_id("shardId-000000000000")
        .send()
        .await
        .expect("DescribeStream");
    let description = described.stream_description().expect("description");
    assert_eq!(description.shards().len(), 2);
    assert!(description.has_more_shards());
    assert_eq!(description.shards()[0].shard_id(), "shardId-000000000001");
}

#[tokio::test]
async fn retention_goes_up_and_down_within_kinesis_bounds() {
    let dir = TempDir::new("retention");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "kept", 1).await;
    client
        .increase_stream_retention_period()
        .stream_name("kept")
        .retention_period_hours(72)
        .send()
        .await
        .expect("increase");
    let hours =
        |d: aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryOutput| {
            d.stream_description_summary()
                .expect("summary")
                .retention_period_hours()
        };
    assert_eq!(
        hours(
            client
                .describe_stream_summary()
                .stream_name("kept")
                .send()
                .await
                .expect("summary")
        ),
        72
    );
    let shorter = client
        .increase_stream_retention_period()
        .stream_name("kept")
        .retention_period_hours(48)
        .send()
        .await;
    let shorter = shorter.expect_err("increase cannot shorten");
    assert_eq!(error_code(&shorter), "InvalidArgumentException");
    assert!(error_message(&shorter).contains("Use DecreaseRetentionPeriod API"));
    client
        .decrease_stream_retention_period()
        .stream_name("kept")
        .retention_period_hours(24)
        .send()
        .await
        .expect("decrease");
    assert_eq!(
        hours(
            client
                .describe_stream_summary()
                .stream_name("kept")
                .send()
                .await
                .expect("summary")
        ),
        24
    );
    let too_short = client
        .decrease_stream_retention_period()
        .stream_name("kept")
        .retention_period_hours(23)
        .send()
        .await;
    assert_eq!(
        error_code(&too_short.expect_err("23 h")),
        "InvalidArgumentException"
    );
    let too_long = client
        .increase_stream_retention_period()
        .stream_name("kept")
        .retention_period_hours(8761)
        .send()
        .await;
    assert_eq!(
        error_code(&too_long.expect_err("8761 h")),
        "InvalidArgumentException"
    );
    let longer = client
        .decrease_stream_retention_period()
        .stream_name("kept")
        .retention_period_hours(100)
        .send()
        .await;
    assert_eq!(
        error_code(&longer.expect_err("decrease cannot lengthen")),
        "InvalidArgumentException"
    );
}

#[tokio::test]
async fn tags_are_added_listed_in_pages_and_removed() {
    let dir = TempDir::new("tags");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "tagged", 1).await;
    client
        .add_tags_to_stream()
        .stream_name("tagged")
        .tags("team", "platform")
        .tags("env", "prod")
        .tags("cost", "42")
        .send()
        .await
        .expect("AddTagsToStream");
    let page = client
        .list_tags_for_stream()
        .stream_name("tagged")
        .limit(2)
        .send()
        .await
        .expect("ListTags");
    let keys: Vec<&str> = page.tags().iter().map(|t| t.key()).collect();
    assert_eq!(keys, ["cost", "env"]);
    assert!(page.has_more_tags());
    let rest = client
        .list_tags_for_stream()
        .stream_name("tagged")
        .exclusive_start_tag_key("env")
        .send()
        .await
        .expect("ListTags");
    assert_eq!(rest.tags().len(), 1);
    assert_eq!(rest.tags()[0].value(), Some("platform"));
    client
        .remove_tags_from_stream()
        .stream_name("tagged")
        .tag_keys("env")
        .send()
        .await
        .expect("RemoveTags");
    let all = client
        .list_tags_for_stream()
        .stream_name("tagged")
        .send()
        .await
        .expect("ListTags");
    assert_eq!(all.tags().len(), 2);
    assert!(!all.has_more_tags());
    let mut too_many = client.add_tags_to_stream().stream_name("tagged");
    for i in 0..49 {
        too_many = too_many.tags(format!("k{i}"), "v");
    }
    assert_eq!(
        error_code(&too_many.send().await.expect_err("51 tags")),
        "InvalidArgumentException"
    );
}

#[tokio::test]
async fn streams_can_be_named_by_arn() {
    let dir = TempDir::new("arn");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "by-arn", 1).await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/by-arn";
    let summary = client
        .describe_stream_summary()
        .stream_arn(arn)
        .send()
        .await
        .expect("by ARN");
    assert_eq!(
        summary
            .stream_description_summary()
            .expect("summary")
            .stream_name(),
        "by-arn"
    );
    let put = client
        .put_record()
        .stream_arn(arn)
        .partition_key("k")
        .data(aws_smithy_types::Blob::new("x"))
        .send()
        .await
        .expect("PutRecord by ARN");
    assert_eq!(put.shard_id(), "shardId-000000000000");
    let wrong = client
        .describe_stream_summary()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/other")
        .send()
        .await;
    assert_eq!(
        error_code(&wrong.expect_err("unknown ARN")),
        "ResourceNotFoundException"
    );
}
