//! TLS on the Kinesis port: the AWS SDK trusting a test CA talks HTTPS to the broker, and a
//! rotated certificate is served without a restart.

mod support;

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use support::broker::{BrokerBuilder, TempDir, https_client};

#[tokio::test]
async fn the_sdk_talks_https_to_a_broker_with_a_certificate_and_follows_its_rotation() {
    let dir = TempDir::new("tls");
    let data = TempDir::new("tls-data");
    let first = support::pki::make(&dir.path().join("first"), "first");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::copy(&first.cert, &cert).expect("cert");
    std::fs::copy(&first.key, &key).expect("key");
    let broker = BrokerBuilder::default()
        .arg("--tls-cert")
        .arg(cert.to_string_lossy())
        .arg("--tls-key")
        .arg(key.to_string_lossy())
        .start(data.path());
    assert!(
        broker.endpoint.starts_with("https://"),
        "{}",
        broker.endpoint
    );

    let client = https_client(&broker.endpoint, &first.ca_pem);
    client
        .create_stream()
        .stream_name("secure")
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream over TLS");
    support::broker::wait_for_status(&client, "secure", "ACTIVE").await;
    let put = client
        .put_record()
        .stream_name("secure")
        .partition_key("k")
        .data(Blob::new("sealed"))
        .send()
        .await;
    assert_eq!(
        put.expect("PutRecord over TLS").shard_id(),
        "shardId-000000000000"
    );

    // Enhanced fan-out over TLS: SubscribeToShard's event stream arrives intact.
    let consumer = client
        .register_stream_consumer()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/secure")
        .consumer_name("secure-reader")
        .send()
        .await
        .expect("RegisterStreamConsumer over TLS");
    let arn = consumer
        .consumer()
        .expect("consumer")
        .consumer_arn()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client
        .describe_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .expect("DescribeStreamConsumer")
        .consumer_description()
        .is_none_or(|c| c.consumer_status().as_str() != "ACTIVE")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer never became ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut subscription = client
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id("shardId-000000000000")
        .starting_position(
            aws_sdk_kinesis::types::StartingPosition::builder()
                .r#type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .build()
                .expect("position"),
        )
        .send()
        .await
        .expect("SubscribeToShard over TLS");
    let event = tokio::time::timeout(Duration::from_secs(10), subscription.event_stream.recv())
        .await
        .expect("an event")
        .expect("well formed")
        .expect("open");
    let aws_sdk_kinesis::types::SubscribeToShardEventStream::SubscribeToShardEvent(event) = event
    else {
        panic!("unexpected event");
    };
    assert_eq!(event.records()[0].data().as_ref(), b"sealed");

    let second = support::pki::make(&dir.path().join("second"), "second");
    let untrusting = https_client(&broker.endpoint, &second.ca_pem);
    assert!(
        untrusting.list_streams().send().await.is_err(),
        "a client trusting another CA connected"
    );

    // cert-manager style rotation: the files change in place.
    std::fs::copy(&second.cert, &cert).expect("rotate cert");
    std::fs::copy(&second.key, &key).expect("rotate key");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match https_client(&broker.endpoint, &second.ca_pem)
            .list_streams()
            .send()
            .await
        {
            Ok(listed) => {
                assert_eq!(listed.stream_names(), ["secure"]);
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(error) => panic!("the rotated certificate was never served: {error:?}"),
        }
    }
}
