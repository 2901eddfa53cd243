//! The PodDisruptionBudget of a Stream's brokers: voluntary evictions (node drains, cluster
//! upgrades) take at most one broker pod down at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ChildNames, child_meta, selector_labels};
use crate::api::Stream;

/// The budget: one broker may be unavailable. `maxUnavailable` rather than `minAvailable`
/// so a one-broker stream can still be drained.
pub fn pod_disruption_budget(stream: &Stream) -> PodDisruptionBudget {
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    PodDisruptionBudget {
        metadata: child_meta(stream, &ChildNames::for_stream(name).pod_disruption_budget),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::resources::fixtures::stream;

    #[test]
    fn one_broker_may_be_evicted_at_a_time() {
        let pdb = pod_disruption_budget(&stream("orders"));
        assert_eq!(pdb.metadata.name.as_deref(), Some("orders"));
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            Some(selector_labels("orders"))
        );
    }
}
