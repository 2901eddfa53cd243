//! The NetworkPolicy of a Stream's broker pods: the internal port, on which pods relay
//! requests to each other with the caller's identity already verified, takes connections
//! only from the stream's own broker pods. The Kinesis and metrics ports stay open to all.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    CLUSTER_PORT_NAME, ChildNames, KINESIS_PORT_NAME, METRICS_PORT_NAME, child_meta,
    selector_labels,
};
use crate::api::Stream;

fn port(name: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        end_port: None,
    }
}

/// The policy: the Kinesis and metrics ports from anywhere, the internal port from the
/// stream's broker pods only.
pub fn network_policy(stream: &Stream) -> NetworkPolicy {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    let brokers = LabelSelector {
        match_labels: Some(selector_labels(name)),
        match_expressions: None,
    };
    NetworkPolicy {
        metadata: child_meta(stream, &ChildNames::for_stream(name).network_policy),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(brokers.clone()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(KINESIS_PORT_NAME), port(METRICS_PORT_NAME)]),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(CLUSTER_PORT_NAME)]),
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(brokers),
                        ..NetworkPolicyPeer::default()
                    }]),
                },
            ]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::resources::fixtures::stream;

    #[test]
    fn cluster_internal_port_takes_only_the_streams_own_broker_pods() {
        let policy = network_policy(&stream("orders"));
        assert_eq!(policy.metadata.name.as_deref(), Some("orders"));
        let spec = policy.spec.expect("spec");
        let own_pods = Some(selector_labels("orders"));
        assert_eq!(spec.pod_selector.and_then(|s| s.match_labels), own_pods);
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let rules = spec.ingress.expect("ingress rules");
        let ports = |rule: &NetworkPolicyIngressRule| -> Vec<IntOrString> {
            rule.ports
                .iter()
                .flatten()
                .filter_map(|p| p.port.clone())
                .collect()
        };
        assert_eq!(rules.len(), 2);
        // The API and metrics: from anywhere.
        assert_eq!(
            ports(&rules[0]),
            [
                IntOrString::String("kinesis".to_owned()),
                IntOrString::String("metrics".to_owned())
            ]
        );
        assert_eq!(rules[0].from, None);
        // The internal port: from the stream's broker pods, nothing else.
        assert_eq!(
            ports(&rules[1]),
            [IntOrString::String("cluster".to_owned())]
        );
        let from = rules[1].from.clone().expect("a peer list");
        assert_eq!(from.len(), 1);
        assert_eq!(
            from[0].pod_selector.clone().and_then(|s| s.match_labels),
            own_pods
        );
        assert_eq!(from[0].namespace_selector, None, "this namespace only");
        assert_eq!(from[0].ip_block, None);
    }
}
