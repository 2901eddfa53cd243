//! Firehose-style delivery (the `DeliveryStream` worker). Built so far: the processing stage's
//! de-aggregation of KPL-aggregated records ([`kpl`]); the sources, buffering, destinations and
//! the controller are not built yet.

pub mod kpl;
