//! The broker's Prometheus metrics: per stream and shard throughput, throttling, iterator age
//! and stored bytes (the autoscaler reads these), and request latency per operation.

use std::sync::OnceLock;

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
    open_shards: IntGaugeVec,
    queue_records: IntGaugeVec,
    requests: IntCounterVec,
    latency: HistogramVec,
    credential_reload_failures: IntCounterVec,
    reroutes: IntCounter,
    on_demand_rounds: IntCounter,
    catalog_epoch: IntGauge,
}

/// One shard's series, created on first use so an idle shard costs no series at all.
#[derive(Clone)]
pub struct ShardMetrics {
    inner: std::sync::Arc<ShardSeries>,
}

struct ShardSeries {
    stream: String,
    shard: String,
    vectors: ShardVectors,
    incoming_bytes: OnceLock<IntCounter>,
    incoming_records: OnceLock<IntCounter>,
    outgoing_bytes: OnceLock<IntCounter>,
    outgoing_records: OnceLock<IntCounter>,
    write_throttled: OnceLock<IntCounter>,
    read_throttled: OnceLock<IntCounter>,
    iterator_age: OnceLock<IntGauge>,
    stored_bytes: OnceLock<IntGauge>,
}

#[derive(Clone)]
struct ShardVectors {
    incoming_bytes: IntCounterVec,
    incoming_records: IntCounterVec,
    outgoing_bytes: IntCounterVec,
    outgoing_records: IntCounterVec,
    throttled: IntCounterVec,
    iterator_age: IntGaugeVec,
    stored_bytes: IntGaugeVec,
}

impl ShardMetrics {
    fn labels(&self) -> [&str; 2] {
        [&self.inner.stream, &self.inner.shard]
    }

    /// Bytes written (data and partition keys).
    pub fn incoming_bytes(&self) -> &IntCounter {
        self.inner.incoming_bytes.get_or_init(|| {
            self.inner
                .vectors
                .incoming_bytes
                .with_label_values(&self.labels())
        })
    }

    /// Records written.
    pub fn incoming_records(&self) -> &IntCounter {
        self.inner.incoming_records.get_or_init(|| {
            self.inner
                .vectors
                .incoming_records
                .with_label_values(&self.labels())
        })
    }

    /// Bytes returned by GetRecords.
    pub fn outgoing_bytes(&self) -> &IntCounter {
        self.inner.outgoing_bytes.get_or_init(|| {
            self.inner
                .vectors
                .outgoing_bytes
                .with_label_values(&self.labels())
        })
    }

    /// Records returned by GetRecords.
    pub fn outgoing_records(&self) -> &IntCounter {
        self.inner.outgoing_records.get_or_init(|| {
            self.inner
                .vectors
                .outgoing_records
                .with_label_values(&self.labels())
        })
    }

    /// Writes refused by the quota.
    pub fn write_throttled(&self) -> &IntCounter {
        self.inner.write_throttled.get_or_init(|| {
            self.inner.vectors.throttled.with_label_values(&[
                &self.inner.stream,
                &self.inner.shard,
                "write",
            ])
        })
    }

    /// Reads refused by the quota.
    pub fn read_throttled(&self) -> &IntCounter {
        self.inner.read_throttled.get_or_init(|| {
            self.inner.vectors.throttled.with_label_values(&[
                &self.inner.stream,
                &self.inner.shard,
                "read",
            ])
        })
    }

    /// Milliseconds the last GetRecords was behind the tip.
    pub fn iterator_age(&self) -> &IntGauge {
        self.inner.iterator_age.get_or_init(|| {
            self.inner
                .vectors
                .iterator_age
                .with_label_values(&self.labels())
        })
    }

    /// Bytes stored in the shard's segments; set only once the shard holds data.
    pub fn set_stored_bytes(&self, bytes: u64) {
        if bytes == 0 && self.inner.stored_bytes.get().is_none() {
            return;
        }
        self.inner
            .stored_bytes
            .get_or_init(|| {
                self.inner
                    .vectors
                    .stored_bytes
                    .with_label_values(&self.labels())
            })
            .set(bytes as i64);
    }
}

/// A counter family with `labels`.
pub(crate) fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

/// A gauge family with `labels`.
pub(crate) fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
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
            open_shards: gauge(
                "brook_open_shards",
                "Open shards of a stream (the ones that take writes).",
                &["stream"],
            ),
            queue_records: gauge(
                "brook_queue_records",
                "Records a queue handed out and not yet acknowledged, by state: in_flight, visible (waiting to be received again) or dead_letter.",
                &["stream", "queue", "state"],
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
            reroutes: IntCounter::new(
                "brook_put_reroutes_total",
                "Writes routed again because a reshard closed their shard meanwhile.",
            )
            .expect("static metric definition"),
            on_demand_rounds: IntCounter::new(
                "brook_on_demand_rounds_total",
                "Rounds of the ON_DEMAND autoscaler: every such stream measured and decided.",
            )
            .expect("static metric definition"),
            catalog_epoch: IntGauge::new(
                "brook_catalog_epoch",
                "Epoch of the catalog (the placement map of a cluster's shards) this broker serves with.",
            )
            .expect("static metric definition"),
            credential_reload_failures: counter(
                "brook_credentials_reload_failures_total",
                "Reloads of a credentials source that could not be read; the last good keys stay.",
                &["source"],
            ),
        };
        for collector in [
            Box::new(metrics.incoming_bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.incoming_records.clone()),
            Box::new(metrics.outgoing_bytes.clone()),
            Box::new(metrics.outgoing_records.clone()),
            Box::new(metrics.throttled.clone()),
            Box::new(metrics.iterator_age.clone()),
            Box::new(metrics.stored_bytes.clone()),
            Box::new(metrics.open_shards.clone()),
            Box::new(metrics.queue_records.clone()),
            Box::new(metrics.requests.clone()),
            Box::new(metrics.latency.clone()),
            Box::new(metrics.credential_reload_failures.clone()),
            Box::new(metrics.reroutes.clone()),
            Box::new(metrics.on_demand_rounds.clone()),
            Box::new(metrics.catalog_epoch.clone()),
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

    /// Registers collectors kept elsewhere (the store's commit counters).
    pub fn register(&self, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
        for collector in collectors {
            if let Err(error) = self.registry.register(collector) {
                tracing::warn!(%error, "a metric could not be registered");
            }
        }
    }

    /// Counts one round of the ON_DEMAND autoscaler.
    pub fn on_demand_evaluated(&self) {
        self.on_demand_rounds.inc();
    }

    /// Counts a write routed again after a reshard closed its shard.
    pub fn rerouted(&self) {
        self.reroutes.inc();
    }

    /// Writes routed again so far.
    pub fn reroutes(&self) -> u64 {
        self.reroutes.get()
    }

    /// Counts a reload of the credentials `source` (`clients` or `admin`) that failed to read.
    pub fn credentials_reload_failed(&self, source: &str) {
        self.credential_reload_failures
            .with_label_values(&[source])
            .inc();
    }

    /// Series handles for one shard, created lazily.
    pub fn shard(&self, stream: &str, shard_id: &str) -> ShardMetrics {
        ShardMetrics {
            inner: std::sync::Arc::new(ShardSeries {
                stream: stream.to_owned(),
                shard: shard_id.to_owned(),
                vectors: ShardVectors {
                    incoming_bytes: self.incoming_bytes.clone(),
                    incoming_records: self.incoming_records.clone(),
                    outgoing_bytes: self.outgoing_bytes.clone(),
                    outgoing_records: self.outgoing_records.clone(),
                    throttled: self.throttled.clone(),
                    iterator_age: self.iterator_age.clone(),
                    stored_bytes: self.stored_bytes.clone(),
                },
                incoming_bytes: OnceLock::new(),
                incoming_records: OnceLock::new(),
                outgoing_bytes: OnceLock::new(),
                outgoing_records: OnceLock::new(),
                write_throttled: OnceLock::new(),
                read_throttled: OnceLock::new(),
                iterator_age: OnceLock::new(),
                stored_bytes: OnceLock::new(),
            }),
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

    /// Sets the epoch of the catalog served with.
    pub fn set_catalog_epoch(&self, epoch: u64) {
        self.catalog_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// Sets how many open shards `stream` has.
    pub fn set_open_shards(&self, stream: &str, count: usize) {
        self.open_shards
            .with_label_values(&[stream])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets every queue's record counts: `(stream, queue, [in flight, visible, dead])`; the
    /// series of queues not listed go.
    pub fn set_queue_records(&self, queues: &[(String, String, [usize; 3])]) {
        self.queue_records.reset();
        for (stream, queue, counts) in queues {
            for (state, count) in ["in_flight", "visible", "dead_letter"].iter().zip(counts) {
                self.queue_records
                    .with_label_values(&[stream.as_str(), queue.as_str(), state])
                    .set(i64::try_from(*count).unwrap_or(i64::MAX));
            }
        }
    }

    /// Drops a deleted stream's open-shards series.
    pub fn forget_stream(&self, stream: &str) {
        let _ = self.open_shards.remove_label_values(&[stream]);
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
