//! A closed shard moved off a leaving pod while pod 0 stops between the copy and naming the
//! copy's pod the owner: the move asked again after pod 0 restarts goes to the same pod,
//! which has the copy already, so no copy is left behind unnamed on another pod.

use std::time::{Duration, Instant};

use brook::operator::kinesis::BrokerAdmin;

use super::operator::segment_files;
use super::support::broker::{BrokerBuilder, client_for};
use super::{
    KEYS, STREAM, put_all, read_back_once_after_a_split, record, served_everywhere, shard_on_pod_2,
    split, start_cluster_with, start_pod,
};

/// The placement operations, sent to pod 0 (the brokers take any signature).
fn admin_of(pod_0: &super::support::broker::Broker) -> BrokerAdmin {
    let address = pod_0.endpoint.trim_start_matches("http://").to_owned();
    BrokerAdmin::new(address, "test", "secret", "us-east-1")
}

/// The owner of shard `index` in pod 0's placement map.
async fn owner_of(admin: &BrokerAdmin, index: u32) -> u32 {
    let placement = admin.describe_placement(STREAM).await.expect("placement");
    placement
        .shards
        .iter()
        .find(|s| s.index == index)
        .map(|s| s.owner)
        .expect("the shard is in the map")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_move_asked_again_after_pod_0_stopped_before_naming_the_owner_leaves_no_copy_behind()
 {
    let crashing = BrokerBuilder::default().arg("--crash-before-move-named");
    let (dirs, internal, mut pods) = start_cluster_with("cluster-move-again", crashing).await;
    let home = client_for(&pods[0].endpoint);
    put_all(&home, (0..KEYS).map(|k| record(k, 0)).collect()).await;

    // Pod 2 is leaving: new shards go to pods 0 and 1, and one of its shards is split off it.
    admin_of(&pods[0])
        .set_placement_pods(2)
        .await
        .expect("SetPlacementPods");
    let (parent, start, end) = shard_on_pod_2(&pods[2], &home).await;
    assert!(split(&home, &parent, start, end).await, "SplitShard");
    let index: u32 = parent
        .trim_start_matches("shardId-")
        .parse()
        .expect("a shard number");

    // Pod 0 asks a pod that stays to copy it, and stops once the copy is complete.
    let first = admin_of(&pods[0])
        .move_closed_shard(STREAM, &parent)
        .await
        .expect("MoveClosedShard") as usize;
    assert!(first < 2, "to pod {first}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pods[0].running() {
        assert!(
            Instant::now() < deadline,
            "pod 0 never stopped after the copy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !segment_files(&dirs[first], index).is_empty(),
        "pod {first} holds the copy"
    );

    // Restarted, pod 0 is asked again (as the operator keeps asking until the move is done):
    // the move goes to the pod that has the copy and completes.
    pods[0] = start_pod(&dirs[0], 0, &internal);
    served_everywhere(&pods, |pod| client_for(&pod.endpoint)).await;
    let admin = admin_of(&pods[0]);
    let again = admin
        .move_closed_shard(STREAM, &parent)
        .await
        .expect("MoveClosedShard");
    assert_eq!(again as usize, first);
    let deadline = Instant::now() + Duration::from_secs(60);
    while owner_of(&admin, index).await as usize != first {
        assert!(Instant::now() < deadline, "the move never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No other pod that stays holds a copy; pod 2 forgets its own once it follows the map.
    let other = 1 - first;
    assert!(
        segment_files(&dirs[other], index).is_empty(),
        "pod {other} holds a copy nobody names"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !segment_files(&dirs[2], index).is_empty() {
        assert!(Instant::now() < deadline, "pod 2 kept its copy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read_back_once_after_a_split(&client_for(&pods[1].endpoint), 0).await;
}
