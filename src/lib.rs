//! Brook: Amazon Kinesis, self-hosted on Kubernetes.
//!
//! One crate, one binary: the Kinesis-compatible broker, the operator that runs it on
//! Kubernetes, and the Firehose-style delivery worker.

pub mod api;
pub mod autoscale;
pub mod bench;
pub mod broker;
pub mod operator;
