//! ON_DEMAND streams in a standalone broker: a task that measures each stream's write
//! demand and rescales its shards with [`crate::autoscale::decide`], the same decision the
//! operator's autoscaler makes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::autoscale::{Inputs, Observation, ScalingPolicy, decide};

use super::catalog::StreamMode;
use super::state::{Broker, LiveStream};

/// How the ON_DEMAND autoscaler behaves.
#[derive(Debug, Clone, Copy)]
pub struct OnDemandSettings {
    /// Time between measurements.
    pub interval: Duration,
    /// How long demand must hold before adding shards.
    pub scale_up_window: Duration,
    /// How long demand must stay low before removing shards.
    pub scale_down_window: Duration,
    /// Share of the write quota to fill, in percent.
    pub target_utilization_percent: u32,
}

struct Measured {
    stream_key: u32,
    last_totals: (u64, u64),
    last_ms: u64,
    history: VecDeque<Observation>,
}

/// The write demand on `stream` since its pods started (bytes, records; refused writes
/// included): its shards here, and in a cluster the totals the other pods last reported
/// for theirs.
fn demand(broker: &Broker, stream: &LiveStream) -> (u64, u64) {
    let Some(cluster) = broker.cluster.get() else {
        return super::cluster::rates::shard_demand(stream, None);
    };
    let local = super::cluster::rates::shard_demand(stream, Some(cluster.ordinal));
    let reported = cluster
        .rates
        .reported_demand(stream.record.key, cluster.ordinal);
    (local.0 + reported.0, local.1 + reported.1)
}

/// Measures and rescales every ON_DEMAND stream, forever.
pub async fn run(broker: Arc<Broker>, settings: OnDemandSettings) {
    let mut measured: HashMap<String, Measured> = HashMap::new();
    let keep_ms = settings
        .scale_up_window
        .max(settings.scale_down_window)
        .as_millis() as u64
        + 1000;
    loop {
        tokio::time::sleep(settings.interval).await;
        let now = broker.clock.now_ms();
        for stream in broker.streams() {
            if stream.record.mode != StreamMode::OnDemand
                || stream.status(now, broker.settings.transition_ms) != "ACTIVE"
            {
                continue;
            }
            let totals = demand(&broker, &stream);
            let entry = measured
                .entry(stream.record.name.clone())
                .or_insert(Measured {
                    stream_key: stream.record.key,
                    last_totals: totals,
                    last_ms: now,
                    history: VecDeque::new(),
                });
            if entry.stream_key != stream.record.key {
                *entry = Measured {
                    stream_key: stream.record.key,
                    last_totals: totals,
                    last_ms: now,
                    history: VecDeque::new(),
                };
                continue;
            }
            let seconds = now.saturating_sub(entry.last_ms) as f64 / 1000.0;
            if seconds <= 0.0 {
                continue;
            }
            // Shards that expired leave the totals: measure from the new baseline.
            if totals.0 < entry.last_totals.0 || totals.1 < entry.last_totals.1 {
                entry.last_totals = totals;
                entry.last_ms = now;
                continue;
            }
            // Demand counts what the quotas refused too, so nothing is throttled on top.
            entry.history.push_back(Observation::new(
                now,
                totals.0.saturating_sub(entry.last_totals.0) as f64 / seconds,
                totals.1.saturating_sub(entry.last_totals.1) as f64 / seconds,
            ));
            entry.last_totals = totals;
            entry.last_ms = now;
            // Older samples go, but the newest of them stays: it shows how far back the
            // measurements reach, which a scale-down's window must be covered by.
            while entry
                .history
                .get(1)
                .is_some_and(|o| o.at_ms + keep_ms < now)
            {
                entry.history.pop_front();
            }
            let quota = stream
                .shards
                .first()
                .map(|s| s.quota.settings())
                .unwrap_or(broker.settings.quotas);
            let policy = ScalingPolicy {
                min_shards: 1,
                max_shards: broker.settings.shard_limit,
                target_utilization_percent: settings.target_utilization_percent,
                scale_up_window_ms: settings.scale_up_window.as_millis() as u64,
                scale_down_window_ms: settings.scale_down_window.as_millis() as u64,
                // Measured every interval: three missed intervals make the demand stale.
                max_sample_age_ms: 3 * settings.interval.as_millis() as u64,
                ..ScalingPolicy::with_quotas(
                    quota.write_bytes_per_second as f64,
                    quota.write_records_per_second as f64,
                )
            };
            let open = stream.record.open_shard_count() as u32;
            let history: Vec<Observation> = entry.history.iter().copied().collect();
            let decision = decide(
                &Inputs {
                    current: open,
                    history: &history,
                    shards: &[],
                    last_scale_ms: None,
                    now_ms: now,
                },
                &policy,
            );
            if decision.desired_shards != open {
                tracing::info!(stream = %stream.record.name, from = open, to = decision.desired_shards, reason = %decision.reason, "on-demand rescale");
                if let Err(error) = super::ops::reshard::scale_to(
                    &broker,
                    &stream.record.name,
                    decision.desired_shards,
                )
                .await
                {
                    tracing::warn!(stream = %stream.record.name, %error, "on-demand rescale failed");
                }
                // The history is the stream's demand, whatever its shards: it is kept across
                // the rescale, so the stabilization windows hold instead of starting over.
            }
        }
        broker.metrics.on_demand_evaluated();
        measured.retain(|name, _| broker.stream(name).is_some());
        expire_closed_shards(&broker, now).await;
    }
}

/// Marks shards closed longer ago than their stream's retention as expired: their records
/// are gone (the store deletes their segments), so they leave listings, as in Kinesis.
pub async fn expire_closed_shards(broker: &Arc<Broker>, now_ms: u64) {
    for stream in broker.streams() {
        let retention = stream.record.retention_ms();
        let due = stream.record.shards.iter().any(|s| {
            !s.expired
                && s.closed_ms
                    .is_some_and(|closed| closed + retention < now_ms)
        });
        if !due {
            continue;
        }
        let result = super::ops::modify_stream(broker, &stream.record.name, |record| {
            for shard in &mut record.shards {
                if shard
                    .closed_ms
                    .is_some_and(|closed| closed + retention < now_ms)
                {
                    shard.expired = true;
                }
            }
            Ok(())
        })
        .await;
        if let Err(error) = result {
            tracing::warn!(stream = %stream.record.name, %error, "could not expire closed shards");
        }
    }
}
