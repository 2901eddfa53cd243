//! The StatefulSet of a Stream's broker pods: one PersistentVolumeClaim per pod, probes on
//! the broker's health endpoints, a locked-down security context, pods spread over nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::broker_config::{
    ADMIN_MOUNT_PATH, CREDENTIALS_MOUNT_PATH, DATA_MOUNT_PATH, TLS_MOUNT_PATH,
};
use super::{
    BrokerDefaults, CLUSTER_PORT, CLUSTER_PORT_NAME, ChildNames, KINESIS_PORT, KINESIS_PORT_NAME,
    METRICS_PORT, METRICS_PORT_NAME, child_labels, child_meta, selector_labels,
};
use crate::api::Stream;

/// The broker container's own variables (the rest comes from the ConfigMap): its pod name, and
/// the keys its channels deliver with, from the Secret `spec.channels` names.
fn broker_env(stream: &Stream) -> Vec<EnvVar> {
    let mut env = vec![EnvVar {
        name: "BROOK_POD_NAME".to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    }];
    if let Some(reference) = stream
        .spec
        .channels
        .as_ref()
        .and_then(|c| c.credentials_secret_ref.as_ref())
    {
        env.push(super::delivery::from_secret(
            "AWS_ACCESS_KEY_ID",
            &reference.name,
            &reference.access_key_id_key,
        ));
        env.push(super::delivery::from_secret(
            "AWS_SECRET_ACCESS_KEY",
            &reference.name,
            &reference.secret_access_key_key,
        ));
    }
    env
}
use crate::api::stream::{DeletionPolicy, ImagePullPolicy};

/// Name of each broker pod's data volume claim.
pub const DATA_VOLUME: &str = "data";
/// Pod template annotation that holds the broker configuration's hash.
pub const CONFIG_HASH_ANNOTATION: &str = "brook.dev/config-hash";
/// User and group the broker runs as: the distroless `nonroot` user.
const BROKER_UID: i64 = 65532;
/// Time a broker gets between SIGTERM and SIGKILL: serving on while not ready
/// ([`super::broker_config::SHUTDOWN_DELAY_SECONDS`]), draining requests, a final journal
/// sync and checkpoint take seconds; the margin covers a slow volume.
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// An HTTP probe of `path` on the named `port`.
pub(super) fn http_probe(port: &str, path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The small scratch volume mounted at `/tmp` (the root file system is read-only).
pub(super) fn tmp_volume() -> Volume {
    Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A volume mount.
pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn broker_container(stream: &Stream, defaults: &BrokerDefaults) -> Container {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    let brokers = &stream.spec.brokers;
    let mut mounts = vec![
        mount(DATA_VOLUME, DATA_MOUNT_PATH, false),
        mount("admin-key", ADMIN_MOUNT_PATH, true),
        mount("tmp", "/tmp", false),
    ];
    if stream.spec.auth.is_some() {
        mounts.push(mount("credentials", CREDENTIALS_MOUNT_PATH, true));
    }
    if stream.spec.tls.is_some() {
        mounts.push(mount("tls", TLS_MOUNT_PATH, true));
    }
    Container {
        name: "broker".to_owned(),
        image: Some(
            brokers
                .image
                .clone()
                .unwrap_or_else(|| defaults.image.clone()),
        ),
        image_pull_policy: brokers.image_pull_policy.map(|policy| {
            match policy {
                ImagePullPolicy::Always => "Always",
                ImagePullPolicy::IfNotPresent => "IfNotPresent",
                ImagePullPolicy::Never => "Never",
            }
            .to_owned()
        }),
        args: Some(vec!["broker".to_owned()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: ChildNames::for_stream(name).config_map,
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(broker_env(stream)),
        ports: Some(vec![
            ContainerPort {
                name: Some(KINESIS_PORT_NAME.to_owned()),
                container_port: KINESIS_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(METRICS_PORT_NAME.to_owned()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(CLUSTER_PORT_NAME.to_owned()),
                container_port: CLUSTER_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        resources: brokers.resources.clone(),
        // Recovery replays the journal before the broker answers; the startup probe gives it
        // five minutes before liveness takes over.
        startup_probe: Some(http_probe(METRICS_PORT_NAME, "/healthz", 5, 60)),
        liveness_probe: Some(http_probe(METRICS_PORT_NAME, "/healthz", 10, 3)),
        readiness_probe: Some(http_probe(METRICS_PORT_NAME, "/readyz", 5, 2)),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The container security of every Brook workload: no privileges, a read-only root.
pub(super) fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The pod security of every Brook workload (the restricted Pod Security Standard), its
/// volumes writable by the distroless `nonroot` user.
pub(super) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(BROKER_UID),
        run_as_group: Some(BROKER_UID),
        fs_group: Some(BROKER_UID),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

fn pod_spec(stream: &Stream, defaults: &BrokerDefaults) -> PodSpec {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    let names = ChildNames::for_stream(name);
    let brokers = &stream.spec.brokers;
    let mut volumes = vec![
        secret_volume("admin-key", &names.admin_secret),
        tmp_volume(),
    ];
    if let Some(auth) = &stream.spec.auth {
        volumes.push(secret_volume(
            "credentials",
            &auth.credentials_secret_ref.name,
        ));
    }
    if let Some(tls) = &stream.spec.tls {
        volumes.push(secret_volume("tls", &tls.secret_ref.name));
    }
    PodSpec {
        containers: vec![broker_container(stream, defaults)],
        // The brokers never call the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(pod_security()),
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                match_expressions: None,
            }),
            ..TopologySpreadConstraint::default()
        }]),
        node_selector: (!brokers.node_selector.is_empty()).then(|| brokers.node_selector.clone()),
        tolerations: (!brokers.tolerations.is_empty()).then(|| brokers.tolerations.clone()),
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

fn data_claim(stream: &Stream) -> PersistentVolumeClaim {
    let storage = &stream.spec.brokers.storage;
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(child_labels(name)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The StatefulSet of a Stream's brokers with `replicas` pods (see [`broker_replicas`]);
/// `config_hash` is the hash of the broker ConfigMap, whose change rolls the pods.
pub fn statefulset(
    stream: &Stream,
    defaults: &BrokerDefaults,
    config_hash: &str,
    replicas: i32,
) -> StatefulSet {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    let names = ChildNames::for_stream(name);
    StatefulSet {
        metadata: child_meta(stream, &names.statefulset),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.headless_service),
            selector: LabelSelector {
                match_labels: Some(selector_labels(name)),
                match_expressions: None,
            },
            // Brokers do not depend on each other to start; starting them together halves
            // the time a new stream waits.
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(
                        match stream.spec.deletion_policy {
                            DeletionPolicy::Delete => "Delete",
                            DeletionPolicy::Retain => "Retain",
                        }
                        .to_owned(),
                    ),
                    // Scaling brokers down keeps the volumes: their shards come back with
                    // the pod.
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(child_labels(name)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(stream, defaults)),
            },
            volume_claim_templates: Some(vec![data_claim(stream)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// How many broker pods the StatefulSet runs: the declared number, except that it never
/// shrinks by itself. Shrinking strands the leaving pods' shards until they are resharded
/// off and past retention (`operator::broker_pods`), so a smaller declared number keeps
/// the pods running (`live`) until the Stream's reconcile shrinks it.
pub fn broker_replicas(declared: i32, live: Option<i32>) -> i32 {
    live.map_or(declared, |live| live.max(declared))
}

/// Keeps the live volume claim templates in `desired`: Kubernetes refuses any change to them,
/// so a changed storage spec cannot be applied to existing brokers. Returns whether the
/// declared storage differs from what the brokers have.
pub fn keep_live_claim_templates(desired: &mut StatefulSet, live: &StatefulSet) -> bool {
    let Some(live_claims) = live
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
    else {
        return false;
    };
    let Some(spec) = desired.spec.as_mut() else {
        return false;
    };
    let differs = !same_storage(
        spec.volume_claim_templates.as_deref().unwrap_or_default(),
        &live_claims,
    );
    // What the API server reports of a template (its status) is not part of what is applied.
    let live_claims = live_claims
        .into_iter()
        .map(|claim| PersistentVolumeClaim {
            status: None,
            ..claim
        })
        .collect();
    spec.volume_claim_templates = Some(live_claims);
    differs
}

/// Whether two lists of claim templates ask for the same names, classes and sizes, with
/// sizes compared by amount (`1.5Gi` is stored as `1536Mi`).
fn same_storage(declared: &[PersistentVolumeClaim], live: &[PersistentVolumeClaim]) -> bool {
    let requests = |claim: &PersistentVolumeClaim| {
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.clone())
            .unwrap_or_default()
    };
    let class = |claim: &PersistentVolumeClaim| {
        claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
    };
    declared.len() == live.len()
        && declared.iter().zip(live).all(|(want, have)| {
            let (want_requests, have_requests) = (requests(want), requests(have));
            want.metadata.name == have.metadata.name
                // A class left to the cluster's default is filled in by the API server.
                && (class(want).is_none() || class(want) == class(have))
                && want_requests.len() == have_requests.len()
                && want_requests.iter().all(|(resource, amount)| {
                    have_requests.get(resource).is_some_and(|live| {
                        live.0 == amount.0
                            || crate::operator::quantity::same_amount(&amount.0, &live.0)
                                == Some(true)
                    })
                })
        })
}

/// Whether a live StatefulSet selects its pods otherwise than `desired` would: a selector
/// cannot change, so such a set (made by an earlier build) has to be replaced.
pub fn selector_changed(desired: &StatefulSet, live: &StatefulSet) -> bool {
    let selector = |set: &StatefulSet| set.spec.as_ref().map(|spec| spec.selector.clone());
    selector(desired) != selector(live)
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
