//! The delivery worker's Prometheus metrics, and the freshness it computes at scrape time:
//! the age of the oldest record not yet delivered, buffered or still unread.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::proto::{LabelPair, MetricFamily};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Why a metric could not be registered (a name used twice).
#[derive(Debug, thiserror::Error)]
#[error("registering delivery metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// What one partition holds back from delivery.
#[derive(Debug, Clone, Copy, Default)]
struct Lag {
    /// Arrival time of its oldest buffered record.
    oldest_buffered_ms: Option<u64>,
    /// How far its reader is behind the source's newest record.
    behind_ms: u64,
}

/// The worker's metrics.
pub struct DeliveryMetrics {
    registry: Registry,
    /// Records read from the source or put.
    pub records_in: IntCounter,
    /// Their bytes.
    pub bytes_in: IntCounter,
    /// Records delivered (after processing).
    pub records_delivered: IntCounter,
    /// Bytes delivered (after processing, before compression).
    pub bytes_delivered: IntCounter,
    /// Batches delivered, by what made them due.
    pub batches: IntCounterVec,
    /// Seconds from a batch's oldest record's arrival to the destination's acknowledgment.
    pub latency: Histogram,
    /// Retried destination calls.
    pub retries: IntCounter,
    /// Records sent to the error output, by error type.
    pub failed_records: IntCounterVec,
    /// Bytes buffered across partitions.
    pub buffer_bytes: IntGauge,
    /// Source partitions (shards, or the journal) being read.
    pub partitions: IntGauge,
    /// When the last batch was delivered, in Unix seconds.
    pub last_delivery: IntGauge,
    freshness: IntGauge,
    lag: Mutex<HashMap<String, Lag>>,
}

impl DeliveryMetrics {
    /// Registers the metrics.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let records_in = counter(
            "brook_delivery_incoming_records_total",
            "Records read from the source stream or put directly",
        )?;
        let bytes_in = counter(
            "brook_delivery_incoming_bytes_total",
            "Bytes read from the source stream or put directly",
        )?;
        let records_delivered = counter(
            "brook_delivery_delivered_records_total",
            "Records delivered to the destination, after processing",
        )?;
        let bytes_delivered = counter(
            "brook_delivery_delivered_bytes_total",
            "Bytes delivered to the destination, after processing and before compression",
        )?;
        let retries = counter(
            "brook_delivery_retries_total",
            "Destination calls that failed and were retried",
        )?;
        let batches = IntCounterVec::new(
            Opts::new(
                "brook_delivery_batches_total",
                "Batches delivered, by what made them due",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(batches.clone()))?;
        let failed_records = IntCounterVec::new(
            Opts::new(
                "brook_delivery_failed_records_total",
                "Records written to the error output, by error type",
            ),
            &["type"],
        )?;
        registry.register(Box::new(failed_records.clone()))?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "brook_delivery_latency_seconds",
                "From a batch's oldest record's arrival to the destination's acknowledgment",
            )
            .buckets(vec![
                0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
            ]),
        )?;
        registry.register(Box::new(latency.clone()))?;
        let buffer_bytes = IntGauge::new(
            "brook_delivery_buffer_bytes",
            "Bytes buffered for delivery across partitions",
        )?;
        registry.register(Box::new(buffer_bytes.clone()))?;
        let partitions = IntGauge::new(
            "brook_delivery_source_partitions",
            "Source partitions (shards of the source stream, or the direct-put journal) being read",
        )?;
        registry.register(Box::new(partitions.clone()))?;
        let last_delivery = IntGauge::new(
            "brook_delivery_last_delivery_timestamp_seconds",
            "When the last batch was delivered, in Unix seconds (0 before the first)",
        )?;
        registry.register(Box::new(last_delivery.clone()))?;
        let freshness = IntGauge::new(
            "brook_delivery_data_freshness_seconds",
            "Age of the oldest record not yet delivered",
        )?;
        registry.register(Box::new(freshness.clone()))?;
        Ok(Self {
            registry,
            records_in,
            bytes_in,
            records_delivered,
            bytes_delivered,
            batches,
            latency,
            retries,
            failed_records,
            buffer_bytes,
            partitions,
            last_delivery,
            freshness,
            lag: Mutex::new(HashMap::new()),
        })
    }

    fn with_lag(&self, partition: &str, change: impl FnOnce(&mut Lag)) {
        let mut lag = self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(lag.entry(partition.to_owned()).or_default());
    }

    /// A partition buffered a record that arrived at `arrival_ms`.
    pub fn buffered(&self, partition: &str, arrival_ms: u64) {
        self.with_lag(partition, |lag| {
            lag.oldest_buffered_ms = Some(
                lag.oldest_buffered_ms
                    .map_or(arrival_ms, |o| o.min(arrival_ms)),
            );
        });
    }

    /// A partition delivered everything it buffered.
    pub fn drained(&self, partition: &str) {
        self.with_lag(partition, |lag| lag.oldest_buffered_ms = None);
    }

    /// A partition's reader is `behind_ms` behind its source.
    pub fn behind(&self, partition: &str, behind_ms: u64) {
        self.with_lag(partition, |lag| lag.behind_ms = behind_ms);
    }

    /// A partition ended (a finished shard): it holds nothing back any more.
    pub fn forget(&self, partition: &str) {
        self.lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(partition);
    }

    /// The age of the oldest undelivered record at `now_ms`, in milliseconds.
    pub fn freshness_ms(&self, now_ms: u64) -> u64 {
        let lag = self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lag.values()
            .map(|l| {
                let buffered = l.oldest_buffered_ms.map_or(0, |o| now_ms.saturating_sub(o));
                buffered.max(l.behind_ms)
            })
            .max()
            .unwrap_or(0)
    }

    /// The metric families, freshness computed at `now_ms`.
    pub fn gather(&self, now_ms: u64) -> Vec<MetricFamily> {
        self.freshness
            .set((self.freshness_ms(now_ms) / 1000) as i64);
        self.registry.gather()
    }

    /// The text exposition, freshness computed now.
    pub fn render(&self, now_ms: u64) -> Vec<u8> {
        encode(&self.gather(now_ms))
    }
}

/// The text exposition of `families`.
pub fn encode(families: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding into memory only fails on a metric family without samples of its type.
    let _ = TextEncoder::new().encode(families, &mut out);
    out
}

/// The families of several workers as one exposition: every sample of a worker gets the
/// label its entry names (`channel="clicks-to-lake"`), and families of the same name are
/// merged, so each name has one HELP and TYPE line.
pub fn merge_labelled(workers: Vec<((&str, String), Vec<MetricFamily>)>) -> Vec<MetricFamily> {
    let mut merged: std::collections::BTreeMap<String, MetricFamily> =
        std::collections::BTreeMap::new();
    for ((label, value), families) in workers {
        for mut family in families {
            let mut samples = family.take_metric();
            for sample in &mut samples {
                let mut labels = sample.get_label().to_vec();
                let mut pair = LabelPair::default();
                pair.set_name(label.to_owned());
                pair.set_value(value.clone());
                labels.push(pair);
                sample.set_label(labels);
            }
            merged
                .entry(family.name().to_owned())
                .or_insert(family)
                .mut_metric()
                .extend(samples);
        }
    }
    merged.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_freshness_is_the_oldest_undelivered_record() {
        let metrics = DeliveryMetrics::new().expect("metrics");
        assert_eq!(metrics.freshness_ms(10_000), 0);
        metrics.buffered("a", 4_000);
        metrics.buffered("a", 6_000);
        metrics.behind("b", 2_000);
        assert_eq!(metrics.freshness_ms(10_000), 6_000);
        metrics.drained("a");
        assert_eq!(metrics.freshness_ms(10_000), 2_000);
        metrics.forget("b");
        assert_eq!(metrics.freshness_ms(10_000), 0);
        let text = String::from_utf8(metrics.render(10_000)).expect("utf-8");
        assert!(text.contains("brook_delivery_data_freshness_seconds 0"));
    }

    #[test]
    fn channel_metrics_of_several_workers_are_one_labelled_exposition() {
        let (a, b) = (
            DeliveryMetrics::new().expect("a"),
            DeliveryMetrics::new().expect("b"),
        );
        a.records_delivered.inc_by(3);
        b.records_delivered.inc_by(5);
        b.failed_records
            .with_label_values(&["processing-failed"])
            .inc();
        let merged = merge_labelled(vec![
            (("channel", "a".to_owned()), a.gather(0)),
            (("delivery_stream", "b".to_owned()), b.gather(0)),
        ]);
        let text = String::from_utf8(encode(&merged)).expect("utf-8");
        assert!(
            text.contains("brook_delivery_delivered_records_total{channel=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("brook_delivery_delivered_records_total{delivery_stream=\"b\"} 5"),
            "{text}"
        );
        assert!(
            text.contains(
                "brook_delivery_failed_records_total{type=\"processing-failed\",delivery_stream=\"b\"} 1"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE brook_delivery_delivered_records_total")
                .count(),
            1
        );
    }
}
