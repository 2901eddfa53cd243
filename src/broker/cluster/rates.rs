//! Each pod's measured write rate, for placement (`placement::place` weighs it after open
//! shards). Every pod samples the records its own shards took, every half second; the other
//! pods send their rate to pod 0 with each catalog fetch, and pod 0, which places every new
//! shard, keeps the latest rate of each pod.
//!
//! With it each pod sends the write demand of the shards it owns, by stream (the bytes and
//! records clients asked to write, refused ones included): pod 0 scales ON_DEMAND streams
//! from the demand on every pod, not only its own shards'.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::broker::state::Broker;

/// The header that carries the sender's write rate (records per second) to pod 0.
pub const RATE_HEADER: &str = "x-brook-write-rate";
/// The header that names the sending pod's ordinal.
pub const POD_HEADER: &str = "x-brook-pod";
/// The header that carries the sender's write demand by stream ([`encode_demand`]).
pub const DEMAND_HEADER: &str = "x-brook-demand";

/// Write demand by stream key: bytes and records asked to be written since the pod started.
pub type StreamDemand = BTreeMap<u32, (u64, u64)>;

/// The write demand on `stream`'s shards owned by `owner` (every shard when `None`): bytes
/// and records since this pod started.
pub fn shard_demand(stream: &crate::broker::state::LiveStream, owner: Option<u32>) -> (u64, u64) {
    stream
        .shards
        .iter()
        .filter(|shard| owner.is_none_or(|o| shard.owner == o))
        .map(|shard| shard.quota.demand())
        .fold((0, 0), |a, d| (a.0 + d.0, a.1 + d.1))
}

/// The write demand on the shards pod `here` owns, by stream.
pub fn owned_demand(broker: &Broker, here: u32) -> StreamDemand {
    broker
        .streams()
        .iter()
        .map(|stream| (stream.record.key, shard_demand(stream, Some(here))))
        .collect()
}

/// `key:bytes:records` for each stream, comma-separated.
pub fn encode_demand(demand: &StreamDemand) -> String {
    demand
        .iter()
        .map(|(key, (bytes, records))| format!("{key}:{bytes}:{records}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads [`encode_demand`]'s form; `None` when any part is malformed.
pub fn parse_demand(text: &str) -> Option<StreamDemand> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut fields = part.split(':').map(str::parse::<u64>);
            let key = u32::try_from(fields.next()?.ok()?).ok()?;
            let bytes = fields.next()?.ok()?;
            let records = fields.next()?.ok()?;
            fields.next().is_none().then_some((key, (bytes, records)))
        })
        .collect()
}

/// How far back a rate looks: long enough that a write now and then on a busy machine is
/// not read as no load.
pub const WINDOW: Duration = Duration::from_secs(5);
/// How long a pod's reported rate counts: a pod that stopped reporting has no known load.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// Records every shard on this pod took since it started.
pub fn written_records(broker: &Broker) -> u64 {
    broker
        .streams()
        .iter()
        .flat_map(|stream| stream.shards.iter())
        .map(|shard| shard.metrics.incoming_records().get())
        .sum()
}

/// This pod's write rate over the last [`WINDOW`], from samples of [`written_records`].
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Adds the sample `total` taken at `at` and returns the rate over the window.
    pub fn sample(&mut self, at: Instant, total: u64) -> f64 {
        self.samples.push_back((at, total));
        while self
            .samples
            .front()
            .is_some_and(|(first, _)| at.duration_since(*first) > WINDOW)
        {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(first, first_total)) if at > first => {
                total.saturating_sub(first_total) as f64 / at.duration_since(first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// The latest write rate of each pod, as pod 0 heard them.
#[derive(Debug, Default)]
pub struct PodRates {
    by_pod: Mutex<HashMap<u32, (f64, Instant)>>,
    demand_by_pod: Mutex<HashMap<u32, StreamDemand>>,
}

impl PodRates {
    /// Records pod `ordinal`'s rate.
    pub fn record(&self, ordinal: u32, rate: f64, at: Instant) {
        if rate.is_finite() && rate >= 0.0 {
            self.by_pod
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ordinal, (rate, at));
        }
    }

    /// Records the write demand pod `ordinal` reported for the shards it owns.
    pub fn record_demand(&self, ordinal: u32, demand: StreamDemand) {
        self.demand_by_pod
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(ordinal, demand);
    }

    /// The write demand on stream `stream_key`'s shards that pods other than `here`
    /// reported last (a pod that stopped reporting keeps its last totals: no demand since).
    pub fn reported_demand(&self, stream_key: u32, here: u32) -> (u64, u64) {
        self.demand_by_pod
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(pod, _)| **pod != here)
            .filter_map(|(_, demand)| demand.get(&stream_key))
            .fold((0, 0), |a, d| (a.0 + d.0, a.1 + d.1))
    }

    /// Every pod's rate still fresh at `now`.
    pub fn current(&self, now: Instant) -> HashMap<u32, f64> {
        self.by_pod
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) <= STALE_AFTER)
            .map(|(ordinal, (rate, _))| (*ordinal, *rate))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_write_rate_is_measured_over_the_window() {
        let start = Instant::now();
        let mut meter = RateMeter::default();
        assert_eq!(meter.sample(start, 100), 0.0, "one sample: no rate yet");
        assert_eq!(meter.sample(start + Duration::from_secs(1), 300), 200.0);
        assert_eq!(meter.sample(start + Duration::from_secs(2), 300), 100.0);
        // The first two samples leave the window; the rate is over what remains.
        assert_eq!(meter.sample(start + Duration::from_millis(6500), 300), 0.0);
    }

    #[test]
    fn cluster_demand_by_stream_is_carried_in_a_header_and_summed_over_other_pods() {
        let demand = StreamDemand::from([(3, (1024, 10)), (7, (0, 0))]);
        let text = encode_demand(&demand);
        assert_eq!(text, "3:1024:10,7:0:0");
        assert_eq!(parse_demand(&text), Some(demand.clone()));
        assert_eq!(parse_demand(""), Some(StreamDemand::new()));
        assert_eq!(parse_demand("3:1024"), None, "a field missing");
        assert_eq!(parse_demand("3:1:2:4"), None, "a field too many");
        assert_eq!(parse_demand("x:1:2"), None);
        let rates = PodRates::default();
        rates.record_demand(1, demand);
        rates.record_demand(2, StreamDemand::from([(3, (100, 1))]));
        rates.record_demand(0, StreamDemand::from([(3, (5, 5))]));
        assert_eq!(
            rates.reported_demand(3, 0),
            (1124, 11),
            "pod 0's own is not counted"
        );
        assert_eq!(rates.reported_demand(9, 0), (0, 0));
        rates.record_demand(2, StreamDemand::from([(3, (50, 1))]));
        assert_eq!(
            rates.reported_demand(3, 0),
            (1074, 11),
            "the latest report counts"
        );
    }

    #[test]
    fn cluster_pod_rates_forget_pods_that_stopped_reporting() {
        let start = Instant::now();
        let rates = PodRates::default();
        rates.record(1, 50.0, start);
        rates.record(2, f64::NAN, start);
        rates.record(0, 5.0, start + Duration::from_secs(8));
        let now = start + Duration::from_secs(12);
        assert_eq!(rates.current(now), HashMap::from([(0, 5.0)]));
        assert_eq!(rates.current(start).get(&1), Some(&50.0));
    }
}
