//! A closed shard moved off a leaving pod while pod 0 stops between the copy and naming the
//! copy's pod the owner: the move asked again after pod 0 restarts goes to the same pod,
//! which has the copy already, so no copy is left behind unnamed on another pod.

use std::time::{Duration, Instant};

use super::operator::segment_files;
use super::support::broker::{BrokerBuilder, client_for, raw_post};
use super::{
    KEYS, STREAM, placement, put_all, read_back_once_after_a_split, record, served_everywhere,
    shard_on_pod_2, split, start_cluster_with, start_pod,
};

/// A placement operation sent to `endpoint`: its status and JSON answer.
fn admin(endpoint: &str, operation: &str, input: serde_json::Value) -> (u16, serde_json::Value) {
    let answer = raw_post(
        endpoint,
        Some(&format!("BrookCluster_20261130.{operation}")),
        "application/x-amz-json-1.1",
        input.to_string().as_bytes(),
    );
    let body = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
    (answer.status, body)
}

/// The owner of shard `id` in pod 0's placement map.
fn owner_of(pod_0: &super::support::broker::Broker, id: &str) -> u64 {
    placement(pod_0)["Streams"][0]["Shards"]
        .as_array()
        .expect("shards")
        .iter()
        .find(|s| s["ShardId"] == id)
        .and_then(|s| s["Owner"].as_u64())
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
    let (status, answer) = admin(
        &pods[0].endpoint,
        "SetPlacementPods",
        serde_json::json!({"StreamName": STREAM, "Pods": 2}),
    );
    assert_eq!(status, 200, "{answer}");
    let (parent, start, end) = shard_on_pod_2(&pods[2], &home).await;
    assert!(split(&home, &parent, start, end).await, "SplitShard");
    let index: u32 = parent
        .trim_start_matches("shardId-")
        .parse()
        .expect("a shard number");
    let move_it = serde_json::json!({"StreamName": STREAM, "ShardId": parent});

    // Pod 0 asks a pod that stays to copy it, and stops once the copy is complete.
    let (status, answer) = admin(&pods[0].endpoint, "MoveClosedShard", move_it.clone());
    assert_eq!(status, 200, "{answer}");
    let first = answer["To"].as_u64().expect("a destination") as usize;
    assert!(first < 2, "{answer}");
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
    let (status, answer) = admin(&pods[0].endpoint, "MoveClosedShard", move_it);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["To"].as_u64(), Some(first as u64), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while owner_of(&pods[0], &parent) != first as u64 {
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
