//! Broker pods other than a stream's home forward every request to it: through any pod a
//! client sees one stream, signatures made for the forwarding pod verify at home, event
//! streams flow through, and a missing home is a retryable ServiceUnavailable.

mod support;

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use support::broker::{
    Broker, BrokerBuilder, TempDir, create_active_stream, error_code, http_request, signed_client,
};

const KEY_ID: &str = "AKIDFORWARDED";
const SECRET: &str = "forwarded-secret-0123456789abcdefghij";

fn signed(endpoint: &str) -> aws_sdk_kinesis::Client {
    signed_client(endpoint, KEY_ID, SECRET)
}

fn forwarder(dir: &TempDir, home: &str) -> Broker {
    BrokerBuilder::default()
        .arg("--pod-name")
        .arg("orders-1")
        .arg("--home-pod")
        .arg("orders-0")
        .arg("--home-url")
        .arg(home)
        .start(&dir.path().join("forwarder"))
}

#[tokio::test]
async fn every_pod_serves_the_home_pods_stream_with_signatures_and_event_streams_intact() {
    let dir = TempDir::new("forwarding");
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, format!("{KEY_ID}={SECRET}\n")).expect("credentials");
    let home = BrokerBuilder::default()
        .arg("--credentials")
        .arg(credentials.display().to_string())
        .start(&dir.path().join("home"));
    let other = forwarder(&dir, &home.endpoint);
    assert_ne!(home.endpoint, other.endpoint);

    let through_other = signed(&other.endpoint);
    let at_home = signed(&home.endpoint);
    create_active_stream(&through_other, "orders", 2).await;
    let mut acknowledged = std::collections::BTreeMap::new();
    for n in 0..20 {
        let put = through_other
            .put_record()
            .stream_name("orders")
            .partition_key(format!("customer-{n}"))
            .data(Blob::new(format!("order-{n}")))
            .send()
            .await
            .expect("a put through the forwarding pod");
        acknowledged.insert(put.sequence_number().to_owned(), format!("order-{n}"));
    }
    // The home broker holds what the other pod accepted, under the sequence numbers the
    // forwarder acknowledged, and reads through the forwarder return the same.
    for client in [&at_home, &through_other] {
        let shards = client
            .list_shards()
            .stream_name("orders")
            .send()
            .await
            .expect("shards");
        let mut stored = std::collections::BTreeMap::new();
        for shard in shards.shards() {
            let iterator = client
                .get_shard_iterator()
                .stream_name("orders")
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("iterator")
                .shard_iterator()
                .expect("an iterator")
                .to_owned();
            let records = client
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .expect("records");
            for record in records.records() {
                stored.insert(
                    record.sequence_number().to_owned(),
                    String::from_utf8_lossy(record.data().as_ref()).into_owned(),
                );
            }
        }
        assert_eq!(stored, acknowledged);
    }

    // A wrong signature is refused at home, through the forwarder.
    let forged = signed_client(&other.endpoint, KEY_ID, "wrong");
    let refused = forged
        .list_streams()
        .send()
        .await
        .expect_err("a forged signature");
    assert_eq!(error_code(&refused), "InvalidSignatureException");

    // SubscribeToShard's event stream flows through the forwarding pod.
    let arn = at_home
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("summary")
        .stream_description_summary()
        .expect("summary")
        .stream_arn()
        .to_owned();
    let consumer = through_other
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("audit")
        .send()
        .await
        .expect("register")
        .consumer()
        .expect("consumer")
        .consumer_arn()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let described = at_home
            .describe_stream_consumer()
            .consumer_arn(&consumer)
            .send()
            .await
            .expect("describe consumer");
        let status = described
            .consumer_description()
            .map(|c| c.consumer_status().as_str().to_owned());
        if status.as_deref() == Some("ACTIVE") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer never became ACTIVE: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut subscription = through_other
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id("shardId-000000000000")
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .expect("position"),
        )
        .send()
        .await
        .expect("subscribe through the forwarding pod");
    let event = tokio::time::timeout(Duration::from_secs(10), subscription.event_stream.recv())
        .await
        .expect("an event within ten seconds")
        .expect("a well-formed event")
        .expect("the stream is open");
    assert!(matches!(
        event,
        SubscribeToShardEventStream::SubscribeToShardEvent(_)
    ));
}

#[tokio::test]
async fn a_forwarder_without_its_home_is_unready_and_answers_service_unavailable() {
    let dir = TempDir::new("forwarding-down");
    let home = format!("http://{}", support::unused_address());
    let other = forwarder(&dir, &home);
    let (status, _) = http_request("GET", &format!("{}/readyz", other.metrics));
    assert_eq!(status, 503);
    let (status, _) = http_request("GET", &format!("{}/healthz", other.metrics));
    assert_eq!(status, 200);
    let error = other
        .client()
        .list_streams()
        .send()
        .await
        .expect_err("no home broker");
    assert_eq!(error_code(&error), "ServiceUnavailable");
}
