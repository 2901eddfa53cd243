//! Brook: Amazon Kinesis, self-hosted on Kubernetes.
//!
//! One crate, one binary: the Kinesis-compatible broker, the operator that runs it on
//! Kubernetes (the Firehose-style delivery of `DeliveryStream` resources is not built yet).

pub mod api;
pub mod autoscale;
pub mod bench;
pub mod broker;
pub mod operator;
pub mod probe;
