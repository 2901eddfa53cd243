//! A broker managed by the operator: control-plane calls through the Kinesis API are refused
//! with an error that names the resource to edit, unless the operator's admin key signs them;
//! the data plane and consumer registration stay open to clients.

mod support;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ScalingType;
use support::broker::{
    BrokerBuilder, TempDir, error_code, error_message, signed_client, wait_for_status,
};

const ADMIN_KEY: &str = "brook-operator";
const ADMIN_SECRET: &str = "admin-secret-0123456789abcdefghijklmn";

fn managed_broker(dir: &TempDir) -> support::broker::Broker {
    // The admin key as the operator mounts it: a Secret folder, one file per key id.
    let admin = dir.path().join("admin");
    std::fs::create_dir_all(&admin).expect("admin folder");
    std::fs::write(admin.join(ADMIN_KEY), ADMIN_SECRET).expect("admin key");
    BrokerBuilder::default()
        .arg("--managed-by")
        .arg("Stream shop/orders")
        .arg("--admin-credentials")
        .arg(admin.display().to_string())
        .start(&dir.path().join("data"))
}

#[tokio::test]
async fn control_plane_calls_from_clients_name_the_resource_to_edit() {
    let dir = TempDir::new("managed-refusal");
    let broker = managed_broker(&dir);
    let client = broker.client();

    let refused = client
        .create_stream()
        .stream_name("orders")
        .shard_count(2)
        .send()
        .await
        .expect_err("a client may not create streams on a managed broker");
    assert_eq!(error_code(&refused), "AccessDeniedException");
    let message = error_message(&refused);
    assert!(message.contains("CreateStream"), "{message}");
    assert!(message.contains("Stream shop/orders"), "{message}");
    assert!(
        message.contains("kubectl -n shop edit stream orders"),
        "{message}"
    );

    // A key that claims to be the admin's but carries the wrong secret is not the operator.
    let impostor = signed_client(&broker.endpoint, ADMIN_KEY, "not-the-admin-secret");
    let forged = impostor
        .create_stream()
        .stream_name("orders")
        .shard_count(2)
        .send()
        .await
        .expect_err("a forged admin signature is refused");
    assert_eq!(error_code(&forged), "InvalidSignatureException");
}

#[tokio::test]
async fn the_operator_key_changes_configuration_and_clients_use_the_data_plane() {
    let dir = TempDir::new("managed-admin");
    let broker = managed_broker(&dir);
    let admin = signed_client(&broker.endpoint, ADMIN_KEY, ADMIN_SECRET);
    admin
        .create_stream()
        .stream_name("orders")
        .shard_count(2)
        .send()
        .await
        .expect("the operator creates the stream");
    wait_for_status(&admin, "orders", "ACTIVE").await;

    let client = broker.client();
    for (operation, result) in [
        (
            "UpdateShardCount",
            client
                .update_shard_count()
                .stream_name("orders")
                .target_shard_count(4)
                .scaling_type(ScalingType::UniformScaling)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| (error_code(&e), error_message(&e))),
        ),
        (
            "IncreaseStreamRetentionPeriod",
            client
                .increase_stream_retention_period()
                .stream_name("orders")
                .retention_period_hours(48)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| (error_code(&e), error_message(&e))),
        ),
        (
            "DeleteStream",
            client
                .delete_stream()
                .stream_name("orders")
                .send()
                .await
                .map(|_| ())
                .map_err(|e| (error_code(&e), error_message(&e))),
        ),
    ] {
        let (code, message) = result.expect_err("refused");
        assert_eq!(code, "AccessDeniedException", "{operation}");
        assert!(message.contains(operation), "{message}");
    }

    let put = client
        .put_record()
        .stream_name("orders")
        .partition_key("customer-7")
        .data(Blob::new("paid"))
        .send()
        .await
        .expect("clients write records");
    assert!(!put.sequence_number().is_empty());
    let consumer = client
        .register_stream_consumer()
        .stream_arn(
            client
                .describe_stream_summary()
                .stream_name("orders")
                .send()
                .await
                .expect("describe")
                .stream_description_summary()
                .expect("summary")
                .stream_arn(),
        )
        .consumer_name("kcl-app")
        .send()
        .await
        .expect("clients register their own fan-out consumers, as the KCL does");
    assert_eq!(
        consumer.consumer().map(|c| c.consumer_name()),
        Some("kcl-app")
    );

    admin
        .update_shard_count()
        .stream_name("orders")
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("the operator reshards");
    wait_for_status(&admin, "orders", "ACTIVE").await;
    let summary = admin
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        summary
            .stream_description_summary()
            .map(|s| s.open_shard_count()),
        Some(4)
    );
}
