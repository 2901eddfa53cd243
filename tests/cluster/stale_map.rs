//! PutRecords through a pod whose placement map lags a reshard: the parent closed on that pod
//! before the pod's map had the children. The records whose hash keys fall in the parent's
//! range fail one by one as `InternalFailure`, which producers retry; the others are stored.

use std::collections::HashSet;

use md5::{Digest, Md5};

use super::support::broker::client_for;
use super::{
    KEYS, put, read_back_once_after_a_split, record, shard_on_pod_2, split, start_cluster,
};

/// The hash key Kinesis derives from a partition key.
fn hash_of(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_put_records_through_a_pod_behind_a_reshard_fails_only_the_records_of_the_closed_range()
 {
    let (_dirs, _internal, pods) = start_cluster("cluster-behind").await;
    let home = client_for(&pods[0].endpoint);
    let writer = client_for(&pods[2].endpoint);
    let batch: Vec<_> = (0..KEYS).map(|k| record(k, 0)).collect();
    assert_eq!(put(&writer, &batch).await, vec![]);
    let (parent, start, end) = shard_on_pod_2(&pods[2], &home).await;

    // Pod 2 stops following pod 0's map on its timer; pod 0 splits pod 2's shard, so pod 2
    // closes the parent in its own log but does not learn of the children.
    pods[2].hold_catalog_follow();
    assert!(
        split(&home, &parent, start, end).await,
        "SplitShard at pod 0"
    );

    let batch: Vec<_> = (0..KEYS).map(|k| record(k, 1)).collect();
    let failed = put(&writer, &batch).await;
    let in_parent: HashSet<usize> = (0..KEYS)
        .filter(|k| (start..=end).contains(&hash_of(&format!("key-{k}"))))
        .collect();
    assert!(
        !in_parent.is_empty(),
        "some keys fall in the parent's range"
    );
    assert_eq!(
        failed.iter().map(|(i, _)| *i).collect::<HashSet<_>>(),
        in_parent,
        "exactly the records of the closed parent's range fail"
    );
    assert!(
        failed.iter().all(|(_, code)| code == "InternalFailure"),
        "{failed:?}"
    );

    // The failure made pod 2 bring its map up to date: sent again, they go to the children.
    let again: Vec<_> = failed.iter().map(|(i, _)| batch[*i].clone()).collect();
    assert_eq!(put(&writer, &again).await, vec![], "stored once sent again");

    read_back_once_after_a_split(&home, 1).await;
}
