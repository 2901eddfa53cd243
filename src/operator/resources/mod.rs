//! Pure builders: a `Stream` in, the full Kubernetes objects that serve it out. No I/O here;
//! the controller applies what these return, and the unit tests read whole objects.
//!
//! Every child is named after its Stream and carries the same identifying labels, so the
//! selectors of the StatefulSet, the Services, the PodDisruptionBudget and the ServiceMonitor
//! all match the broker pods and nothing else.

mod broker_config;
pub mod delivery;
mod network_policy;
mod pdb;
mod service_monitor;
mod services;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::api::Stream;

pub use broker_config::{ADMIN_ACCESS_KEY_ID, broker_config_map, config_hash};
pub use network_policy::network_policy;
pub use pdb::pod_disruption_budget;
pub use service_monitor::{SERVICE_MONITOR_RESOURCE, service_monitor};
pub use services::{client_service, headless_service};
pub use statefulset::{
    DATA_VOLUME, broker_replicas, keep_live_claim_templates, selector_changed, statefulset,
};

/// Port of the Kinesis API in the broker pods and on the client Service.
pub const KINESIS_PORT: i32 = 4567;
/// Port of `/metrics`, `/healthz` and `/readyz` in the broker pods.
pub const METRICS_PORT: i32 = 9100;
/// Name of the Kinesis port, as Services and probes refer to it.
pub const KINESIS_PORT_NAME: &str = "kinesis";
/// Name of the metrics port, as the ServiceMonitor refers to it.
pub const METRICS_PORT_NAME: &str = "metrics";
/// The broker pods' internal port, on which they relay requests to each other and pod 0
/// serves the catalog (`docs/cluster.md`).
pub const CLUSTER_PORT: i32 = 4568;
/// Name of the internal port.
pub const CLUSTER_PORT_NAME: &str = "cluster";
/// The operator's field manager and `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "brook-operator";
/// Label that names the Stream a child object belongs to.
pub const STREAM_LABEL: &str = "brook.dev/stream";

/// Settings of the operator that shape every broker it deploys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerDefaults {
    /// Broker image when a Stream does not name one.
    pub image: String,
    /// Region in stream ARNs.
    pub region: String,
    /// Account id in stream ARNs.
    pub account: String,
}

/// The image `make image` builds from this version: `localhost/brook:<version>`.
pub fn default_image() -> String {
    format!("localhost/brook:{}", env!("CARGO_PKG_VERSION"))
}

impl BrokerDefaults {
    /// The defaults of this build: its own version's image.
    pub fn for_this_version() -> Self {
        Self {
            image: default_image(),
            region: "us-east-1".to_owned(),
            account: "000000000000".to_owned(),
        }
    }
}

/// The names of every object the operator creates for one Stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildNames {
    /// The StatefulSet, and the prefix of its pods (`<name>-0`, ...).
    pub statefulset: String,
    /// The headless Service that gives each pod a DNS name.
    pub headless_service: String,
    /// The ClusterIP Service clients reach the Kinesis API through.
    pub client_service: String,
    /// The ConfigMap with the broker configuration.
    pub config_map: String,
    /// The Secret with the operator's admin key for this stream's brokers.
    pub admin_secret: String,
    /// The PodDisruptionBudget of the broker pods.
    pub pod_disruption_budget: String,
    /// The NetworkPolicy that keeps the internal port to the broker pods.
    pub network_policy: String,
    /// The ServiceMonitor, when the Prometheus Operator is installed.
    pub service_monitor: String,
}

impl ChildNames {
    /// Names derived from the Stream's name (at most 52 characters, so that the pods'
    /// `controller-revision-hash` label stays within 63).
    pub fn for_stream(stream_name: &str) -> Self {
        Self {
            statefulset: stream_name.to_owned(),
            headless_service: format!("{stream_name}-brokers"),
            client_service: stream_name.to_owned(),
            config_map: format!("{stream_name}-broker-config"),
            admin_secret: format!("{stream_name}-broker-admin"),
            pod_disruption_budget: stream_name.to_owned(),
            network_policy: stream_name.to_owned(),
            service_monitor: stream_name.to_owned(),
        }
    }
}

/// The labels that select a Stream's broker pods. Not `app.kubernetes.io/instance`: Argo CD
/// tracks the objects of an Application by that label, so children labelled with a Stream's
/// name would count as objects of an Application of the same name, out of sync with its Git
/// and pruned by it.
pub fn selector_labels(stream_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "brook-broker".to_owned(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            "broker".to_owned(),
        ),
        (STREAM_LABEL.to_owned(), stream_name.to_owned()),
    ])
}

/// The selector labels as the `status.selector` string the scale subresource reports.
pub fn selector_string(stream_name: &str) -> String {
    selector_labels(stream_name)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The label naming the manager of a child object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Every label a child object carries: the selector labels plus ownership and version.
pub fn child_labels(stream_name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(stream_name);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned());
    labels.insert("app.kubernetes.io/part-of".to_owned(), "brook".to_owned());
    labels
}

/// The owner reference that lets Kubernetes garbage-collect a child with its Stream.
pub fn owner_reference(stream: &Stream) -> Option<OwnerReference> {
    stream.controller_owner_ref(&())
}

/// The label selector that matches every child the operator makes, and nothing else.
pub fn managed_children_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

/// Metadata of a child object: name, the Stream's namespace, labels and owner reference.
pub fn child_meta(stream: &Stream, name: &str) -> ObjectMeta {
    let stream_name = stream.metadata.name.as_deref().unwrap_or_default();
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: stream.metadata.namespace.clone(),
        labels: Some(child_labels(stream_name)),
        owner_references: owner_reference(stream).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// The Kinesis endpoint URL of a Stream's client Service, as clients inside the cluster use it.
pub fn client_endpoint(stream_name: &str, namespace: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{stream_name}.{namespace}.svc:{KINESIS_PORT}")
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A Stream builder for the builder tests: `stream("orders").shards(4)`.

    use crate::api::stream::{Stream, StreamSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A Stream as the API server returns it: defaults filled in, a uid and a generation.
    pub fn stream(name: &str) -> Stream {
        let spec: StreamSpec = serde_json::from_value(serde_json::json!({}))
            .expect("an empty spec takes every default");
        Stream {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("shop".to_owned()),
                uid: Some("0b7c4f3e-1111-2222-3333-444455556666".to_owned()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_fit_kubernetes_limits_for_the_longest_stream_name() {
        let longest = "s".repeat(crate::api::stream::MAX_STREAM_NAME_LENGTH);
        let names = ChildNames::for_stream(&longest);
        // Services are DNS labels (63 characters).
        for name in [&names.headless_service, &names.client_service] {
            assert!(name.len() <= 63, "{name} is too long for a Service");
        }
        // The other kinds are DNS subdomains (253 characters).
        for name in [
            &names.config_map,
            &names.admin_secret,
            &names.pod_disruption_budget,
            &names.network_policy,
            &names.service_monitor,
        ] {
            assert!(name.len() <= 253, "{name} is too long");
        }
        // The pods' revision-hash label appends 11 characters to the StatefulSet's name.
        assert!(names.statefulset.len() + 11 <= 63);
    }

    #[test]
    fn child_metadata_is_owned_by_the_stream_as_its_controller() {
        let stream = fixtures::stream("orders");
        let meta = child_meta(&stream, "orders-broker-config");
        let owners = meta.owner_references.expect("an owner reference");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Stream");
        assert_eq!(owners[0].api_version, "brook.dev/v1alpha1");
        assert_eq!(owners[0].name, "orders");
        assert_eq!(owners[0].uid, "0b7c4f3e-1111-2222-3333-444455556666");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        let labels = meta.labels.expect("labels");
        assert_eq!(labels["brook.dev/stream"], "orders");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "brook-operator");
        for (key, value) in selector_labels("orders") {
            assert_eq!(
                labels.get(&key),
                Some(&value),
                "child carries selector label {key}"
            );
        }
    }

    #[test]
    fn no_child_carries_argo_cds_tracking_label() {
        // Argo CD (label tracking) counts objects labelled app.kubernetes.io/instance=<app>
        // as its Application's: a Stream named like its Application would lose its children.
        assert!(!child_labels("orders").contains_key("app.kubernetes.io/instance"));
        assert!(!selector_labels("orders").contains_key("app.kubernetes.io/instance"));
    }

    #[test]
    fn the_scale_selector_string_lists_every_selector_label() {
        assert_eq!(
            selector_string("orders"),
            "app.kubernetes.io/component=broker,app.kubernetes.io/name=brook-broker,brook.dev/stream=orders"
        );
    }
}
