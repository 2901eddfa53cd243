//! An ON_DEMAND stream spread over pods scales from the write demand on every pod's shards:
//! pod 0 decides, and the other pods tell it the demand on theirs.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamMode, StreamModeDetails};

use super::support::broker::{BrokerBuilder, TempDir, client_for};
use super::{STREAM, open_shards_by_owner, placement, served_everywhere, start_pod_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_on_demand_scales_from_writes_to_shards_on_other_pods() {
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("cluster-on-demand-{i}")))
        .collect();
    let internal = super::support::reserved_addresses(3);
    // Quotas of 100 records/s a shard, measured every 200 ms, scaled up at once.
    let builder = || {
        BrokerBuilder::default()
            .arg("--no-quotas")
            .arg("--write-records-per-second")
            .arg("100")
            .arg("--on-demand-interval-ms")
            .arg("200")
            .arg("--on-demand-scale-up-seconds")
            .arg("0")
            .arg("--on-demand-scale-down-seconds")
            .arg("3600")
    };
    let pods: Vec<_> = (0..3)
        .map(|i| start_pod_with(builder(), &dirs[i], i, &internal))
        .collect();
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
        .send()
        .await
        .expect("CreateStream ON_DEMAND through pod 1");
    served_everywhere(&pods, |pod| client_for(&pod.endpoint)).await;

    // Every record goes to a shard pod 0 does not own: only the other pods see the demand.
    let elsewhere: Vec<String> = open_shards_by_owner(&placement(&pods[0]))
        .into_iter()
        .filter(|(_, owner)| *owner != 0)
        .map(|(id, _)| id)
        .collect();
    assert!(!elsewhere.is_empty(), "pods 1 and 2 own shards");
    let listed = client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .expect("ListShards");
    let starts: Vec<String> = listed
        .shards()
        .iter()
        .filter(|s| elsewhere.iter().any(|id| id == s.shard_id()))
        .filter_map(|s| s.hash_key_range().map(|r| r.starting_hash_key().to_owned()))
        .collect();
    let open = |placement: &serde_json::Value| open_shards_by_owner(placement).len();
    assert_eq!(open(&placement(&pods[0])), 4);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut round = 0;
    while open(&placement(&pods[0])) <= 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never scaled up under writes to shards on pods 1 and 2"
        );
        let entries = (0..200)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .explicit_hash_key(&starts[i % starts.len()])
                    .data(Blob::new(format!("{round}:{i}")))
                    .build()
                    .expect("entry")
            })
            .collect();
        // Records may fail one by one while a reshard closes their shard (retryable, as in
        // Kinesis), also while pod 1's map lacks the children of a shard pod 0 closed; the
        // request as a whole is answered, and the demand counts them either way.
        client
            .put_records()
            .stream_name(STREAM)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords through pod 1");
        round += 1;
    }
}
