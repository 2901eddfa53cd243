//! The broker's Prometheus metrics: per stream and shard throughput, throttling, iterator age
//! and stored bytes (the autoscaler reads these), and request latency per operation.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::protocol::Operation;

/// Every metric the broker exports.
pub struct Metrics {
    registry: Registry,
    incoming_bytes: IntCounterVec,
    incoming_records: IntCounterVec,
    outgoing_bytes: IntCounterVec,
    outgoing_records: IntCounterVec,
    throttled: IntCounterVec,
    iterator_age: IntGaugeVec,
    stored_bytes: IntGaugeVec,
    requests: IntCounterVec,
    latency: HistogramVec,
}

/// Handles to one shard's series, so the hot path does no label lookups.
#[derive(Clone)]
pub struct ShardMetrics {
    /// Bytes written (data and partition keys).
    pub incoming_bytes: IntCounter,
    /// Records written.
    pub incoming_records: IntCounter,
    /// Bytes returned by GetRecords.
    pub outgoing_bytes: IntCounter,
    /// Records returned by GetRecords.
    pub outgoing_records: IntCounter,
    /// Writes refused by the quota.
    pub write_throttled: IntCounter,
    /// Reads refused by the quota.
    pub read_throttled: IntCounter,
    /// Milliseconds the last GetRecords was behind the tip.
    pub iterator_age: IntGauge,
    /// Bytes stored in the shard's segments.
    pub stored_bytes: IntGauge,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let shard = ["stream", "shard"];
        let metrics = Self {
            registry: Registry::new(),
            incoming_bytes: counter(
                "brook_incoming_bytes_total",
                "Bytes written to a shard.",
                &shard,
            ),
            incoming_records: counter(
                "brook_incoming_records_total",
                "Records written to a shard.",
                &shard,
            ),
            outgoing_bytes: counter(
                "brook_outgoing_bytes_total",
                "Bytes read from a shard by GetRecords.",
                &shard,
            ),
            outgoing_records: counter(
                "brook_outgoing_records_total",
                "Records read from a shard by GetRecords.",
                &shard,
            ),
            throttled: counter(
                "brook_throttled_requests_total",
                "Requests or records refused by a shard's quota.",
                &["stream", "shard", "direction"],
            ),
            iterator_age: gauge(
                "brook_iterator_age_milliseconds",
                "How far behind the newest record the last GetRecords call was.",
                &shard,
            ),
            stored_bytes: gauge(
                "brook_stored_bytes",
                "Bytes held in a shard's segments.",
                &shard,
            ),
            requests: counter(
                "brook_requests_total",
                "Kinesis API requests by operation and outcome.",
                &["operation", "outcome"],
            ),
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "brook_request_duration_seconds",
                    "Kinesis API request latency.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["operation"],
            )
            .expect("static metric definition"),
        };
        for collector in [
            Box::new(metrics.incoming_bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.incoming_records.clone()),
            Box::new(metrics.outgoing_bytes.clone()),
            Box::new(metrics.outgoing_records.clone()),
            Box::new(metrics.throttled.clone()),
            Box::new(metrics.iterator_age.clone()),
            Box::new(metrics.stored_bytes.clone()),
            Box::new(metrics.requests.clone()),
            Box::new(metrics.latency.clone()),
        ] {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        for operation in Operation::ALL {
            metrics.latency.with_label_values(&[operation.name()]);
        }
        metrics
    }

    /// Series handles for one shard.
    pub fn shard(&self, stream: &str, shard_id: &str) -> ShardMetrics {
        let labels = [stream, shard_id];
        ShardMetrics {
            incoming_bytes: self.incoming_bytes.with_label_values(&labels),
            incoming_records: self.incoming_records.with_label_values(&labels),
            outgoing_bytes: self.outgoing_bytes.with_label_values(&labels),
            outgoing_records: self.outgoing_records.with_label_values(&labels),
            write_throttled: self
                .throttled
                .with_label_values(&[stream, shard_id, "write"]),
            read_throttled: self
                .throttled
                .with_label_values(&[stream, shard_id, "read"]),
            iterator_age: self.iterator_age.with_label_values(&labels),
            stored_bytes: self.stored_bytes.with_label_values(&labels),
        }
    }

    /// Drops a deleted shard's series.
    pub fn forget_shard(&self, stream: &str, shard_id: &str) {
        let labels = [stream, shard_id];
        for vec in [
            &self.incoming_bytes,
            &self.incoming_records,
            &self.outgoing_bytes,
            &self.outgoing_records,
        ] {
            let _ = vec.remove_label_values(&labels);
        }
        for direction in ["write", "read"] {
            let _ = self
                .throttled
                .remove_label_values(&[stream, shard_id, direction]);
        }
        let _ = self.iterator_age.remove_label_values(&labels);
        let _ = self.stored_bytes.remove_label_values(&labels);
    }

    /// Records one request's outcome and latency.
    pub fn observe(&self, operation: Option<Operation>, outcome: &str, seconds: f64) {
        let name = operation.map_or("Unknown", Operation::name);
        self.requests.with_label_values(&[name, outcome]).inc();
        if let Some(operation) = operation {
            self.latency
                .with_label_values(&[operation.name()])
                .observe(seconds);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
