//! The ConfigMap that configures a Stream's brokers, read by the pods as environment
//! variables. Its content hash goes on the pod template, so any change rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{BrokerDefaults, CLUSTER_PORT, ChildNames, KINESIS_PORT, METRICS_PORT, child_meta};
use crate::api::Stream;
use crate::api::stream::Durability;

/// Access key id of the operator's admin key in every managed broker.
pub const ADMIN_ACCESS_KEY_ID: &str = "brook-operator";
/// Where the broker pods mount their data volume.
pub const DATA_MOUNT_PATH: &str = "/var/lib/brook";
/// Where the broker pods mount the operator's admin key.
pub const ADMIN_MOUNT_PATH: &str = "/etc/brook/admin";
/// Where the broker pods mount the clients' SigV4 keys, when the Stream asks for auth.
pub const CREDENTIALS_MOUNT_PATH: &str = "/etc/brook/credentials";
/// Where the broker pods mount their certificate Secret, when the Stream asks for TLS.
pub const TLS_MOUNT_PATH: &str = "/etc/brook/tls";

/// Seconds a broker pod keeps serving, not ready, after SIGTERM: Kubernetes takes a
/// terminating pod out of the Service while it signals it, and every node's proxy must catch
/// up before no new connection reaches it (the pod's termination grace covers this too).
pub const SHUTDOWN_DELAY_SECONDS: u32 = 5;

/// The broker configuration of a Stream, as environment variables of the broker container.
pub fn broker_environment(stream: &Stream, defaults: &BrokerDefaults) -> BTreeMap<String, String> {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    let namespace = stream.metadata.namespace.as_deref().unwrap_or("default");
    let limits = &stream.spec.limits;
    let mut env = BTreeMap::from([
        ("BROOK_LISTEN".to_owned(), format!("0.0.0.0:{KINESIS_PORT}")),
        (
            "BROOK_METRICS_LISTEN".to_owned(),
            format!("0.0.0.0:{METRICS_PORT}"),
        ),
        (
            "BROOK_DATA_DIR".to_owned(),
            format!("{DATA_MOUNT_PATH}/data"),
        ),
        ("BROOK_LOG_FORMAT".to_owned(), "json".to_owned()),
        (
            "BROOK_SHUTDOWN_DELAY_SECONDS".to_owned(),
            SHUTDOWN_DELAY_SECONDS.to_string(),
        ),
        (
            "BROOK_DURABILITY".to_owned(),
            match stream.spec.durability {
                Durability::Fsync => "fsync",
                Durability::Async => "async",
            }
            .to_owned(),
        ),
        ("BROOK_REGION".to_owned(), defaults.region.clone()),
        ("BROOK_ACCOUNT".to_owned(), defaults.account.clone()),
        (
            "BROOK_WRITE_BYTES_PER_SECOND".to_owned(),
            limits.write_bytes_per_second.to_string(),
        ),
        (
            "BROOK_WRITE_RECORDS_PER_SECOND".to_owned(),
            limits.write_records_per_second.to_string(),
        ),
        (
            "BROOK_READ_BYTES_PER_SECOND".to_owned(),
            limits.read_bytes_per_second.to_string(),
        ),
        (
            "BROOK_READ_CALLS_PER_SECOND".to_owned(),
            limits.read_calls_per_second.to_string(),
        ),
        ("BROOK_NO_QUOTAS".to_owned(), (!limits.enforce).to_string()),
        (
            "BROOK_MANAGED_BY".to_owned(),
            format!("Stream {namespace}/{name}"),
        ),
        (
            "BROOK_ADMIN_CREDENTIALS".to_owned(),
            ADMIN_MOUNT_PATH.to_owned(),
        ),
    ]);
    // The stream's shards are spread over the pods (see `broker::cluster`): each pod finds
    // the others by their stable DNS names and its own ordinal from its pod name; the
    // operator sets how many pods take new shards, so scaling the pods rolls none.
    let names = super::ChildNames::for_stream(name);
    // With TLS the Kinesis port and the internal port serve the Secret's certificate, and
    // the pods call each other over TLS only, trusting its CA.
    let scheme = match &stream.spec.tls {
        Some(_) => {
            env.insert(
                "BROOK_TLS_CERT".to_owned(),
                format!("{TLS_MOUNT_PATH}/tls.crt"),
            );
            env.insert(
                "BROOK_TLS_KEY".to_owned(),
                format!("{TLS_MOUNT_PATH}/tls.key"),
            );
            env.insert(
                "BROOK_CLUSTER_CA".to_owned(),
                format!("{TLS_MOUNT_PATH}/ca.crt"),
            );
            "https"
        }
        None => "http",
    };
    env.insert(
        "BROOK_CLUSTER_PEERS".to_owned(),
        format!(
            "{scheme}://{name}-{{ordinal}}.{}.{namespace}.svc:{CLUSTER_PORT}",
            names.headless_service
        ),
    );
    env.insert(
        "BROOK_CLUSTER_LISTEN".to_owned(),
        format!("0.0.0.0:{CLUSTER_PORT}"),
    );
    if stream.spec.auth.is_some() {
        env.insert(
            "BROOK_CREDENTIALS".to_owned(),
            CREDENTIALS_MOUNT_PATH.to_owned(),
        );
    }
    // Channels: pod 0 runs their workers; the keys come from the Secret (statefulset.rs).
    if let Some(channels) = &stream.spec.channels {
        env.insert("BROOK_CHANNELS".to_owned(), "true".to_owned());
        if let Some(endpoint) = &channels.s3_endpoint {
            env.insert("BROOK_S3_ENDPOINT".to_owned(), endpoint.clone());
        }
    }
    env
}

/// The ConfigMap holding [`broker_environment`].
pub fn broker_config_map(stream: &Stream, defaults: &BrokerDefaults) -> ConfigMap {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    ConfigMap {
        metadata: child_meta(stream, &ChildNames::for_stream(name).config_map),
        data: Some(broker_environment(stream, defaults)),
        ..ConfigMap::default()
    }
}

/// A short digest of a ConfigMap's data, for the pod template annotation that rolls the pods
/// when the configuration changes.
pub fn config_hash(config: &ConfigMap) -> String {
    let mut digest = Sha256::new();
    for (key, value) in config.data.iter().flatten() {
        digest.update(key.as_bytes());
        digest.update([0]);
        digest.update(value.as_bytes());
        digest.update([0]);
    }
    digest
        .finalize()
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::SecretReference;
    use crate::api::stream::Auth;
    use crate::operator::resources::fixtures::stream;

    fn defaults() -> BrokerDefaults {
        BrokerDefaults::for_this_version()
    }

    #[test]
    fn a_default_stream_configures_kinesis_quotas_fsync_and_managed_mode() {
        let config = broker_config_map(&stream("orders"), &defaults());
        assert_eq!(
            config.metadata.name.as_deref(),
            Some("orders-broker-config")
        );
        let data = config.data.expect("data");
        let expected = [
            ("BROOK_LISTEN", "0.0.0.0:4567"),
            ("BROOK_METRICS_LISTEN", "0.0.0.0:9100"),
            ("BROOK_DATA_DIR", "/var/lib/brook/data"),
            ("BROOK_LOG_FORMAT", "json"),
            ("BROOK_SHUTDOWN_DELAY_SECONDS", "5"),
            ("BROOK_DURABILITY", "fsync"),
            ("BROOK_REGION", "us-east-1"),
            ("BROOK_ACCOUNT", "000000000000"),
            ("BROOK_WRITE_BYTES_PER_SECOND", "1048576"),
            ("BROOK_WRITE_RECORDS_PER_SECOND", "1000"),
            ("BROOK_READ_BYTES_PER_SECOND", "2097152"),
            ("BROOK_READ_CALLS_PER_SECOND", "5"),
            ("BROOK_NO_QUOTAS", "false"),
            ("BROOK_MANAGED_BY", "Stream shop/orders"),
            ("BROOK_ADMIN_CREDENTIALS", "/etc/brook/admin"),
            (
                "BROOK_CLUSTER_PEERS",
                "http://orders-{ordinal}.orders-brokers.shop.svc:4568",
            ),
            ("BROOK_CLUSTER_LISTEN", "0.0.0.0:4568"),
        ];
        for (key, value) in expected {
            assert_eq!(data.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert_eq!(data.len(), expected.len(), "no other keys: {data:?}");
    }

    #[test]
    fn every_quota_durability_and_auth_setting_reaches_the_config() {
        let mut custom = stream("orders");
        custom.spec.limits.write_bytes_per_second = 11;
        custom.spec.limits.write_records_per_second = 12;
        custom.spec.limits.read_bytes_per_second = 13;
        custom.spec.limits.read_calls_per_second = 14;
        custom.spec.limits.enforce = false;
        custom.spec.durability = Durability::Async;
        custom.spec.auth = Some(Auth {
            credentials_secret_ref: SecretReference {
                name: "producers".to_owned(),
            },
        });
        let data = broker_config_map(&custom, &defaults()).data.expect("data");
        assert_eq!(data["BROOK_WRITE_BYTES_PER_SECOND"], "11");
        assert_eq!(data["BROOK_WRITE_RECORDS_PER_SECOND"], "12");
        assert_eq!(data["BROOK_READ_BYTES_PER_SECOND"], "13");
        assert_eq!(data["BROOK_READ_CALLS_PER_SECOND"], "14");
        assert_eq!(data["BROOK_NO_QUOTAS"], "true");
        assert_eq!(data["BROOK_DURABILITY"], "async");
        assert_eq!(data["BROOK_CREDENTIALS"], "/etc/brook/credentials");
        assert!(!data.contains_key("BROOK_TLS_CERT"));
    }

    #[test]
    fn a_tls_stream_serves_its_certificate_and_calls_its_pods_over_tls_only() {
        let mut secure = stream("orders");
        secure.spec.tls = Some(crate::api::stream::StreamTls {
            secret_ref: SecretReference {
                name: "orders-cert".to_owned(),
            },
        });
        let data = broker_config_map(&secure, &defaults()).data.expect("data");
        assert_eq!(data["BROOK_TLS_CERT"], "/etc/brook/tls/tls.crt");
        assert_eq!(data["BROOK_TLS_KEY"], "/etc/brook/tls/tls.key");
        assert_eq!(data["BROOK_CLUSTER_CA"], "/etc/brook/tls/ca.crt");
        assert_eq!(
            data["BROOK_CLUSTER_PEERS"],
            "https://orders-{ordinal}.orders-brokers.shop.svc:4568"
        );
        assert_eq!(
            super::super::client_endpoint("orders", "shop", true),
            "https://orders.shop.svc:4567"
        );
    }

    #[test]
    fn the_config_hash_changes_with_the_config_and_only_then() {
        let base = broker_config_map(&stream("orders"), &defaults());
        let same = broker_config_map(&stream("orders"), &defaults());
        assert_eq!(config_hash(&base), config_hash(&same));
        assert_eq!(config_hash(&base).len(), 16);
        let mut changed_stream = stream("orders");
        changed_stream.spec.durability = Durability::Async;
        let changed = broker_config_map(&changed_stream, &defaults());
        assert_ne!(config_hash(&base), config_hash(&changed));
    }
}
