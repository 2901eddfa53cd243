//! Each pod's measured write rate, for placement (`placement::place` weighs it after open
//! shards). Every pod samples the records its own shards took, every half second; the other
//! pods send their rate to pod 0 with each catalog fetch, and pod 0, which places every new
//! shard, keeps the latest rate of each pod.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::broker::state::Broker;

/// The header that carries the sender's write rate (records per second) to pod 0.
pub const RATE_HEADER: &str = "x-brook-write-rate";
/// The header that names the sending pod's ordinal.
pub const POD_HEADER: &str = "x-brook-pod";
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
