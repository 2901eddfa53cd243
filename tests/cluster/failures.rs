//! A reshard across pods when a pod fails in the middle: the parent's pod is down when pod 0
//! asks it to close the parent, or pod 0 stops after the parent closed on its pod but before
//! the reshard was saved. Either way the stream stays as it was, the parent takes writes
//! again, and nothing acknowledged is lost or out of order.

use aws_sdk_kinesis::Client;

use super::support::broker::{BrokerBuilder, client_for};
use super::{
    KEYS, SHARDS, STREAM, numbers_by_key, put_all, read_all, record, shard_on_pod_2, split,
    start_cluster, start_cluster_with, start_pod, wait_until_served,
};

async fn open_shards(client: &Client) -> Vec<String> {
    client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .expect("ListShards")
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| s.shard_id().to_owned())
        .collect()
}

/// Every key read back exactly once per write, in order: 0, 1, ... `last`.
async fn read_back_in_order(client: &Client, last: usize) {
    let seen = numbers_by_key(&read_all(client).await);
    assert_eq!(seen.len(), KEYS);
    let expected: Vec<usize> = (0..=last).collect();
    for (key, numbers) in &seen {
        assert_eq!(numbers, &expected, "{key}: once each, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_reshard_whose_parent_pod_is_down_is_refused_and_changes_nothing() {
    let (dirs, internal, mut pods) = start_cluster("cluster-owner-down").await;
    let writer = client_for(&pods[1].endpoint);
    put_all(&writer, (0..KEYS).map(|k| record(k, 0)).collect()).await;
    let home = client_for(&pods[0].endpoint);
    let (parent, start, end) = shard_on_pod_2(&pods[2], &home).await;

    pods[2].kill();
    assert!(
        !split(&home, &parent, start, end).await,
        "pod 0 cannot close a parent whose pod is down"
    );
    assert_eq!(open_shards(&home).await.len(), SHARDS as usize);
    assert!(open_shards(&home).await.contains(&parent));

    pods[2] = start_pod(&dirs[2], 2, &internal);
    wait_until_served(&client_for(&pods[2].endpoint)).await;
    put_all(&writer, (0..KEYS).map(|k| record(k, 1)).collect()).await;
    assert!(
        split(&home, &parent, start, end).await,
        "the split, asked again"
    );
    put_all(&writer, (0..KEYS).map(|k| record(k, 2)).collect()).await;
    assert_eq!(open_shards(&home).await.len(), SHARDS as usize + 1);
    read_back_in_order(&home, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_pod_0_stopping_between_closing_a_parent_and_saving_the_reshard_opens_the_parent_again()
 {
    let crashing = BrokerBuilder::default().arg("--crash-before-reshard-save");
    let (dirs, internal, mut pods) = start_cluster_with("cluster-pod0-stops", crashing).await;
    let writer = client_for(&pods[1].endpoint);
    put_all(&writer, (0..KEYS).map(|k| record(k, 0)).collect()).await;
    let (parent, start, end) = shard_on_pod_2(&pods[2], &writer).await;

    // Pod 0 asks pod 2 to close the parent, then stops before it saves the reshard.
    assert!(
        !split(&writer, &parent, start, end).await,
        "pod 0 stopped before it answered"
    );
    let stopped = pods[0].terminate();
    assert!(!stopped.success(), "pod 0 stopped itself: {stopped:?}");

    // Pod 0 comes back with the parent open in its catalog; pod 2 follows it and opens the
    // parent again, so the records for its keys are stored (put_all retries until they are).
    pods[0] = start_pod(&dirs[0], 0, &internal);
    wait_until_served(&client_for(&pods[0].endpoint)).await;
    put_all(&writer, (0..KEYS).map(|k| record(k, 1)).collect()).await;
    let home = client_for(&pods[0].endpoint);
    let open = open_shards(&home).await;
    assert_eq!(open.len(), SHARDS as usize, "no child was saved: {open:?}");
    assert!(open.contains(&parent));
    assert!(
        pods[2].log().contains("the parent is open again"),
        "pod 2 closed the parent for pod 0, then opened it again: {}",
        pods[2].log()
    );
    // The split, asked again of a pod 0 that does not stop, goes through.
    assert!(split(&home, &parent, start, end).await);
    put_all(&writer, (0..KEYS).map(|k| record(k, 2)).collect()).await;
    assert_eq!(open_shards(&home).await.len(), SHARDS as usize + 1);
    read_back_in_order(&home, 2).await;
}
