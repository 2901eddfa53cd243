//! The AUTO record distribution strategy on a stream spread over pods: a pod stores the
//! records it receives in the open shards it owns, in turn, and sends none to another pod.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{RecordDistributionStrategy, StreamMode, StreamModeDetails};

use super::support::broker::{Broker, TempDir, client_for};
use super::{STREAM, incoming_records, read_all, served_everywhere, start_pod};

fn stored(pod: &Broker) -> f64 {
    incoming_records(pod).values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_distribution_auto_stores_records_on_the_pod_they_reach() {
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("cluster-auto-{i}")))
        .collect();
    let internal = super::support::reserved_addresses(3);
    let pods: Vec<Broker> = (0..3).map(|i| start_pod(&dirs[i], i, &internal)).collect();
    let client = client_for(&pods[1].endpoint);
    client
        .create_stream()
        .stream_name(STREAM)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .expect("mode"),
        )
        .record_distribution_strategy(RecordDistributionStrategy::Auto)
        .send()
        .await
        .expect("CreateStream ON_DEMAND with AUTO, through pod 1");
    served_everywhere(&pods, |pod| client_for(&pod.endpoint)).await;

    for (ordinal, pod) in pods.iter().enumerate() {
        let before: Vec<f64> = pods.iter().map(stored).collect();
        let writer = client_for(&pod.endpoint);
        for i in 0..30 {
            writer
                .put_record()
                .stream_name(STREAM)
                .partition_key("one key")
                .data(Blob::new(format!("{ordinal}:{i}")))
                .send()
                .await
                .expect("PutRecord");
        }
        let after: Vec<f64> = pods.iter().map(stored).collect();
        for other in 0..3 {
            let expected = if other == ordinal { 30.0 } else { 0.0 };
            assert_eq!(
                after[other] - before[other],
                expected,
                "records put through pod {ordinal}, stored by pod {other}"
            );
        }
    }
    let read = read_all(&client_for(&pods[0].endpoint)).await;
    let mut all: Vec<String> = read.into_values().flatten().collect();
    all.sort();
    let mut expected: Vec<String> = (0..3)
        .flat_map(|o| (0..30).map(move |i| format!("{o}:{i}")))
        .collect();
    expected.sort();
    assert_eq!(all, expected, "every record once");
}
