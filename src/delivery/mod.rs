//! Firehose-style delivery (the `DeliveryStream` worker). Built so far: the processing stage's
//! de-aggregation of KPL-aggregated records ([`kpl`]) and the S3 object keys ([`naming`]); the
//! sources, buffering, destinations and the controller are not built yet.

pub mod kpl;
pub mod naming;
