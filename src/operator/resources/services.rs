//! The two Services of a Stream: a headless one that gives every broker pod a stable DNS
//! name (and carries the metrics port for scraping), and the client Service on the Kinesis port.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    CLUSTER_PORT, CLUSTER_PORT_NAME, ChildNames, KINESIS_PORT, KINESIS_PORT_NAME, METRICS_PORT,
    METRICS_PORT_NAME, child_meta, selector_labels,
};
use crate::api::Stream;

/// Label that marks the Service whose endpoints Prometheus scrapes.
pub const METRICS_SERVICE_LABEL: &str = "brook.dev/metrics";

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        app_protocol: Some("http".to_owned()),
        ..ServicePort::default()
    }
}

/// The headless Service of the StatefulSet: per-pod DNS names, published before the pods
/// are ready so brokers can find each other while they start.
pub fn headless_service(stream: &Stream) -> Service {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    let mut metadata = child_meta(stream, &ChildNames::for_stream(name).headless_service);
    metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(METRICS_SERVICE_LABEL.to_owned(), "true".to_owned());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(name)),
            ports: Some(vec![
                port(KINESIS_PORT_NAME, KINESIS_PORT),
                port(METRICS_PORT_NAME, METRICS_PORT),
                port(CLUSTER_PORT_NAME, CLUSTER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The Service producers and consumers use: the Kinesis API of the ready brokers.
pub fn client_service(stream: &Stream) -> Service {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    Service {
        metadata: child_meta(stream, &ChildNames::for_stream(name).client_service),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(name)),
            ports: Some(vec![port(KINESIS_PORT_NAME, KINESIS_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::resources::fixtures::stream;

    #[test]
    fn the_headless_service_names_every_pod_and_exposes_the_api_metrics_and_internal_ports() {
        let service = headless_service(&stream("orders"));
        assert_eq!(service.metadata.name.as_deref(), Some("orders-brokers"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("shop"));
        let spec = service.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, Some(selector_labels("orders")));
        let ports = spec.ports.expect("ports");
        let pairs: Vec<_> = ports
            .iter()
            .map(|p| (p.name.as_deref(), p.port, p.target_port.clone()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (
                    Some("kinesis"),
                    4567,
                    Some(IntOrString::String("kinesis".to_owned()))
                ),
                (
                    Some("metrics"),
                    9100,
                    Some(IntOrString::String("metrics".to_owned()))
                ),
                (
                    Some("cluster"),
                    4568,
                    Some(IntOrString::String("cluster".to_owned()))
                ),
            ]
        );
    }

    #[test]
    fn the_client_service_serves_only_the_kinesis_port_of_the_brokers() {
        let service = client_service(&stream("orders"));
        assert_eq!(service.metadata.name.as_deref(), Some("orders"));
        let spec = service.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(spec.selector, Some(selector_labels("orders")));
        let ports = spec.ports.expect("ports");
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, 4567);
        assert_eq!(ports[0].name.as_deref(), Some("kinesis"));
    }
}
