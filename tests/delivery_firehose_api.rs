//! The Firehose control API of a standalone `brook broker`, with the official AWS SDK for
//! Rust (`aws-sdk-firehose`) and objects read back from a real S3-compatible server: create
//! (stream source and direct put), describe, list, update the destination (versioned), tags,
//! delete, Firehose's errors, and delivery streams that survive a broker restart.

mod support;

use aws_sdk_firehose::Client;
use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DeliveryStreamType, ExtendedS3DestinationConfiguration,
    ExtendedS3DestinationUpdate, KinesisStreamSourceConfiguration, ProcessingConfiguration,
    Processor, ProcessorType, Tag,
};
use support::broker::{Broker, BrokerBuilder, TempDir, create_active_stream};
use support::delivery::delivered_lines;
use support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

const BUCKET: &str = "lake";

fn broker(dir: &TempDir, s3: &S3Server) -> Broker {
    BrokerBuilder::default()
        .arg("--no-quotas")
        .arg("--s3-endpoint")
        .arg(s3.endpoint.clone())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .start(&dir.path().join("broker"))
}

fn firehose(broker: &Broker) -> Client {
    support::delivery::firehose_client(&broker.endpoint)
}

/// DescribeDeliveryStream's description of `name`.
async fn describe(
    client: &Client,
    name: &str,
) -> aws_sdk_firehose::types::DeliveryStreamDescription {
    client
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .expect("DescribeDeliveryStream")
        .delivery_stream_description
        .expect("description")
}

fn source(stream: &str) -> KinesisStreamSourceConfiguration {
    KinesisStreamSourceConfiguration::builder()
        .kinesis_stream_arn(format!(
            "arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"
        ))
        .role_arn("arn:aws:iam::000000000000:role/firehose")
        .build()
        .expect("source")
}

fn s3_configuration(prefix: &str) -> ExtendedS3DestinationConfiguration {
    ExtendedS3DestinationConfiguration::builder()
        .bucket_arn(format!("arn:aws:s3:::{BUCKET}"))
        .role_arn("arn:aws:iam::000000000000:role/firehose")
        .prefix(prefix)
        .compression_format(CompressionFormat::Gzip)
        .buffering_hints(
            BufferingHints::builder()
                .size_in_mbs(1)
                .interval_in_seconds(1)
                .build(),
        )
        .processing_configuration(
            ProcessingConfiguration::builder()
                .enabled(true)
                .processors(
                    Processor::builder()
                        .r#type(ProcessorType::AppendDelimiterToRecord)
                        .build()
                        .expect("processor"),
                )
                .build(),
        )
        .build()
        .expect("configuration")
}

/// Waits until the objects under `prefix` hold `count` lines; returns them.
async fn lines_under(s3: &S3Server, prefix: &str, count: usize, broker: &Broker) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let lines: Vec<String> = delivered_lines(s3, BUCKET, prefix, "GZIP")
            .into_iter()
            .flat_map(|(_, lines)| lines)
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} lines under {prefix}: {}",
            lines.len(),
            broker.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_firehose_api_creates_describes_updates_and_deletes() {
    let dir = TempDir::new("delivery-api");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let mut broker = broker(&dir, &s3);
    let kinesis = broker.client();
    create_active_stream(&kinesis, "clicks", 2).await;
    let client = firehose(&broker);

    let arn = client
        .create_delivery_stream()
        .delivery_stream_name("clicks-to-lake")
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(source("clicks"))
        .extended_s3_destination_configuration(s3_configuration("v1/"))
        .tags(
            Tag::builder()
                .key("team")
                .value("web")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("CreateDeliveryStream")
        .delivery_stream_arn()
        .map(str::to_owned);
    assert_eq!(
        arn.as_deref(),
        Some("arn:aws:firehose:us-east-1:000000000000:deliverystream/clicks-to-lake")
    );

    let put: Vec<String> = (0..100).map(|i| format!("click-{i}")).collect();
    for text in &put {
        kinesis
            .put_record()
            .stream_name("clicks")
            .partition_key(text)
            .data(aws_sdk_kinesis::primitives::Blob::new(text.as_bytes()))
            .send()
            .await
            .expect("PutRecord");
    }
    let mut delivered = lines_under(&s3, "v1/", 100, &broker).await;
    delivered.sort();
    let mut expected = put.clone();
    expected.sort();
    assert_eq!(delivered, expected);

    let description = describe(&client, "clicks-to-lake").await;
    assert_eq!(description.delivery_stream_status().as_str(), "ACTIVE");
    assert_eq!(
        description.delivery_stream_type().as_str(),
        "KinesisStreamAsSource"
    );
    assert_eq!(description.version_id(), "1");
    let destination = &description.destinations()[0];
    let s3_description = destination
        .extended_s3_destination_description()
        .expect("s3");
    assert_eq!(s3_description.prefix(), Some("v1/"));
    assert_eq!(s3_description.bucket_arn(), "arn:aws:s3:::lake");

    // A stale version is refused; the current one moves the destination.
    let update = |version: &str| {
        client
            .update_destination()
            .delivery_stream_name("clicks-to-lake")
            .current_delivery_stream_version_id(version)
            .destination_id(destination.destination_id())
            .extended_s3_destination_update(
                ExtendedS3DestinationUpdate::builder().prefix("v2/").build(),
            )
            .send()
    };
    let error = update("7").await.expect_err("a stale version");
    assert_eq!(
        error.code(),
        Some("ConcurrentModificationException"),
        "{error:?}"
    );
    update("1").await.expect("UpdateDestination");
    for text in ["after-1", "after-2"] {
        kinesis
            .put_record()
            .stream_name("clicks")
            .partition_key(text)
            .data(aws_sdk_kinesis::primitives::Blob::new(text.as_bytes()))
            .send()
            .await
            .expect("PutRecord");
    }
    let mut after = lines_under(&s3, "v2/", 2, &broker).await;
    after.sort();
    assert_eq!(
        after,
        ["after-1", "after-2"],
        "only records after the update, under the new prefix"
    );
    let version = describe(&client, "clicks-to-lake")
        .await
        .version_id()
        .to_owned();
    assert_eq!(version, "2");

    // Tags.
    client
        .tag_delivery_stream()
        .delivery_stream_name("clicks-to-lake")
        .tags(Tag::builder().key("env").value("dev").build().expect("tag"))
        .send()
        .await
        .expect("TagDeliveryStream");
    client
        .untag_delivery_stream()
        .delivery_stream_name("clicks-to-lake")
        .tag_keys("team")
        .send()
        .await
        .expect("UntagDeliveryStream");
    let tags = client
        .list_tags_for_delivery_stream()
        .delivery_stream_name("clicks-to-lake")
        .send()
        .await
        .expect("ListTags");
    let pairs: Vec<(&str, Option<&str>)> =
        tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(pairs, [("env", Some("dev"))]);

    // A direct-put delivery stream beside it.
    client
        .create_delivery_stream()
        .delivery_stream_name("direct")
        .extended_s3_destination_configuration(s3_configuration("direct/"))
        .send()
        .await
        .expect("CreateDeliveryStream DirectPut");
    let answer = client
        .put_record_batch()
        .delivery_stream_name("direct")
        .records(support::delivery::firehose_record("direct-1"))
        .records(support::delivery::firehose_record("direct-2"))
        .send()
        .await
        .expect("PutRecordBatch");
    assert_eq!(answer.failed_put_count(), 0);
    assert_eq!(
        lines_under(&s3, "direct/", 2, &broker).await,
        ["direct-1", "direct-2"]
    );

    // Firehose's errors.
    let again = client
        .create_delivery_stream()
        .delivery_stream_name("direct")
        .extended_s3_destination_configuration(s3_configuration("x/"))
        .send()
        .await
        .expect_err("the name is taken");
    assert_eq!(again.code(), Some("ResourceInUseException"));
    let no_stream = client
        .create_delivery_stream()
        .delivery_stream_name("from-nowhere")
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(source("missing"))
        .extended_s3_destination_configuration(s3_configuration("x/"))
        .send()
        .await
        .expect_err("no such stream");
    assert_eq!(no_stream.code(), Some("InvalidArgumentException"));
    let put_to_stream_source = client
        .put_record()
        .delivery_stream_name("clicks-to-lake")
        .record(support::delivery::firehose_record("x"))
        .send()
        .await
        .expect_err("a stream-sourced delivery stream takes no puts");
    assert_eq!(
        put_to_stream_source.code(),
        Some("InvalidArgumentException")
    );

    // Delivery streams survive a restart of the broker.
    broker.terminate();
    let broker = self::broker(&dir, &s3);
    let client = firehose(&broker);
    let names = client
        .list_delivery_streams()
        .send()
        .await
        .expect("ListDeliveryStreams");
    assert_eq!(names.delivery_stream_names(), ["clicks-to-lake", "direct"]);
    assert!(!names.has_more_delivery_streams());
    client
        .put_record()
        .delivery_stream_name("direct")
        .record(support::delivery::firehose_record("direct-3"))
        .send()
        .await
        .expect("PutRecord after the restart");
    assert_eq!(
        lines_under(&s3, "direct/", 3, &broker).await,
        ["direct-1", "direct-2", "direct-3"]
    );

    client
        .delete_delivery_stream()
        .delivery_stream_name("direct")
        .send()
        .await
        .expect("DeleteDeliveryStream");
    let gone = client
        .describe_delivery_stream()
        .delivery_stream_name("direct")
        .send()
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Some("ResourceNotFoundException"));
    let names = client.list_delivery_streams().send().await.expect("list");
    assert_eq!(names.delivery_stream_names(), ["clicks-to-lake"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_firehose_api_checks_signatures_for_the_firehose_service() {
    let dir = TempDir::new("delivery-api-auth");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "AKIDEXAMPLE=secret\n").expect("keys");
    let broker = BrokerBuilder::default()
        .arg("--credentials")
        .arg(keys.display().to_string())
        .arg("--s3-endpoint")
        .arg(s3.endpoint.clone())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .start(&dir.path().join("broker"));
    // Signed for service `firehose` with a known key: served.
    firehose(&broker)
        .create_delivery_stream()
        .delivery_stream_name("signed")
        .extended_s3_destination_configuration(s3_configuration("signed/"))
        .send()
        .await
        .expect("a correctly signed CreateDeliveryStream");
    // The same key with a wrong secret: refused.
    let forged = aws_sdk_firehose::Client::from_conf(
        aws_sdk_firehose::Config::builder()
            .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
            .region(aws_sdk_firehose::config::Region::new("us-east-1"))
            .endpoint_url(&broker.endpoint)
            .credentials_provider(aws_sdk_firehose::config::Credentials::new(
                "AKIDEXAMPLE",
                "wrong",
                None,
                None,
                "test",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .build(),
    );
    let error = forged
        .list_delivery_streams()
        .send()
        .await
        .expect_err("a wrong secret");
    assert_eq!(error.code(), Some("InvalidSignatureException"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_firehose_api_keeps_a_delivery_stream_that_cannot_start() {
    let dir = TempDir::new("delivery-api-failed");
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET]).await;
    let mut broker = broker(&dir, &s3);
    firehose(&broker)
        .create_delivery_stream()
        .delivery_stream_name("kept")
        .extended_s3_destination_configuration(s3_configuration("kept/"))
        .send()
        .await
        .expect("CreateDeliveryStream");
    broker.terminate();
    // Restarted without S3 credentials: the delivery stream cannot run, but it is not lost.
    let mut broker = BrokerBuilder::default()
        .arg("--s3-endpoint")
        .arg(s3.endpoint.clone())
        .start(&dir.path().join("broker"));
    let client = firehose(&broker);
    let description = describe(&client, "kept").await;
    assert_eq!(
        description.delivery_stream_status().as_str(),
        "CREATING_FAILED"
    );
    let details = description
        .failure_description()
        .map(|f| f.details().to_owned())
        .unwrap_or_default();
    assert!(details.contains("S3 credentials"), "{details}");
    let refused = client
        .put_record()
        .delivery_stream_name("kept")
        .record(support::delivery::firehose_record("x"))
        .send()
        .await
        .expect_err("not running");
    assert_eq!(refused.code(), Some("ServiceUnavailableException"));
    broker.terminate();
    // With the credentials back, it runs again.
    let broker = self::broker(&dir, &s3);
    let client = firehose(&broker);
    client
        .put_record()
        .delivery_stream_name("kept")
        .record(support::delivery::firehose_record("back"))
        .send()
        .await
        .expect("PutRecord once it runs again");
    assert_eq!(lines_under(&s3, "kept/", 1, &broker).await, ["back"]);
}
