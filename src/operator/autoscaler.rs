//! The autoscaler of one stream, as the operator runs it every period: the stream's demand
//! from Prometheus, the decision of [`crate::autoscale::decide`], and the reshard through the
//! brokers. The demand history of each stream lives across evaluations and rescales (so the
//! stabilization windows hold); an operator that starts fresh seeds it with a range query.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::autoscale::queries::{QueryTemplates, Series, by_shard, observations, render};
use crate::autoscale::{Decision, Inputs, Observation, Resize, ScalingPolicy, ShardLoad, decide};

use super::kinesis::{AdminError, BrokerAdmin, OpenShard};
use super::prometheus::{PrometheusClient, PrometheusError};

/// The stream an evaluation is for, and how its demand is read.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its namespace (the `namespace` label of its brokers' series).
    pub namespace: &'a str,
    /// The Kinesis stream's name (the `stream` label).
    pub stream: &'a str,
    /// Seconds each sample's rate looks back.
    pub window_seconds: u32,
    /// The queries.
    pub queries: &'a QueryTemplates,
    /// Time between evaluations (the step of the seeding range query).
    pub period: Duration,
}

/// What one evaluation found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Open shards before.
    pub current: u32,
    /// The decision; its resize, if any, was made (an evaluation whose resize the brokers
    /// refused is an error).
    pub decision: Decision,
    /// Why the metrics could not be read this time, when they could not.
    pub metrics_error: Option<String>,
}

impl Evaluation {
    /// Whether the shard count was changed.
    pub fn resized(&self) -> bool {
        self.decision.resize != Resize::Hold
    }
}

#[derive(Debug, Clone, Default)]
struct StreamState {
    history: Vec<Observation>,
    last_scale_ms: Option<u64>,
    seeded: bool,
    next_due_ms: u64,
}

/// The histories of every autoscaled stream.
#[derive(Debug, Default)]
pub struct Autoscaler {
    streams: Mutex<HashMap<String, StreamState>>,
}

impl Target<'_> {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.stream)
    }

    /// `template` with this stream's namespace, name and window.
    fn query(&self, template: &str) -> String {
        render(template, self.namespace, self.stream, self.window_seconds)
    }
}

/// Joins the open shards with their measured loads; a shard without series has none.
pub fn shard_loads(
    open: &[OpenShard],
    bytes: &[Series],
    records: &[Series],
    throttled: &[Series],
) -> Vec<ShardLoad> {
    let (bytes, records, throttled) = (by_shard(bytes), by_shard(records), by_shard(throttled));
    open.iter()
        .map(|shard| ShardLoad {
            shard_id: shard.shard_id.clone(),
            starting_hash_key: shard.starting_hash_key,
            ending_hash_key: shard.ending_hash_key,
            parent_shard_id: shard.parent_shard_id.clone(),
            bytes_per_second: bytes.get(&shard.shard_id).copied().unwrap_or(0.0),
            records_per_second: records.get(&shard.shard_id).copied().unwrap_or(0.0),
            throttled_per_second: throttled.get(&shard.shard_id).copied().unwrap_or(0.0),
        })
        .collect()
}

/// Adds `new` samples to `history` (a sample of a time already held replaces it) and keeps
/// what the longest window needs, plus the newest sample older than that (it shows how far
/// back the measurements reach).
fn merge_history(history: &mut Vec<Observation>, new: Vec<Observation>, keep_ms: u64, now_ms: u64) {
    for sample in new {
        history.retain(|o| o.at_ms != sample.at_ms);
        history.push(sample);
    }
    history.sort_by_key(|o| o.at_ms);
    let cutoff = now_ms.saturating_sub(keep_ms);
    if let Some(last_old) = history.iter().rposition(|o| o.at_ms < cutoff) {
        history.drain(..last_old);
    }
}

impl Autoscaler {
    /// Forgets a stream (deleted, or autoscaling turned off).
    pub fn forget(&self, namespace: &str, stream: &str) {
        self.lock().remove(&format!("{namespace}/{stream}"));
    }

    /// Whether a stream's next evaluation is due at `now_ms` (a stream never evaluated is).
    pub fn due(&self, namespace: &str, stream: &str, now_ms: u64) -> bool {
        self.lock()
            .get(&format!("{namespace}/{stream}"))
            .is_none_or(|state| state.next_due_ms <= now_ms)
    }

    /// Makes a stream's next evaluation due one `period` after `now_ms`.
    pub fn postpone(&self, namespace: &str, stream: &str, now_ms: u64, period: Duration) {
        let due = now_ms.saturating_add(u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
        self.lock()
            .entry(format!("{namespace}/{stream}"))
            .or_default()
            .next_due_ms = due;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StreamState>> {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stream's demand over `range` (start, end, step), or at `now_ms` alone. The three
    /// answers are joined on their samples' times, so an instant query names its time: left
    /// to Prometheus, each of the three would be evaluated at its own millisecond and the
    /// join would lose the bytes and throttled writes of the latest sample.
    async fn stream_demand(
        prometheus: &PrometheusClient,
        target: &Target<'_>,
        range: Option<(u64, u64, u64)>,
        now_ms: u64,
    ) -> Result<Option<Vec<Observation>>, PrometheusError> {
        let run = |template: &str| {
            let query = target.query(template);
            async move {
                match range {
                    Some((start, end, step)) => prometheus.range(&query, start, end, step).await,
                    None => prometheus.instant(&query, Some(now_ms)).await,
                }
            }
        };
        let (bytes, records, throttled) = futures::try_join!(
            run(&target.queries.incoming_bytes),
            run(&target.queries.incoming_records),
            run(&target.queries.throttled)
        )?;
        Ok(observations(&bytes, &records, &throttled))
    }

    /// Evaluates one stream: reads its demand, decides, and reshards as decided. Metrics that
    /// cannot be read are reported and decided on as missing (never a scale-down); a broker
    /// that cannot be reached is an error.
    pub async fn evaluate(
        &self,
        prometheus: &PrometheusClient,
        admin: &BrokerAdmin,
        target: &Target<'_>,
        policy: &ScalingPolicy,
        now_ms: u64,
    ) -> Result<Evaluation, AdminError> {
        let key = target.key();
        let mut state = self.lock().get(&key).cloned().unwrap_or_default();
        let keep_ms = policy.scale_down_window_ms.max(policy.scale_up_window_ms) + 60_000;
        let mut metrics_error = None;
        if !state.seeded {
            let step = target.period.as_secs().max(1);
            let range = (now_ms.saturating_sub(keep_ms), now_ms, step);
            match Self::stream_demand(prometheus, target, Some(range), now_ms).await {
                Ok(seed) => {
                    merge_history(
                        &mut state.history,
                        seed.unwrap_or_default(),
                        keep_ms,
                        now_ms,
                    );
                    state.seeded = true;
                }
                Err(error) => metrics_error = Some(error.to_string()),
            }
        }
        match Self::stream_demand(prometheus, target, None, now_ms).await {
            Ok(Some(latest)) => merge_history(&mut state.history, latest, keep_ms, now_ms),
            Ok(None) => {
                metrics_error = Some(format!(
                    "Prometheus has no series of stream {} in namespace {} (are its brokers scraped as job=\"brook-broker\"?)",
                    target.stream, target.namespace
                ));
            }
            Err(error) => metrics_error = Some(error.to_string()),
        }

        let open = admin.open_shards(target.stream).await?;
        let shards = if metrics_error.is_none() {
            let (bytes, records, throttled) = (
                target.query(&target.queries.shard_incoming_bytes),
                target.query(&target.queries.shard_incoming_records),
                target.query(&target.queries.shard_throttled),
            );
            match futures::try_join!(
                prometheus.instant(&bytes, Some(now_ms)),
                prometheus.instant(&records, Some(now_ms)),
                prometheus.instant(&throttled, Some(now_ms))
            ) {
                Ok((bytes, records, throttled)) => shard_loads(&open, &bytes, &records, &throttled),
                Err(error) => {
                    metrics_error = Some(error.to_string());
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let current = u32::try_from(open.len()).unwrap_or(u32::MAX);
        let decision = decide(
            &Inputs {
                current,
                history: &state.history,
                shards: &shards,
                last_scale_ms: state.last_scale_ms,
                now_ms,
            },
            policy,
        );
        // The history is kept whatever the brokers answer below.
        self.lock().insert(key.clone(), state);
        resize(admin, target.stream, &decision.resize).await?;
        let evaluation = Evaluation {
            current,
            decision,
            metrics_error,
        };
        if evaluation.resized()
            && let Some(state) = self.lock().get_mut(&key)
        {
            state.last_scale_ms = Some(now_ms);
        }
        Ok(evaluation)
    }
}

/// Makes `resize` through the brokers' admin API.
async fn resize(admin: &BrokerAdmin, stream: &str, resize: &Resize) -> Result<(), AdminError> {
    match resize {
        Resize::Hold => Ok(()),
        Resize::ShardCount(n) => {
            admin
                .update_shard_count(stream, i32::try_from(*n).unwrap_or(i32::MAX))
                .await
        }
        Resize::Split {
            shard_id,
            new_starting_hash_key,
        } => {
            admin
                .split_shard(stream, shard_id, *new_starting_hash_key)
                .await
        }
        Resize::Merge {
            shard_id,
            adjacent_shard_id,
        } => {
            admin
                .merge_shards(stream, shard_id, adjacent_shard_id)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscaling_history_keeps_the_window_and_one_older_sample() {
        let sample = |s: u64| Observation::new(s * 1000, 1.0, 1.0);
        let mut history = Vec::new();
        merge_history(
            &mut history,
            (0..=20).map(|s| sample(s * 30)).collect(),
            300_000,
            600_000,
        );
        assert_eq!(history.first().map(|o| o.at_ms), Some(270_000));
        assert_eq!(history.len(), 12);
        // A sample of a time already held replaces it.
        merge_history(
            &mut history,
            vec![Observation::new(600_000, 9.0, 9.0)],
            300_000,
            600_000,
        );
        assert_eq!(history.len(), 12);
        assert_eq!(history.last().map(|o| o.records_per_second), Some(9.0));
    }
}
