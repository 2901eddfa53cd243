//! The Prometheus Operator ServiceMonitor that scrapes a Stream's brokers. Its CRD is not
//! Brook's, so the object is built as a dynamic one; the controller creates it only when the
//! API server serves `monitoring.coreos.com/v1`.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use super::services::METRICS_SERVICE_LABEL;
use super::{ChildNames, METRICS_PORT_NAME, child_meta, selector_labels};
use crate::api::Stream;

/// The ServiceMonitor kind as the Prometheus Operator serves it.
pub static SERVICE_MONITOR_RESOURCE: std::sync::LazyLock<ApiResource> =
    std::sync::LazyLock::new(|| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
            "servicemonitors",
        )
    });

/// The `job` label of every broker's series, from this ServiceMonitor or a plain scrape config
/// (the dashboard, the alerts and the autoscaler's queries select it).
pub const BROKER_JOB: &str = "brook-broker";

/// A ServiceMonitor selecting the headless Service's metrics port, every 15 seconds; the
/// series are labelled `job="brook-broker"` whatever the Service is called.
pub fn service_monitor(stream: &Stream) -> DynamicObject {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    let mut object = DynamicObject::new(
        &ChildNames::for_stream(name).service_monitor,
        &SERVICE_MONITOR_RESOURCE,
    );
    object.metadata = child_meta(stream, &ChildNames::for_stream(name).service_monitor);
    let mut match_labels = selector_labels(name);
    // Only the headless Service carries the metrics port and this label.
    match_labels.insert(METRICS_SERVICE_LABEL.to_owned(), "true".to_owned());
    object.data = serde_json::json!({
        "spec": {
            "selector": {"matchLabels": match_labels},
            "endpoints": [{
                "port": METRICS_PORT_NAME,
                "path": "/metrics",
                "interval": "15s",
                "scheme": "http",
                "relabelings": [{"targetLabel": "job", "replacement": BROKER_JOB}],
            }],
        }
    });
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::resources::fixtures::stream;
    use crate::operator::resources::headless_service;

    #[test]
    fn the_service_monitor_scrapes_the_metrics_port_of_the_headless_service() {
        let stream = stream("orders");
        let monitor = service_monitor(&stream);
        assert_eq!(
            monitor.types.as_ref().map(|t| t.api_version.as_str()),
            Some("monitoring.coreos.com/v1")
        );
        assert_eq!(
            monitor.types.as_ref().map(|t| t.kind.as_str()),
            Some("ServiceMonitor")
        );
        assert_eq!(monitor.metadata.name.as_deref(), Some("orders"));
        let endpoint = &monitor.data["spec"]["endpoints"][0];
        assert_eq!(endpoint["port"], "metrics");
        assert_eq!(endpoint["path"], "/metrics");
        let selector = monitor.data["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels");
        let headless = headless_service(&stream);
        let service_labels = headless.metadata.labels.expect("labels");
        for (key, value) in selector {
            assert_eq!(
                service_labels.get(key).map(String::as_str),
                value.as_str(),
                "the headless Service carries {key}"
            );
        }
        let ports = headless.spec.and_then(|s| s.ports).expect("ports");
        assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics")));
        let client_labels = crate::operator::resources::client_service(&stream)
            .metadata
            .labels
            .expect("labels");
        assert!(
            selector
                .iter()
                .any(|(key, value)| client_labels.get(key).map(String::as_str) != value.as_str()),
            "the client Service is not scraped"
        );
    }
}
