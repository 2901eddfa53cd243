//! The Stream controller with a Stream whose shards are spread over three broker processes
//! (a mocked API server plays Kubernetes): the first shards go to every pod; fewer declared
//! pods shrink the StatefulSet only once the leaving pod's open shards were moved off (split,
//! the children placed on the pods that stay, merged back) and its closed shards are past
//! retention; more declared pods grow it at once.

use std::time::Duration;

use brook::operator::kinesis::{BrokerAdmin, Placement};
use serde_json::json;

use super::support::broker::{Broker, BrokerBuilder, TempDir, client_for};
use super::support::operator::{ADMIN_SECRET, Harness, NAMESPACE, STATEFULSETS, condition};
use super::{
    STREAM, catalog_epoch, numbers_by_key, put, put_all, read_all, read_positions, record,
    start_pod_with,
};

const HOUR_MS: i64 = 3_600_000;

fn statefulset_replicas(harness: &Harness) -> Option<i64> {
    harness
        .mock
        .get(STATEFULSETS, STREAM)
        .and_then(|set| set["spec"]["replicas"].as_i64())
}

/// The Stream's Ready condition: (status, reason).
fn ready(harness: &Harness) -> (String, String) {
    let status = harness
        .stream(STREAM)
        .and_then(|s| s.status)
        .expect("a status");
    let (status, reason) = condition(&status.conditions, "Ready");
    (status.to_owned(), reason.to_owned())
}

/// Owners of the open shards, sorted.
fn open_owners(placement: &Placement) -> Vec<u32> {
    let mut owners: Vec<u32> = placement
        .shards
        .iter()
        .filter(|s| s.closed_ms.is_none())
        .map(|s| s.owner)
        .collect();
    owners.sort_unstable();
    owners
}

fn events_with(harness: &Harness, reason: &str) -> usize {
    harness
        .mock
        .events(NAMESPACE)
        .iter()
        .filter(|(_, r, _)| r == reason)
        .count()
}

/// Waits until pods 1 and 2 serve pod 0's catalog epoch.
async fn replicas_caught_up(pods: &[Broker]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pods[1..]
        .iter()
        .any(|pod| catalog_epoch(pod) != catalog_epoch(&pods[0]))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the replicas never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Declares the Stream with 3 shards over 3 broker pods, all ready, and reconciles it until
/// it serves.
async fn serve_three_pod_stream(harness: &Harness) {
    harness.seed_admin_secret(STREAM);
    harness.apply_stream(STREAM, json!({"shards": 3, "brokers": {"replicas": 3}}));
    harness.reconcile_stream(STREAM).await.expect("finalizer");
    harness.reconcile_stream(STREAM).await.expect("children");
    harness.brokers_ready(STREAM, 3);
    harness.reconcile_until_ready(STREAM).await;
}

/// Three pods of a Stream managed by the operator, and the operator's folder (its admin keys).
struct ManagedPods {
    dirs: Vec<TempDir>,
    internal: Vec<std::net::SocketAddr>,
    operator_dir: TempDir,
    managed: BrokerBuilder,
    pods: Vec<Broker>,
}

fn managed_pods(label: &str) -> ManagedPods {
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("{label}-{i}")))
        .collect();
    let internal = super::support::reserved_addresses(3);
    let operator_dir = TempDir::new(&format!("{label}-operator"));
    let admin_keys = Harness::admin_credentials(&operator_dir);
    let managed = BrokerBuilder::default()
        .arg("--managed-by")
        .arg(format!("Stream {NAMESPACE}/{STREAM}"))
        .arg("--admin-credentials")
        .arg(admin_keys.display().to_string());
    let pods = (0..3)
        .map(|i| start_pod_with(managed.clone(), &dirs[i], i, &internal))
        .collect();
    ManagedPods {
        dirs,
        internal,
        operator_dir,
        managed,
        pods,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_operator_spreads_a_stream_and_shrinks_its_pods_only_once_the_leaving_pod_holds_nothing_readable()
 {
    // The folders are kept until the end of the test.
    let ManagedPods {
        dirs: _dirs,
        internal: _internal,
        operator_dir,
        managed: _managed,
        mut pods,
    } = managed_pods("op-cluster");
    // The operator calls pod 0, as it does in a cluster (`{stream}-0.{stream}-brokers`).
    let address = pods[0].endpoint.trim_start_matches("http://").to_owned();
    let harness = Harness::with_brokers_at(operator_dir, &address);
    let admin = BrokerAdmin::new(address, "brook-operator", ADMIN_SECRET, "us-east-1");
    // The placement calls are relayed to pod 0 by any other pod.
    let admin_through_pod_2 = BrokerAdmin::new(
        pods[2].endpoint.trim_start_matches("http://").to_owned(),
        "brook-operator",
        ADMIN_SECRET,
        "us-east-1",
    );

    harness.seed_admin_secret(STREAM);
    harness.apply_stream(STREAM, json!({"shards": 3, "brokers": {"replicas": 3}}));
    harness.reconcile_stream(STREAM).await.expect("finalizer");
    harness.reconcile_stream(STREAM).await.expect("children");
    assert_eq!(statefulset_replicas(&harness), Some(3));
    // The first shards go to every pod: the stream waits until all of them are ready.
    harness.brokers_ready(STREAM, 2);
    harness.reconcile_stream(STREAM).await.expect("reconcile");
    assert_eq!(ready(&harness).1, "WaitingForBrokers");
    harness.brokers_ready(STREAM, 3);
    harness.reconcile_until_ready(STREAM).await;
    let placement = admin.describe_placement(STREAM).await.expect("placement");
    assert_eq!(placement.pods, 3);
    assert_eq!(open_owners(&placement), [0, 1, 2], "one shard per pod");
    let relayed = admin_through_pod_2
        .describe_placement(STREAM)
        .await
        .expect("placement through pod 2");
    assert_eq!(
        Placement {
            now_ms: placement.now_ms,
            ..relayed
        },
        placement
    );
    replicas_caught_up(&pods).await;
    let writer = client_for(&pods[2].endpoint);
    put_all(&writer, (0..30).map(|key| record(key, 0)).collect()).await;

    // Two pods declared: pod 2's shard is moved off, the StatefulSet keeps three pods.
    harness.apply_stream(STREAM, json!({"shards": 3, "brokers": {"replicas": 2}}));
    let mut reconciles = 0;
    while ready(&harness).1 != "WaitingForRetention" {
        reconciles += 1;
        assert!(
            reconciles < 50,
            "never moved pod 2's shards off: {:?}",
            ready(&harness)
        );
        harness.reconcile_stream(STREAM).await.expect("reconcile");
        assert_eq!(
            statefulset_replicas(&harness),
            Some(3),
            "the StatefulSet keeps pod 2 while it holds shards"
        );
    }
    assert_eq!(ready(&harness).0, "False", "the change is not done");
    let placement = admin.describe_placement(STREAM).await.expect("placement");
    assert_eq!(placement.pods, 2, "pod 2 takes no new shard");
    assert_eq!(open_owners(&placement).len(), 3, "the shard count is kept");
    assert!(
        open_owners(&placement).iter().all(|owner| *owner < 2),
        "no open shard is left on pod 2: {placement:?}"
    );
    assert_eq!(
        events_with(&harness, "MovingShard"),
        2,
        "one split, one merge"
    );
    // Nothing was lost: pod 2's closed shard still serves its records.
    replicas_caught_up(&pods).await;
    let reader = client_for(&pods[1].endpoint);
    let read = numbers_by_key(&read_all(&reader).await);
    assert_eq!(read.len(), 30, "every key: {read:?}");
    assert!(read.values().all(|numbers| numbers == &[0]), "{read:?}");
    // Steady while waiting: another reconcile changes nothing.
    harness.reconcile_stream(STREAM).await.expect("reconcile");
    assert_eq!(ready(&harness).1, "WaitingForRetention");
    assert_eq!(statefulset_replicas(&harness), Some(3));

    // Once pod 2's closed shard is past retention, the StatefulSet shrinks.
    pods[0].advance_clock(25 * HOUR_MS);
    let mut reconciles = 0;
    while statefulset_replicas(&harness) != Some(2) {
        reconciles += 1;
        assert!(reconciles < 50, "never shrank: {:?}", ready(&harness));
        harness.reconcile_stream(STREAM).await.expect("reconcile");
    }
    assert_eq!(events_with(&harness, "ShrinkingBrokers"), 1);
    harness.reconcile_until_ready(STREAM).await;
    assert_eq!(ready(&harness).1, "Serving");
    // Pod 2 goes: every record written through the others is stored at the first attempt.
    pods[2].kill();
    replicas_caught_up(&pods[..2]).await;
    let failed = put(
        &reader,
        &(0..30).map(|key| record(key, 1)).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(failed, [], "no record goes to the pod that left");

    // More pods declared: the StatefulSet grows at once and pod 2 takes new shards again.
    harness.apply_stream(STREAM, json!({"shards": 3, "brokers": {"replicas": 3}}));
    harness.reconcile_stream(STREAM).await.expect("reconcile");
    assert_eq!(statefulset_replicas(&harness), Some(3));
    let placement = admin.describe_placement(STREAM).await.expect("placement");
    assert_eq!(placement.pods, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_operator_reports_a_stream_partly_serving_while_pod_0_is_down() {
    let ManagedPods {
        dirs,
        internal,
        operator_dir,
        managed,
        mut pods,
    } = managed_pods("op-home-down");
    let address = |pod: &Broker| pod.endpoint.trim_start_matches("http://").to_owned();
    let mut harness = Harness::with_brokers_at(operator_dir, &address(&pods[0]));
    // The operator reaches pod 0 for its calls and the Service (here: pod 1) otherwise.
    std::sync::Arc::get_mut(&mut harness.ctx)
        .expect("the harness holds the only context")
        .brokers = brook::operator::BrokerAddresses::Forwarded {
        service: address(&pods[1]),
        home: address(&pods[0]),
    };
    serve_three_pod_stream(&harness).await;
    assert_eq!(ready(&harness), ("True".to_owned(), "Serving".to_owned()));
    replicas_caught_up(&pods).await;

    pods[0].kill();
    harness.brokers_ready(STREAM, 2);
    harness.reconcile_stream(STREAM).await.expect("reconcile");
    let status = harness
        .stream(STREAM)
        .and_then(|s| s.status)
        .expect("a status");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("True", "PartlyServing"),
        "{:?}",
        status.conditions
    );
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True", "HomePodUnavailable")
    );
    assert_eq!(status.open_shards, Some(3));
    assert_eq!(events_with(&harness, "HomePodUnavailable"), 1);
    // It is so: a record for a shard of pod 1 or 2 is stored meanwhile.
    let writer = client_for(&pods[1].endpoint);
    let failed = put(
        &writer,
        &(0..30).map(|key| record(key, 0)).collect::<Vec<_>>(),
    )
    .await;
    assert!(
        failed.len() < 30,
        "the other pods' shards serve: {failed:?}"
    );

    pods[0] = start_pod_with(managed.clone(), &dirs[0], 0, &internal);
    harness.brokers_ready(STREAM, 3);
    // The new process listens on another port: the operator is pointed at it, as the pod's
    // stable DNS name would follow it.
    std::sync::Arc::get_mut(&mut harness.ctx)
        .expect("the harness holds the only context")
        .brokers = brook::operator::BrokerAddresses::Forwarded {
        service: address(&pods[1]),
        home: address(&pods[0]),
    };
    harness.reconcile_until_ready(STREAM).await;
    assert_eq!(ready(&harness), ("True".to_owned(), "Serving".to_owned()));
    let status = harness
        .stream(STREAM)
        .and_then(|s| s.status)
        .expect("a status");
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("False", "AsExpected")
    );
}

/// Files under a pod's folder for the shards of the stream (`streams/<key>/<index>/...`).
pub(super) fn segment_files(dir: &TempDir, shard_index: u32) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(streams) = std::fs::read_dir(dir.path().join("streams")) else {
        return found;
    };
    for stream in streams.flatten() {
        if let Ok(files) = std::fs::read_dir(stream.path().join(shard_index.to_string())) {
            found.extend(files.flatten().map(|f| f.path().display().to_string()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_operator_drains_a_leaving_pods_closed_shards_and_shrinks_before_retention() {
    let ManagedPods {
        dirs,
        internal,
        operator_dir,
        managed,
        mut pods,
    } = managed_pods("op-drain");
    let address = pods[0].endpoint.trim_start_matches("http://").to_owned();
    let harness = Harness::with_brokers_at(operator_dir, &address);
    let admin = BrokerAdmin::new(address, "brook-operator", ADMIN_SECRET, "us-east-1");
    serve_three_pod_stream(&harness).await;
    replicas_caught_up(&pods).await;
    let writer = client_for(&pods[2].endpoint);
    put_all(&writer, (0..30).map(|key| record(key, 0)).collect()).await;
    // An open shard, or one on a pod that stays, is not moved.
    let open = admin
        .move_closed_shard(STREAM, "shardId-000000000000")
        .await
        .expect_err("an open shard is not moved");
    assert_eq!(open.code(), Some("ResourceInUseException"), "{open}");

    harness.apply_stream(
        STREAM,
        json!({"shards": 3, "brokers": {"replicas": 2, "shrinkPolicy": "Drain"}}),
    );
    let mut reasons = Vec::new();
    let mut before = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while statefulset_replicas(&harness) != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "never shrank: {:?}",
            ready(&harness)
        );
        harness.reconcile_stream(STREAM).await.expect("reconcile");
        let reason = ready(&harness).1;
        if reason == "DrainingShards" && before.is_none() {
            // Pod 2's open shard is resharded off; its closed one is being copied: what every
            // reader sees now is what it must see after the pod is gone.
            let placement = admin.describe_placement(STREAM).await.expect("placement");
            assert!(
                open_owners(&placement).iter().all(|owner| *owner < 2),
                "{placement:?}"
            );
            // Read through pod 1 once it follows pod 0's map (the merge that ended the
            // reshard included).
            replicas_caught_up(&pods).await;
            before = Some(read_positions(&client_for(&pods[1].endpoint)).await);
        }
        if reasons.last() != Some(&reason) {
            reasons.push(reason);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reasons.iter().any(|r| r == "DrainingShards"),
        "the Stream said it drained: {reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r == "WaitingForRetention"),
        "nothing waited for retention: {reasons:?}"
    );
    assert!(events_with(&harness, "DrainingShard") >= 1);
    assert_eq!(events_with(&harness, "ShrinkingBrokers"), 1);
    let placement = admin.describe_placement(STREAM).await.expect("placement");
    let moved: Vec<_> = placement
        .shards
        .iter()
        .filter(|s| s.closed_ms.is_some() && s.parent.is_none())
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "pod 2's first shard was closed: {placement:?}"
    );
    let (moved_index, destination) = (moved[0].index, moved[0].owner);
    assert!(destination < 2, "copied to a pod that stays: {placement:?}");
    let before = before.expect("read while draining");
    let stored = before.iter().filter(|r| !r.1.is_empty()).count();
    assert_eq!(stored, 30, "{before:?}");

    // Pod 2 forgets its copy once it follows the new map.
    replicas_caught_up(&pods).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !segment_files(&dirs[2], moved_index).is_empty() {
        assert!(std::time::Instant::now() < deadline, "pod 2 kept its copy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!segment_files(&dirs[destination as usize], moved_index).is_empty());

    // Pod 2 goes; then the pod that took the copy is killed (-9) and restarted: every record
    // reads back with its sequence number and arrival time, through either pod.
    pods[2].kill();
    replicas_caught_up(&pods[..2]).await;
    let after = read_positions(&client_for(&pods[0].endpoint)).await;
    assert_eq!(after, before, "read through pod 0 with pod 2 gone");
    let destination = destination as usize;
    pods[destination].kill();
    pods[destination] = start_pod_with(managed.clone(), &dirs[destination], destination, &internal);
    let other = 1 - destination;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let client = client_for(&pods[other].endpoint);
        let listed = client.list_shards().stream_name(STREAM).send().await;
        if listed.is_ok() && catalog_epoch(&pods[destination]).is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pod never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replicas_caught_up(&pods[..2]).await;
    let after_restart = read_positions(&client_for(&pods[other].endpoint)).await;
    assert_eq!(after_restart, before, "read after the copy's pod restarted");
}
