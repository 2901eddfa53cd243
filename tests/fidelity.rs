//! Wire fidelity: edge behaviour answered as Kinesis answers it, through the AWS SDK for Rust
//! (which sends these requests unchanged).

mod support;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use support::broker::{Broker, TempDir, create_active_stream};

#[tokio::test]
async fn fidelity_shard_ids_are_resolved_by_the_number_after_their_last_hyphen() {
    let dir = TempDir::new("fidelity-shard-ids");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "ids", 2).await;
    // A key that lands on shard 1 (hash keys above half the space).
    let put = client
        .put_record()
        .stream_name("ids")
        .partition_key("k")
        .explicit_hash_key("300000000000000000000000000000000000000")
        .data(Blob::new("on shard one"))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(put.shard_id(), "shardId-000000000001");

    for written in ["shardId-000000000001", "shardId-1", "whatever-01"] {
        let iterator = client
            .get_shard_iterator()
            .stream_name("ids")
            .shard_id(written)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetShardIterator with {written}: {e:?}"))
            .shard_iterator
            .expect("an iterator");
        let records = client
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .expect("GetRecords");
        assert_eq!(records.records().len(), 1, "{written} names shard 1");
        assert_eq!(records.records()[0].data().as_ref(), b"on shard one");
    }

    let after_first = client
        .list_shards()
        .stream_name("ids")
        .exclusive_start_shard_id("shardId-0")
        .send()
        .await
        .expect("ListShards");
    let ids: Vec<&str> = after_first.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(
        ids,
        ["shardId-000000000001"],
        "answers use the canonical id"
    );

    let missing = client
        .get_shard_iterator()
        .stream_name("ids")
        .shard_id("shardId-7")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("no shard 7");
    assert_eq!(
        support::broker::error_code(&missing),
        "ResourceNotFoundException"
    );

    client
        .split_shard()
        .stream_name("ids")
        .shard_to_split("shardId-0")
        .new_starting_hash_key("85070591730234615865843651857942052864")
        .send()
        .await
        .expect("SplitShard of shard 0 written short");
    support::broker::wait_for_status(&client, "ids", "ACTIVE").await;
    let shards = client
        .list_shards()
        .stream_name("ids")
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 4, "shard 0 split in two");
}
