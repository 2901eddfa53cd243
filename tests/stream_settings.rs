//! The rest of the stream operations through the AWS SDK for Rust: monitoring, encryption
//! settings, resource tags, record size, stream mode, warm throughput, distribution,
//! account settings, and resource policies enforced for authenticated callers.

mod support;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    EncryptionType, MetricsName, MinimumThroughputBillingCommitmentInput,
    MinimumThroughputBillingCommitmentInputStatus, ShardIteratorType, StreamMode,
    StreamModeDetails,
};
use aws_smithy_types::retry::RetryConfig;
use support::broker::{
    Broker, BrokerBuilder, TempDir, create_active_stream, error_code, raw_post, raw_request,
    wait_for_status,
};

const ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/tuned";

/// A CBOR PutRecord with `body`, signed with `key` (whose secret is `<key>-secret`); the
/// answer's status and error type ("" for none).
fn cbor_put_record(endpoint: &str, key: &str, body: &[u8]) -> (u16, String) {
    let host = endpoint.trim_start_matches("http://");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let request = brook::broker::auth::signed_request_as(
        "application/x-amz-cbor-1.1",
        host,
        "Kinesis_20131202.PutRecord",
        bytes::Bytes::copy_from_slice(body),
        (key, &format!("{key}-secret")),
        "us-east-1",
        now_ms,
    )
    .expect("signs");
    // The raw request sends its own Host header, the same one.
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "host")
        .map(|(name, value)| {
            let value = value.to_str().expect("ASCII").to_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let answer = raw_request(endpoint, "POST", &headers, body);
    let kind = ciborium::de::from_reader::<ciborium::value::Value, _>(answer.body.as_slice())
        .ok()
        .and_then(|value| {
            value.as_map().and_then(|members| {
                members
                    .iter()
                    .find(|(k, _)| k.as_text() == Some("__type"))
                    .and_then(|(_, v)| v.as_text().map(str::to_owned))
            })
        })
        .unwrap_or_default();
    (answer.status, kind)
}

/// The operations of the embedded Kinesis API model (botocore's), by name.
fn model_operations() -> Vec<String> {
    let model: serde_json::Value =
        serde_json::from_str(include_str!("../src/broker/protocol/model.json")).expect("model");
    model["operations"]
        .as_object()
        .expect("operations")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_operation_of_the_api_model_including_queue_channel_and_distribution_ones_is_served()
{
    let dir = TempDir::new("all-operations");
    let broker = Broker::start(dir.path());
    let operations = model_operations();
    assert_eq!(
        operations.len(),
        57,
        "the model's operations: {operations:?}"
    );
    for operation in operations {
        let endpoint = broker.endpoint.clone();
        let target = format!("Kinesis_20131202.{operation}");
        let (status, body) = tokio::task::spawn_blocking(move || {
            let answer = raw_post(
                &endpoint,
                Some(&target),
                "application/x-amz-json-1.1",
                b"{}",
            );
            (
                answer.status,
                String::from_utf8_lossy(&answer.body).into_owned(),
            )
        })
        .await
        .expect("request");
        assert!(
            !body.contains("UnknownOperationException"),
            "{operation}: {status} {body}"
        );
        assert!(status == 200 || status == 400, "{operation}: {status}");
    }
}

#[tokio::test]
async fn stream_settings_change_and_show_in_descriptions() {
    let dir = TempDir::new("settings");
    let broker = BrokerBuilder::default()
        .transition_ms(0)
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "tuned", 1).await;

    let enabled = client
        .enable_enhanced_monitoring()
        .stream_name("tuned")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .expect("enable");
    assert_eq!(
        enabled.desired_shard_level_metrics(),
        [MetricsName::IncomingBytes]
    );
    let all = client
        .enable_enhanced_monitoring()
        .stream_name("tuned")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .expect("enable all");
    assert_eq!(all.desired_shard_level_metrics().len(), 7);
    let disabled = client
        .disable_enhanced_monitoring()
        .stream_name("tuned")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.desired_shard_level_metrics().len(), 6);

    client
        .start_stream_encryption()
        .stream_name("tuned")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/brook")
        .send()
        .await
        .expect("start encryption");
    wait_for_status(&client, "tuned", "ACTIVE").await;
    let summary = client
        .describe_stream_summary()
        .stream_name("tuned")
        .send()
        .await
        .expect("summary");
    let summary = summary.stream_description_summary().expect("summary");
    assert_eq!(summary.encryption_type(), Some(&EncryptionType::Kms));
    assert_eq!(summary.key_id(), Some("alias/brook"));
    assert_eq!(
        summary.enhanced_monitoring()[0].shard_level_metrics().len(),
        6
    );
    client
        .stop_stream_encryption()
        .stream_name("tuned")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/brook")
        .send()
        .await
        .expect("stop encryption");

    client
        .tag_resource()
        .resource_arn(ARN)
        .tags("team", "data")
        .send()
        .await
        .expect("TagResource");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(ARN)
        .send()
        .await
        .expect("ListTagsForResource");
    assert_eq!(
        tags.tags()
            .iter()
            .map(|t| (t.key(), t.value()))
            .collect::<Vec<_>>(),
        [("team", Some("data"))]
    );
    client
        .untag_resource()
        .resource_arn(ARN)
        .tag_keys("team")
        .send()
        .await
        .expect("UntagResource");
    assert!(
        client
            .list_tags_for_resource()
            .resource_arn(ARN)
            .send()
            .await
            .expect("list")
            .tags()
            .is_empty()
    );

    let two_mib = vec![1u8; 2 * 1024 * 1024];
    let refused = client
        .put_record()
        .stream_name("tuned")
        .partition_key("k")
        .data(Blob::new(two_mib.clone()))
        .send()
        .await;
    assert_eq!(
        error_code(&refused.expect_err("over 1 MiB")),
        "ValidationException"
    );
    client
        .update_max_record_size()
        .stream_arn(ARN)
        .max_record_size_in_kib(4096)
        .send()
        .await
        .expect("UpdateMaxRecordSize");
    client
        .put_record()
        .stream_name("tuned")
        .partition_key("k")
        .data(Blob::new(two_mib))
        .send()
        .await
        .expect("2 MiB after the update");

    let provisioned = client
        .update_stream_warm_throughput()
        .stream_arn(ARN)
        .warm_throughput_mibps(10)
        .send()
        .await;
    assert_eq!(
        error_code(&provisioned.expect_err("provisioned")),
        "ValidationException"
    );
    client
        .update_stream_mode()
        .stream_arn(ARN)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .expect("mode"),
        )
        .send()
        .await
        .expect("UpdateStreamMode");
    wait_for_status(&client, "tuned", "ACTIVE").await;
    let warm = client
        .update_stream_warm_throughput()
        .stream_arn(ARN)
        .warm_throughput_mibps(10)
        .send()
        .await
        .expect("warm");
    assert_eq!(
        warm.warm_throughput().and_then(|w| w.target_mibps()),
        Some(10)
    );
    let summary = client
        .describe_stream_summary()
        .stream_name("tuned")
        .send()
        .await
        .expect("summary");
    let summary = summary.stream_description_summary().expect("summary");
    assert_eq!(
        summary.stream_mode_details().map(|m| m.stream_mode()),
        Some(&StreamMode::OnDemand)
    );

    let settings = client
        .update_account_settings()
        .minimum_throughput_billing_commitment(
            MinimumThroughputBillingCommitmentInput::builder()
                .status(MinimumThroughputBillingCommitmentInputStatus::Enabled)
                .build()
                .expect("commitment"),
        )
        .send()
        .await
        .expect("UpdateAccountSettings");
    assert!(settings.minimum_throughput_billing_commitment().is_some());
    let described = client
        .describe_account_settings()
        .send()
        .await
        .expect("DescribeAccountSettings");
    assert_eq!(
        described
            .minimum_throughput_billing_commitment()
            .map(|c| c.status().as_str()),
        Some("ENABLED")
    );
}

fn signed_client(endpoint: &str, key: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            key,
            format!("{key}-secret"),
            None,
            None,
            "test",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

#[tokio::test]
async fn resource_policies_allow_and_deny_actions_for_each_access_key() {
    let dir = TempDir::new("policies");
    let data = TempDir::new("policies-data");
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "AKIDWRITER=AKIDWRITER-secret\nAKIDREADER=AKIDREADER-secret\nAKIDSTRANGER=AKIDSTRANGER-secret\n").expect("file");
    let broker = BrokerBuilder::default()
        .transition_ms(0)
        .arg("--no-quotas")
        .arg("--credentials")
        .arg(credentials.to_string_lossy())
        .start(data.path());
    let writer = signed_client(&broker.endpoint, "AKIDWRITER");
    let reader = signed_client(&broker.endpoint, "AKIDREADER");
    let stranger = signed_client(&broker.endpoint, "AKIDSTRANGER");
    create_active_stream(&writer, "tuned", 1).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/AKIDWRITER"},"Action":"kinesis:*","Resource":"arn:aws:kinesis:us-east-1:000000000000:stream/tuned"},
        {"Effect":"Allow","Principal":{"AWS":"AKIDREADER"},"Action":["kinesis:Get*","kinesis:Describe*","kinesis:List*","kinesis:Put*"],"Resource":"*"},
        {"Effect":"Deny","Principal":{"AWS":"AKIDREADER"},"Action":"kinesis:Put*","Resource":"*"}]}"#;
    let conditional = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
    let refused = writer
        .put_resource_policy()
        .resource_arn(ARN)
        .policy(conditional)
        .send()
        .await;
    assert_eq!(
        error_code(&refused.expect_err("conditions are not evaluated")),
        "InvalidArgumentException"
    );
    writer
        .put_resource_policy()
        .resource_arn(ARN)
        .policy(policy)
        .send()
        .await
        .expect("PutResourcePolicy");
    assert_eq!(
        writer
            .get_resource_policy()
            .resource_arn(ARN)
            .send()
            .await
            .expect("GetResourcePolicy")
            .policy(),
        policy
    );

    writer
        .put_record()
        .stream_name("tuned")
        .partition_key("k")
        .data(Blob::new("by writer"))
        .send()
        .await
        .expect("the writer writes");
    let denied = reader
        .put_record()
        .stream_name("tuned")
        .partition_key("k")
        .data(Blob::new("by reader"))
        .send()
        .await;
    assert_eq!(
        error_code(&denied.expect_err("explicit deny")),
        "AccessDeniedException"
    );
    // The same in CBOR, which a broker reads as it came: the policy sees its stream, and a
    // body that is not CBOR is refused for that before any policy is asked.
    let mut put = vec![0xa3, 0x6a];
    put.extend_from_slice(b"StreamName");
    put.extend_from_slice(&[0x65]);
    put.extend_from_slice(b"tuned");
    put.extend_from_slice(&[0x6c]);
    put.extend_from_slice(b"PartitionKey");
    put.extend_from_slice(&[0x61, b'k', 0x64]);
    put.extend_from_slice(b"Data");
    put.extend_from_slice(&[0x42, 0x00, 0xff]);
    assert_eq!(
        cbor_put_record(&broker.endpoint, "AKIDWRITER", &put),
        (200, String::new())
    );
    assert_eq!(
        cbor_put_record(&broker.endpoint, "AKIDREADER", &put),
        (400, "AccessDeniedException".to_owned())
    );
    assert_eq!(
        cbor_put_record(&broker.endpoint, "AKIDREADER", &put[..put.len() - 1]),
        (400, "SerializationException".to_owned())
    );
    let iterator = reader
        .get_shard_iterator()
        .stream_name("tuned")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("the reader reads");
    let records = reader
        .get_records()
        .shard_iterator(iterator.shard_iterator().expect("it"))
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(records.records().len(), 2);
    assert_eq!(records.records()[1].data().as_ref(), [0x00, 0xff]);
    let outsider = stranger
        .describe_stream_summary()
        .stream_name("tuned")
        .send()
        .await;
    assert_eq!(
        error_code(&outsider.expect_err("no allow for the stranger")),
        "AccessDeniedException"
    );
    let no_policy_write = stranger
        .put_resource_policy()
        .resource_arn(ARN)
        .policy("{\"Statement\":[]}")
        .send()
        .await;
    assert_eq!(
        error_code(&no_policy_write.expect_err("stranger cannot replace the policy")),
        "AccessDeniedException"
    );

    writer
        .delete_resource_policy()
        .resource_arn(ARN)
        .send()
        .await
        .expect("DeleteResourcePolicy");
    stranger
        .describe_stream_summary()
        .stream_name("tuned")
        .send()
        .await
        .expect("open again without a policy");
}

#[tokio::test]
async fn hardening_resource_policies_fail_closed() {
    let dir = TempDir::new("policies-closed");
    let data = TempDir::new("policies-closed-data");
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "AKIDWRITER=AKIDWRITER-secret\nAKIDSTRANGER=AKIDSTRANGER-secret\n",
    )
    .expect("file");
    let builder = BrokerBuilder::default()
        .transition_ms(0)
        .arg("--no-quotas")
        .arg("--credentials")
        .arg(credentials.to_string_lossy());
    let mut broker = builder.start(data.path());
    let writer = signed_client(&broker.endpoint, "AKIDWRITER");
    create_active_stream(&writer, "tuned", 1).await;
    let policy = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"AKIDWRITER"},"Action":"kinesis:*","Resource":"*"}]}"#;
    writer
        .put_resource_policy()
        .resource_arn(ARN)
        .policy(policy)
        .send()
        .await
        .expect("PutResourcePolicy");

    // What authorization cannot resolve is refused, not let through.
    let ghost = writer
        .describe_stream_consumer()
        .consumer_arn(format!("{ARN}/consumer/ghost:1"))
        .send()
        .await;
    let ghost = ghost.expect_err("an unresolvable consumer");
    assert_eq!(error_code(&ghost), "AccessDeniedException");
    assert!(
        format!("{ghost:?}").contains("cannot be resolved"),
        "{ghost:?}"
    );
    // A stream to be created is not there yet, and listing names no resource.
    create_active_stream(&writer, "fresh", 1).await;
    writer.list_streams().send().await.expect("ListStreams");

    // A stored policy that no longer parses (written by another version, or by hand) refuses
    // every call on its stream instead of dropping out of the evaluation.
    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    // Edited as text: the catalog's 128-bit hash keys do not survive a generic JSON value.
    let catalog_path = data.path().join("catalog.json");
    let catalog = std::fs::read_to_string(&catalog_path).expect("catalog");
    let stored = serde_json::to_string(policy).expect("a JSON string");
    assert_eq!(catalog.matches(&stored).count(), 1, "{catalog}");
    let broken = serde_json::to_string("{\"Statement\": [").expect("a JSON string");
    std::fs::write(&catalog_path, catalog.replace(&stored, &broken)).expect("write");
    broker = builder.start(data.path());
    let writer = signed_client(&broker.endpoint, "AKIDWRITER");
    let unreadable = writer
        .put_record()
        .stream_name("tuned")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("the policy cannot be read");
    assert_eq!(error_code(&unreadable), "AccessDeniedException");
    assert!(
        format!("{unreadable:?}").contains("policy cannot be read"),
        "{unreadable:?}"
    );
    writer
        .put_record()
        .stream_name("fresh")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .expect("a stream without a policy is unaffected");
}
