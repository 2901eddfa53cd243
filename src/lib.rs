//! Brook: Amazon Kinesis, self-hosted on Kubernetes.
//!
//! One crate, one binary: the Kinesis-compatible broker, the operator that runs it on
//! Kubernetes (of the Firehose-style delivery of `DeliveryStream` resources, only the KPL
//! de-aggregation and the S3 object keys are built yet).

pub mod api;
pub mod autoscale;
pub mod bench;
pub mod broker;
pub mod delivery;
pub mod gateway;
pub mod http1;
pub mod operator;
pub mod probe;
