use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaimStatus, ResourceRequirements, Toleration, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::api::common::SecretReference;
use crate::api::stream::{Auth, DeletionPolicy, ImagePullPolicy};
use crate::operator::resources::fixtures::stream;

fn build(stream: &Stream) -> StatefulSet {
    statefulset(
        stream,
        &BrokerDefaults::for_this_version(),
        "0123456789abcdef",
        stream.spec.brokers.replicas,
    )
}

fn container(set: &StatefulSet) -> Container {
    set.spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0]
        .clone()
}

fn pod(set: &StatefulSet) -> PodSpec {
    set.spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .clone()
        .expect("pod spec")
}

#[test]
fn a_default_stream_gets_three_brokers_with_a_ten_gib_volume_each() {
    let set = build(&stream("orders"));
    assert_eq!(set.metadata.name.as_deref(), Some("orders"));
    let spec = set.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("orders-brokers"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let claims = spec.volume_claim_templates.expect("claims");
    assert_eq!(claims.len(), 1);
    let claim = claims[0].spec.clone().expect("claim spec");
    assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
    assert_eq!(
        claim.storage_class_name, None,
        "the cluster's default class"
    );
    assert_eq!(
        claim.resources.and_then(|r| r.requests),
        Some(BTreeMap::from([(
            "storage".to_owned(),
            Quantity("10Gi".to_owned())
        )]))
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .expect("claim retention");
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    let broker = container(&set);
    assert_eq!(
        broker.image.as_deref(),
        Some(format!("localhost/brook:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(broker.image_pull_policy, None);
    assert_eq!(broker.resources, None);
    assert_eq!(broker.args, Some(vec!["broker".to_owned()]));
    let pod = pod(&set);
    assert_eq!(pod.node_selector, None);
    assert_eq!(pod.tolerations, None);
}

#[test]
fn the_selector_matches_the_pod_labels_and_the_topology_spread() {
    let set = build(&stream("orders"));
    let spec = set.spec.clone().expect("spec");
    let selector = spec.selector.match_labels.clone().expect("match labels");
    let pod_labels = spec
        .template
        .metadata
        .clone()
        .and_then(|m| m.labels)
        .expect("pod labels");
    for (key, value) in &selector {
        assert_eq!(pod_labels.get(key), Some(value), "pod carries {key}");
    }
    let spread = pod(&set).topology_spread_constraints.expect("spread");
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
    assert_eq!(spread[0].max_skew, 1);
    assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
    assert_eq!(
        spread[0]
            .label_selector
            .clone()
            .and_then(|s| s.match_labels),
        Some(selector)
    );
    let claim_labels = spec.volume_claim_templates.expect("claims")[0]
        .metadata
        .labels
        .clone()
        .expect("claim labels");
    assert_eq!(claim_labels["brook.dev/stream"], "orders");
}

#[test]
fn the_config_hash_is_on_the_pod_template_so_a_config_change_rolls_the_pods() {
    let set = build(&stream("orders"));
    let annotations = set
        .spec
        .expect("spec")
        .template
        .metadata
        .and_then(|m| m.annotations)
        .expect("annotations");
    assert_eq!(annotations["brook.dev/config-hash"], "0123456789abcdef");
}

#[test]
fn cluster_broker_pods_grow_at_once_and_never_shrink_by_themselves() {
    // (declared, live, run)
    let cases = [
        (3, None, 3),
        (3, Some(3), 3),
        (5, Some(3), 5),
        (2, Some(3), 3),
        (1, Some(1), 1),
    ];
    for (declared, live, run) in cases {
        assert_eq!(
            broker_replicas(declared, live),
            run,
            "{declared} declared, {live:?} live"
        );
    }
    let set = statefulset(
        &stream("orders"),
        &BrokerDefaults::for_this_version(),
        "0123456789abcdef",
        4,
    );
    assert_eq!(set.spec.and_then(|s| s.replicas), Some(4));
}

#[test]
fn probes_use_the_broker_health_endpoints_on_the_named_metrics_port() {
    let broker = container(&build(&stream("orders")));
    let port_names: Vec<_> = broker
        .ports
        .clone()
        .expect("ports")
        .into_iter()
        .map(|p| (p.name.expect("named"), p.container_port))
        .collect();
    assert_eq!(
        port_names,
        vec![
            ("kinesis".to_owned(), 4567),
            ("metrics".to_owned(), 9100),
            ("cluster".to_owned(), 4568)
        ]
    );
    let path_of = |probe: Option<Probe>| {
        let get = probe.and_then(|p| p.http_get).expect("an HTTP probe");
        assert_eq!(get.port, IntOrString::String("metrics".to_owned()));
        get.path.expect("a path")
    };
    assert_eq!(path_of(broker.readiness_probe.clone()), "/readyz");
    assert_eq!(path_of(broker.liveness_probe.clone()), "/healthz");
    assert_eq!(path_of(broker.startup_probe.clone()), "/healthz");
    let startup = broker.startup_probe.expect("startup");
    let budget = startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3);
    assert!(budget >= 300, "recovery gets five minutes, not {budget}s");
}

#[test]
fn brokers_run_as_non_root_on_a_read_only_root_filesystem() {
    let set = build(&stream("orders"));
    let broker = container(&set);
    let security = broker.security_context.expect("container security");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    let pod = pod(&set);
    let pod_security = pod.security_context.expect("pod security");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(pod_security.fs_group, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".to_owned())
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(pod.termination_grace_period_seconds.unwrap_or(30) >= 60);
    // Everything the broker writes is on a mounted volume.
    let mounts: Vec<_> = broker
        .volume_mounts
        .expect("mounts")
        .into_iter()
        .map(|m| (m.name, m.mount_path, m.read_only.unwrap_or(false)))
        .collect();
    assert!(mounts.contains(&("data".to_owned(), "/var/lib/brook".to_owned(), false)));
    assert!(mounts.contains(&("tmp".to_owned(), "/tmp".to_owned(), false)));
    assert!(mounts.contains(&("admin-key".to_owned(), "/etc/brook/admin".to_owned(), true)));
}

#[test]
fn a_stream_with_channels_gives_its_brokers_the_storage_keys_and_endpoint() {
    let plain = container(&build(&stream("orders")));
    assert!(
        plain
            .env
            .unwrap_or_default()
            .iter()
            .all(|e| !e.name.starts_with("AWS_")),
        "no keys without channels"
    );
    let mut with_channels = stream("orders");
    with_channels.spec.channels = Some(crate::api::stream::StreamChannels {
        s3_endpoint: Some("http://minio.storage.svc:9000".to_owned()),
        credentials_secret_ref: Some(crate::api::common::AccessKeySecretReference {
            name: "lake-keys".to_owned(),
            access_key_id_key: "id".to_owned(),
            secret_access_key_key: "secret".to_owned(),
        }),
    });
    let env = container(&build(&with_channels)).env.expect("env");
    let from_secret = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|s| (s.name.clone(), s.key.clone()))
    };
    assert_eq!(
        from_secret("AWS_ACCESS_KEY_ID"),
        Some(("lake-keys".to_owned(), "id".to_owned()))
    );
    assert_eq!(
        from_secret("AWS_SECRET_ACCESS_KEY"),
        Some(("lake-keys".to_owned(), "secret".to_owned()))
    );
    let data = crate::operator::resources::broker_config_map(
        &with_channels,
        &BrokerDefaults::for_this_version(),
    )
    .data
    .expect("data");
    assert_eq!(data.get("BROOK_CHANNELS").map(String::as_str), Some("true"));
    assert_eq!(
        data.get("BROOK_S3_ENDPOINT").map(String::as_str),
        Some("http://minio.storage.svc:9000")
    );
    let plain = crate::operator::resources::broker_config_map(
        &stream("orders"),
        &BrokerDefaults::for_this_version(),
    )
    .data
    .expect("data");
    assert!(!plain.contains_key("BROOK_CHANNELS"));
}

#[test]
fn the_broker_reads_its_config_map_and_the_admin_key_secret() {
    let set = build(&stream("orders"));
    let broker = container(&set);
    let env_from = broker.env_from.expect("envFrom");
    assert_eq!(
        env_from[0].config_map_ref.as_ref().map(|c| c.name.as_str()),
        Some("orders-broker-config")
    );
    let volumes = pod(&set).volumes.expect("volumes");
    let admin = volumes
        .iter()
        .find(|v| v.name == "admin-key")
        .and_then(|v| v.secret.clone())
        .expect("admin key volume");
    assert_eq!(admin.secret_name.as_deref(), Some("orders-broker-admin"));
    assert!(
        volumes.iter().all(|v| v.name != "credentials"),
        "no client credentials without auth"
    );
}

#[test]
fn every_broker_field_of_the_spec_reaches_the_statefulset() {
    let mut custom = stream("orders");
    custom.spec.brokers.replicas = 5;
    custom.spec.brokers.image = Some("registry.local/brook:dev".to_owned());
    custom.spec.brokers.image_pull_policy = Some(ImagePullPolicy::Always);
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("500m".to_owned())),
            ("memory".to_owned(), Quantity("256Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("1Gi".to_owned()),
        )])),
        claims: None,
    };
    custom.spec.brokers.resources = Some(resources.clone());
    custom.spec.brokers.storage.size = "250Gi".to_owned();
    custom.spec.brokers.storage.storage_class_name = Some("fast-ssd".to_owned());
    custom.spec.brokers.node_selector =
        BTreeMap::from([("pool".to_owned(), "streaming".to_owned())]);
    let toleration = Toleration {
        key: Some("dedicated".to_owned()),
        operator: Some("Equal".to_owned()),
        value: Some("streaming".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        toleration_seconds: None,
    };
    custom.spec.brokers.tolerations = vec![toleration.clone()];
    custom.spec.deletion_policy = DeletionPolicy::Retain;
    custom.spec.auth = Some(Auth {
        credentials_secret_ref: SecretReference {
            name: "producers".to_owned(),
        },
    });

    let set = build(&custom);
    let spec = set.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(5));
    let claim = spec.volume_claim_templates.expect("claims")[0]
        .spec
        .clone()
        .expect("claim spec");
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(
        claim.resources.and_then(|r| r.requests).expect("requests")["storage"],
        Quantity("250Gi".to_owned())
    );
    assert_eq!(
        spec.persistent_volume_claim_retention_policy
            .and_then(|p| p.when_deleted)
            .as_deref(),
        Some("Retain")
    );
    let broker = container(&set);
    assert_eq!(broker.image.as_deref(), Some("registry.local/brook:dev"));
    assert_eq!(broker.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(broker.resources, Some(resources));
    let pod = pod(&set);
    assert_eq!(
        pod.node_selector,
        Some(BTreeMap::from([(
            "pool".to_owned(),
            "streaming".to_owned()
        )]))
    );
    assert_eq!(pod.tolerations, Some(vec![toleration]));
    let credentials = pod
        .volumes
        .expect("volumes")
        .into_iter()
        .find(|v| v.name == "credentials")
        .and_then(|v| v.secret)
        .expect("credentials volume");
    assert_eq!(credentials.secret_name.as_deref(), Some("producers"));
    assert!(
        broker
            .volume_mounts
            .expect("mounts")
            .iter()
            .any(|m| m.name == "credentials"
                && m.mount_path == "/etc/brook/credentials"
                && m.read_only == Some(true))
    );
}

#[test]
fn a_tls_stream_mounts_its_certificate_secret_read_only() {
    let plain = build(&stream("orders"));
    assert!(
        pod(&plain)
            .volumes
            .expect("volumes")
            .iter()
            .all(|v| v.name != "tls")
    );
    let mut secure = stream("orders");
    secure.spec.tls = Some(crate::api::stream::StreamTls {
        secret_ref: SecretReference {
            name: "orders-cert".to_owned(),
        },
    });
    let set = build(&secure);
    let volume = pod(&set)
        .volumes
        .expect("volumes")
        .into_iter()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret)
        .expect("the certificate volume");
    assert_eq!(volume.secret_name.as_deref(), Some("orders-cert"));
    assert!(
        container(&set)
            .volume_mounts
            .expect("mounts")
            .iter()
            .any(|m| m.name == "tls"
                && m.mount_path == "/etc/brook/tls"
                && m.read_only == Some(true))
    );
}

#[test]
fn a_storage_change_keeps_the_live_claim_templates_and_is_reported() {
    let live = build(&stream("orders"));
    let mut bigger = stream("orders");
    bigger.spec.brokers.storage.size = "20Gi".to_owned();
    bigger.spec.brokers.replicas = 4;
    let mut desired = build(&bigger);
    assert!(keep_live_claim_templates(&mut desired, &live), "reported");
    let spec = desired.spec.expect("spec");
    assert_eq!(
        spec.volume_claim_templates,
        live.spec.clone().expect("spec").volume_claim_templates,
        "the immutable templates are not touched"
    );
    assert_eq!(spec.replicas, Some(4), "everything else still applies");
    let mut same = build(&stream("orders"));
    assert!(!keep_live_claim_templates(&mut same, &live));
}

#[test]
fn hardening_live_claim_templates_are_reapplied_without_status_and_compared_by_amount() {
    // What a real API server returns: the size in its canonical form, the default class
    // filled in, and a status on the template.
    let mut written = stream("orders");
    written.spec.brokers.storage.size = "1.5Gi".to_owned();
    let mut live = build(&written);
    let claims = live
        .spec
        .as_mut()
        .and_then(|s| s.volume_claim_templates.as_mut())
        .expect("claim templates");
    let claim_spec = claims[0].spec.as_mut().expect("claim spec");
    claim_spec.storage_class_name = Some("standard".to_owned());
    claim_spec.resources = Some(VolumeResourceRequirements {
        requests: Some(BTreeMap::from([(
            "storage".to_owned(),
            Quantity("1536Mi".to_owned()),
        )])),
        limits: None,
    });
    claims[0].status = Some(PersistentVolumeClaimStatus {
        phase: Some("Pending".to_owned()),
        ..PersistentVolumeClaimStatus::default()
    });
    let mut desired = build(&written);
    assert!(
        !keep_live_claim_templates(&mut desired, &live),
        "1.5Gi and 1536Mi on the default class are the storage that was declared"
    );
    let kept = desired
        .spec
        .and_then(|s| s.volume_claim_templates)
        .expect("templates");
    assert_eq!(kept[0].status, None, "a template's status is never applied");
    assert_eq!(
        kept[0]
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("standard")
    );
}
