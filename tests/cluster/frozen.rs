//! A pod that stops answering without going away (SIGSTOP: its connections stay open, as on a
//! node that froze or lost its network): after the answer limit the other pods fail its
//! records with retryable errors and go on serving their own shards; once it answers again
//! the retried records are stored and nothing acknowledged is lost or out of order.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;

use super::support::broker::{BrokerBuilder, client_for, error_code, trim_horizon_iterator};
use super::{
    KEYS, STREAM, incoming_records, numbers_by_key, put_all, put_with_pod_2_out, read_all, record,
    start_cluster_of,
};

/// Pod 1's gauge of pod 2's silence.
const SILENT_POD_2: &str = "brook_cluster_silent_pod{pod=\"2\"}";

/// The value of `series` on `pod`'s /metrics (0 when absent).
fn sample(pod: &super::support::broker::Broker, series: &str) -> f64 {
    let (_, metrics) = pod.observe("/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A pod started to wait `seconds` for the others' answers.
fn answering_within(seconds: u32) -> BrokerBuilder {
    BrokerBuilder::default()
        .arg("--cluster-answer-timeout-seconds")
        .arg(seconds.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_frozen_pod_fails_only_its_records_and_the_others_keep_serving() {
    let (_dirs, _internal, pods) = start_cluster_of(
        "cluster-frozen",
        [
            answering_within(1),
            answering_within(1),
            answering_within(1),
        ],
    )
    .await;
    let writer = client_for(&pods[1].endpoint);
    let reader = client_for(&pods[0].endpoint);
    put_all(&writer, (0..KEYS).map(|k| record(k, 0)).collect()).await;
    let on_pod_2: Vec<String> = incoming_records(&pods[2])
        .into_iter()
        .filter(|(_, count)| *count > 0.0)
        .map(|(shard, _)| shard)
        .collect();
    let elsewhere = incoming_records(&pods[0])
        .into_iter()
        .find(|(_, count)| *count > 0.0)
        .map(|(shard, _)| shard)
        .expect("pod 0 owns a shard");
    assert!(!on_pod_2.is_empty(), "pod 2 owns a shard");

    pods[2].freeze();
    // The same request stores the other pods' records and fails pod 2's, retryably.
    let batch: Vec<_> = (0..KEYS).map(|k| record(k, 1)).collect();
    let failed = put_with_pod_2_out(&writer, &batch).await;
    // Pod 1 now takes pod 2 for silent: pod 2's records sent again do not wait the limit
    // once more, they fail at once.
    let again = writer
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(
            failed.iter().map(|(i, _)| batch[*i].clone()).collect(),
        ))
        .send()
        .await
        .expect("PutRecords is answered");
    let messages: Vec<&str> = again
        .records()
        .iter()
        .filter_map(|r| r.error_message())
        .collect();
    assert_eq!(messages.len(), failed.len());
    assert!(
        messages.iter().all(|m| m.contains("fail at once")),
        "{messages:?}"
    );
    // Reads: pod 2's shard is unavailable, not wrong; another pod's shard reads on.
    let down = reader
        .get_shard_iterator()
        .stream_name(STREAM)
        .shard_id(&on_pod_2[0])
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("pod 2's shard does not answer");
    assert_eq!(error_code(&down), "ServiceUnavailable");
    let iterator = trim_horizon_iterator(&reader, STREAM, &elsewhere).await;
    let page = reader
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords on pod 0's shard");
    assert!(!page.records().is_empty());
    // Pod 1 shows which pod did not answer it, and that it takes that pod for silent
    // (its later calls to pod 2 fail at once but for one a second).
    assert!(
        sample(&pods[1], "brook_cluster_unanswered_calls_total{pod=\"2\"}") >= 1.0,
        "pod 1 counts the calls pod 2 did not answer"
    );
    assert_eq!(sample(&pods[1], SILENT_POD_2), 1.0);
    // The pods that are up stay ready.
    for pod in &pods[..2] {
        assert_eq!(pod.observe("/readyz").0, 200);
    }

    pods[2].thaw();
    put_all(
        &writer,
        failed.iter().map(|(i, _)| batch[*i].clone()).collect(),
    )
    .await;
    put_all(&writer, (0..KEYS).map(|k| record(k, 2)).collect()).await;
    // Pod 2 answered pod 1 again: no longer silent. Pod 0, which took pod 2 for silent
    // when the read above got no answer, learns it from its probe.
    assert_eq!(sample(&pods[1], SILENT_POD_2), 0.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sample(&pods[0], SILENT_POD_2) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "pod 0 never heard from pod 2 again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every record is there, each key in order. A record whose put failed may be there
    // twice: the frozen pod may store the part it took before it froze once it goes on,
    // as any write whose answer was lost may be (Kinesis producers retry the same way).
    let failed_keys: HashSet<String> = failed.iter().map(|(i, _)| format!("key-{i}")).collect();
    let seen = numbers_by_key(&read_all(&reader).await);
    assert_eq!(seen.len(), KEYS);
    for (key, numbers) in &seen {
        let mut first_seen = Vec::new();
        for &n in numbers {
            if !first_seen.contains(&n) {
                first_seen.push(n);
            } else {
                assert!(
                    n == 1 && failed_keys.contains(key),
                    "{key}: {numbers:?} repeats a record whose put succeeded"
                );
            }
        }
        assert_eq!(first_seen, vec![0, 1, 2], "{key}: {numbers:?}");
    }
}
