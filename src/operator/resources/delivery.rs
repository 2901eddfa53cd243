//! Pure builders for a DeliveryStream's worker: a one-replica Deployment (recreated, never
//! rolled, so two workers never deliver at once), its volume claim for progress and the
//! direct-put journal, and the Service of its Firehose API and metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    SecretKeySelector, SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use super::statefulset::{container_security, http_probe, mount, pod_security, tmp_volume};
use super::{ADMIN_ACCESS_KEY_ID, BrokerDefaults, ChildNames, MANAGED_BY_LABEL, MANAGER};
use crate::api::common::{AccessKeySecretReference, SecretKeyReference};
use crate::api::delivery::DeliveryStream;

/// Port of the worker's Firehose API, `/metrics`, `/healthz` and `/readyz`.
pub const WORKER_PORT: i32 = 4573;
/// Name of that port.
pub const WORKER_PORT_NAME: &str = "firehose";
/// Label naming the DeliveryStream a child belongs to.
pub const DELIVERY_LABEL: &str = "brook.dev/delivery-stream";
/// Where the worker keeps its data.
const DATA_PATH: &str = "/var/lib/brook";
/// The worker volume's size when the spec names none.
const DEFAULT_STORAGE: &str = "1Gi";

/// The names of a DeliveryStream's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryChildNames {
    /// The Deployment (and the prefix of its pod).
    pub deployment: String,
    /// The Service of the Firehose API and metrics.
    pub service: String,
    /// The worker's volume claim.
    pub claim: String,
}

impl DeliveryChildNames {
    /// Names derived from the DeliveryStream's name.
    pub fn for_delivery(name: &str) -> Self {
        Self {
            deployment: format!("{name}-delivery"),
            service: format!("{name}-delivery"),
            claim: format!("{name}-delivery-data"),
        }
    }
}

/// The labels that select a DeliveryStream's worker pod.
pub fn delivery_selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "brook-delivery".to_owned(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            "delivery".to_owned(),
        ),
        (DELIVERY_LABEL.to_owned(), name.to_owned()),
    ])
}

fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = delivery_selector(name);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned());
    labels.insert("app.kubernetes.io/part-of".to_owned(), "brook".to_owned());
    labels
}

fn meta(delivery: &DeliveryStream, name: &str) -> ObjectMeta {
    let owner = delivery.metadata.name.as_deref().unwrap_or_default();
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: delivery.metadata.namespace.clone(),
        labels: Some(labels(owner)),
        owner_references: delivery.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The Firehose endpoint URL of a direct-put DeliveryStream inside the cluster.
pub fn delivery_endpoint(name: &str, namespace: &str) -> String {
    format!(
        "http://{}.{namespace}.svc:{WORKER_PORT}",
        DeliveryChildNames::for_delivery(name).service
    )
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(super) fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn access_key_env(reference: &AccessKeySecretReference) -> [EnvVar; 2] {
    [
        from_secret(
            "BROOK_S3_ACCESS_KEY_ID",
            &reference.name,
            &reference.access_key_id_key,
        ),
        from_secret(
            "BROOK_S3_SECRET_ACCESS_KEY",
            &reference.name,
            &reference.secret_access_key_key,
        ),
    ]
}

/// Where a worker mounts the CA of a source Stream that serves TLS.
pub const SOURCE_CA_MOUNT_PATH: &str = "/etc/brook/source-tls";

/// The source Stream's brokers, as a worker reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceBrokers<'a> {
    /// `host:port` of the Stream's brokers.
    pub address: &'a str,
    /// The Stream's certificate Secret, when it serves TLS: the worker trusts its `ca.crt`.
    pub tls_secret: Option<&'a str>,
}

/// The worker's environment: its identity and spec, and every credential as a reference to
/// its Secret (never a value in the Deployment).
pub fn worker_env(delivery: &DeliveryStream, source: Option<SourceBrokers<'_>>) -> Vec<EnvVar> {
    let spec = &delivery.spec;
    let name = delivery.metadata.name.as_deref().unwrap_or_default();
    let mut env = vec![
        plain("BROOK_DELIVERY_NAME", name),
        plain(
            "BROOK_DELIVERY_VERSION",
            delivery.metadata.generation.unwrap_or(1).to_string(),
        ),
        // Serializing a spec of strings, numbers and maps cannot fail.
        plain(
            "BROOK_DELIVERY_SPEC",
            serde_json::to_string(spec).unwrap_or_default(),
        ),
        plain("BROOK_DATA_DIR", DATA_PATH),
        plain("BROOK_LISTEN", format!("0.0.0.0:{WORKER_PORT}")),
        plain("BROOK_LOG_FORMAT", "json"),
    ];
    if let (Some(stream), Some(source)) = (&spec.source.stream, source) {
        env.push(plain("BROOK_SOURCE_ENDPOINT", source.address));
        if source.tls_secret.is_some() {
            env.push(plain(
                "BROOK_SOURCE_CA",
                format!("{SOURCE_CA_MOUNT_PATH}/ca.crt"),
            ));
        }
        env.push(plain("BROOK_SOURCE_ACCESS_KEY_ID", ADMIN_ACCESS_KEY_ID));
        env.push(from_secret(
            "BROOK_SOURCE_SECRET_ACCESS_KEY",
            &ChildNames::for_stream(&stream.name).admin_secret,
            ADMIN_ACCESS_KEY_ID,
        ));
    }
    let bucket = spec.destination.s3.as_ref().or_else(|| {
        spec.destination
            .http
            .as_ref()
            .and_then(|h| h.s3_backup.as_ref())
    });
    if let Some(reference) = bucket.and_then(|b| b.credentials_secret_ref.as_ref()) {
        env.extend(access_key_env(reference));
    }
    if let Some(SecretKeyReference { name, key }) = spec
        .destination
        .http
        .as_ref()
        .and_then(|h| h.access_key_secret_ref.as_ref())
    {
        env.push(from_secret("BROOK_HTTP_ACCESS_KEY", name, key));
    }
    env
}

/// The worker's Deployment.
pub fn delivery_deployment(
    delivery: &DeliveryStream,
    defaults: &BrokerDefaults,
    source: Option<SourceBrokers<'_>>,
) -> Deployment {
    let name = delivery.metadata.name.as_deref().unwrap_or_default();
    let names = DeliveryChildNames::for_delivery(name);
    let source_ca = source.and_then(|s| s.tls_secret);
    let worker = delivery.spec.worker.clone().unwrap_or_default();
    let container = Container {
        name: "delivery".to_owned(),
        image: Some(worker.image.unwrap_or_else(|| defaults.image.clone())),
        args: Some(vec!["delivery".to_owned()]),
        env: Some(worker_env(delivery, source)),
        ports: Some(vec![ContainerPort {
            name: Some(WORKER_PORT_NAME.to_owned()),
            container_port: WORKER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: worker.resources,
        // Opening the journal replays it before the worker listens.
        startup_probe: Some(http_probe(WORKER_PORT_NAME, "/healthz", 5, 60)),
        liveness_probe: Some(http_probe(WORKER_PORT_NAME, "/healthz", 10, 3)),
        readiness_probe: Some(http_probe(WORKER_PORT_NAME, "/readyz", 5, 2)),
        security_context: Some(container_security()),
        volume_mounts: Some(
            [mount("data", DATA_PATH, false), mount("tmp", "/tmp", false)]
                .into_iter()
                .chain(
                    source_ca
                        .is_some()
                        .then(|| mount("source-tls", SOURCE_CA_MOUNT_PATH, true)),
                )
                .collect(),
        ),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        // The worker never calls the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(60),
        security_context: Some(pod_security()),
        volumes: Some(
            vec![
                Volume {
                    name: "data".to_owned(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: names.claim.clone(),
                        read_only: None,
                    }),
                    ..Volume::default()
                },
                tmp_volume(),
            ]
            .into_iter()
            .chain(source_ca.map(|secret| Volume {
                name: "source-tls".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_owned()),
                    // Only the CA: the worker never sees the brokers' key.
                    items: Some(vec![KeyToPath {
                        key: "ca.crt".to_owned(),
                        path: "ca.crt".to_owned(),
                        mode: None,
                    }]),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            }))
            .collect(),
        ),
        ..PodSpec::default()
    };
    Deployment {
        metadata: meta(delivery, &names.deployment),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(delivery_selector(name)),
                match_expressions: None,
            },
            // The old worker stops before the new one starts: one deliverer per volume.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The worker's volume claim.
pub fn delivery_claim(delivery: &DeliveryStream) -> PersistentVolumeClaim {
    let name = delivery.metadata.name.as_deref().unwrap_or_default();
    let worker = delivery.spec.worker.clone().unwrap_or_default();
    PersistentVolumeClaim {
        metadata: meta(delivery, &DeliveryChildNames::for_delivery(name).claim),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: worker.storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    worker
                        .storage
                        .unwrap_or_else(|| Quantity(DEFAULT_STORAGE.to_owned())),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The Service of the worker's Firehose API and metrics.
pub fn delivery_service(delivery: &DeliveryStream) -> Service {
    let name = delivery.metadata.name.as_deref().unwrap_or_default();
    Service {
        metadata: meta(delivery, &DeliveryChildNames::for_delivery(name).service),
        spec: Some(ServiceSpec {
            selector: Some(delivery_selector(name)),
            ports: Some(vec![ServicePort {
                name: Some(WORKER_PORT_NAME.to_owned()),
                port: WORKER_PORT,
                target_port: Some(IntOrString::String(WORKER_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The `job` label of every delivery worker's series (the dashboard and alerts select it).
pub const DELIVERY_JOB: &str = "brook-delivery";

/// A ServiceMonitor scraping the worker's metrics every 15 seconds as `job="brook-delivery"`.
pub fn delivery_service_monitor(delivery: &DeliveryStream) -> kube::api::DynamicObject {
    let name = delivery.metadata.name.as_deref().unwrap_or_default();
    let service = DeliveryChildNames::for_delivery(name).service;
    let mut object = kube::api::DynamicObject::new(&service, &super::SERVICE_MONITOR_RESOURCE);
    object.metadata = meta(delivery, &service);
    object.data = serde_json::json!({
        "spec": {
            "selector": {"matchLabels": delivery_selector(name)},
            "endpoints": [{
                "port": WORKER_PORT_NAME,
                "path": "/metrics",
                "interval": "15s",
                "scheme": "http",
                "relabelings": [{"targetLabel": "job", "replacement": DELIVERY_JOB}],
            }],
        }
    });
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(spec: serde_json::Value) -> DeliveryStream {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "brook.dev/v1alpha1", "kind": "DeliveryStream",
            "metadata": {"name": "clicks-archive", "namespace": "shop", "generation": 3,
                         "uid": "5e0c4f3e-1111-2222-3333-444455556666"},
            "spec": spec,
        }))
        .expect("a DeliveryStream")
    }

    fn env_of(deployment: &Deployment) -> Vec<EnvVar> {
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers[0].env.clone().unwrap_or_default())
            .unwrap_or_default()
    }

    #[test]
    fn delivery_worker_gets_its_spec_and_secrets_by_reference() {
        let delivery = delivery(serde_json::json!({
            "source": {"stream": {"name": "clicks"}},
            "destination": {"s3": {"bucket": "archive",
                "credentialsSecretRef": {"name": "bucket-keys"}}},
        }));
        let deployment = delivery_deployment(
            &delivery,
            &BrokerDefaults::for_this_version(),
            Some(SourceBrokers {
                address: "clicks.shop.svc:4567",
                tls_secret: None,
            }),
        );
        let env = env_of(&deployment);
        assert!(env.iter().all(|e| e.name != "BROOK_SOURCE_CA"));
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .clone()
        };
        assert_eq!(
            value("BROOK_DELIVERY_NAME").value.as_deref(),
            Some("clicks-archive")
        );
        assert_eq!(value("BROOK_DELIVERY_VERSION").value.as_deref(), Some("3"));
        let spec: serde_json::Value =
            serde_json::from_str(value("BROOK_DELIVERY_SPEC").value.as_deref().expect("spec"))
                .expect("json");
        assert_eq!(spec["destination"]["s3"]["bucket"], "archive");
        assert_eq!(
            value("BROOK_SOURCE_ENDPOINT").value.as_deref(),
            Some("clicks.shop.svc:4567")
        );
        let secret = |name: &str| {
            let reference = value(name)
                .value_from
                .and_then(|v| v.secret_key_ref)
                .expect("a Secret");
            (reference.name, reference.key)
        };
        assert_eq!(
            secret("BROOK_SOURCE_SECRET_ACCESS_KEY"),
            (
                "clicks-broker-admin".to_owned(),
                "brook-operator".to_owned()
            )
        );
        assert_eq!(
            secret("BROOK_S3_ACCESS_KEY_ID"),
            ("bucket-keys".to_owned(), "accessKeyId".to_owned())
        );
        assert_eq!(
            secret("BROOK_S3_SECRET_ACCESS_KEY"),
            ("bucket-keys".to_owned(), "secretAccessKey".to_owned())
        );
        assert!(
            env.iter()
                .all(|e| !e.name.contains("SECRET") || e.value.is_none())
        );
        let spec = deployment.spec.expect("spec");
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.and_then(|s| s.type_).as_deref(),
            Some("Recreate")
        );
        let owners = deployment.metadata.owner_references.expect("owned");
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].controller),
            ("DeliveryStream", Some(true))
        );
    }

    #[test]
    fn delivery_worker_of_a_tls_stream_trusts_its_ca_and_sees_nothing_else_of_the_secret() {
        let delivery = delivery(serde_json::json!({
            "source": {"stream": {"name": "clicks"}},
            "destination": {"s3": {"bucket": "archive"}},
        }));
        let deployment = delivery_deployment(
            &delivery,
            &BrokerDefaults::for_this_version(),
            Some(SourceBrokers {
                address: "clicks.shop.svc:4567",
                tls_secret: Some("clicks-cert"),
            }),
        );
        let env = env_of(&deployment);
        assert_eq!(
            env.iter()
                .find(|e| e.name == "BROOK_SOURCE_CA")
                .and_then(|e| e.value.as_deref()),
            Some("/etc/brook/source-tls/ca.crt")
        );
        let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "source-tls")
            .and_then(|v| v.secret.clone())
            .expect("the CA volume");
        assert_eq!(volume.secret_name.as_deref(), Some("clicks-cert"));
        let items: Vec<_> = volume
            .items
            .iter()
            .flatten()
            .map(|i| (i.key.as_str(), i.path.as_str()))
            .collect();
        assert_eq!(items, [("ca.crt", "ca.crt")], "never the key");
        let mounted = pod.containers[0].volume_mounts.iter().flatten().any(|m| {
            m.name == "source-tls"
                && m.mount_path == "/etc/brook/source-tls"
                && m.read_only == Some(true)
        });
        assert!(mounted);
    }

    #[test]
    fn delivery_http_worker_takes_the_endpoint_key_and_the_backup_keys() {
        let delivery = delivery(serde_json::json!({
            "source": {"directPut": {}},
            "destination": {"http": {"url": "https://collector/in",
                "accessKeySecretRef": {"name": "collector", "key": "token"},
                "s3Backup": {"bucket": "backup", "credentialsSecretRef": {"name": "backup-keys"}}}},
            "worker": {"storage": "5Gi", "storageClassName": "fast"},
        }));
        let env = worker_env(&delivery, None);
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"BROOK_HTTP_ACCESS_KEY"));
        assert!(names.contains(&"BROOK_S3_ACCESS_KEY_ID"));
        assert!(!names.contains(&"BROOK_SOURCE_ENDPOINT"));
        let claim = delivery_claim(&delivery);
        let spec = claim.spec.expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.and_then(|r| r.requests).expect("requests")["storage"],
            Quantity("5Gi".into())
        );
        assert_eq!(
            delivery_endpoint("audit", "shop"),
            "http://audit-delivery.shop.svc:4573"
        );
        let service = delivery_service(&delivery);
        let monitor = delivery_service_monitor(&delivery);
        let service_labels = service.metadata.labels.clone().expect("labels");
        for (key, value) in monitor.data["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
        {
            assert_eq!(service_labels.get(key).map(String::as_str), value.as_str());
        }
        assert_eq!(
            monitor.data["spec"]["endpoints"][0]["port"],
            WORKER_PORT_NAME
        );
        assert_eq!(
            service.spec.and_then(|s| s.selector).expect("selector")[DELIVERY_LABEL],
            "clicks-archive"
        );
    }
}
