//! The custom resources Brook's operator reconciles, their CRDs and their validation.
//!
//! The schema in each CRD is generated from these types; `crds/` holds the committed output
//! of [`crds`] and a test fails when it is stale.

pub mod common;
pub mod consumer;
pub mod delivery;
pub mod queue;
pub mod stream;
pub mod validation;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use common::{GROUP, VERSION};
pub use consumer::{Consumer, ConsumerSpec, ConsumerStatus};
pub use delivery::{DeliveryStream, DeliveryStreamSpec, DeliveryStreamStatus};
pub use queue::{Queue, QueueSpec, QueueStatus};
pub use stream::{ShrinkPolicy, Stream, StreamSpec, StreamStatus};

/// Every CRD Brook installs, in a stable order: Stream, DeliveryStream, Consumer, Queue.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Stream::crd(),
        DeliveryStream::crd(),
        Consumer::crd(),
        Queue::crd(),
    ]
}

/// Renders one CRD as a YAML document, as `brook crd` prints and `crds/` stores it.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// The file name under `crds/` for a CRD, such as `streams.brook.dev.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}
