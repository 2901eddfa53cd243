//! A Stream's autoscaling in the Stream controller: every period (for a serving Stream with
//! `spec.autoscaling.enabled`) the autoscaler reads its demand from Prometheus, decides, and
//! reshards through the brokers; the decision goes to `status.autoscaling`, each change of the
//! shard count is an Event. It never writes spec: with autoscaling on, `status.autoscaling.
//! desiredShards` (not `spec.shards`) is what the brokers follow, so GitOps stays clean.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::autoscaler::{Evaluation, Target};
use super::context::Context;
use super::kinesis::BrokerAdmin;
use super::prometheus::{ClientSettings, Credentials, PrometheusClient};
use crate::api::Stream;
use crate::api::stream::{Autoscaling, AutoscalingStatus, PrometheusSource};
use crate::autoscale::queries::QueryTemplates;
use crate::autoscale::{Resize, ScalingPolicy};

/// Utilization moves smaller than this (in points) are not worth a status write.
const UTILIZATION_STEP: i32 = 5;

/// The autoscaling settings of a Stream that has them on.
pub fn enabled(stream: &Stream) -> Option<&Autoscaling> {
    // An ON_DEMAND stream is scaled by its brokers.
    if stream.spec.stream_mode == crate::api::stream::StreamMode::OnDemand {
        return None;
    }
    stream.spec.autoscaling.as_ref().filter(|a| a.enabled)
}

/// The open shard count the brokers should have: the autoscaler's, within its bounds, when it
/// is on; `spec.shards` otherwise.
pub fn target_shards(stream: &Stream) -> i32 {
    match enabled(stream) {
        Some(autoscaling) => stream
            .status
            .as_ref()
            .and_then(|s| s.autoscaling.as_ref())
            .and_then(|a| a.desired_shards)
            .unwrap_or(stream.spec.shards)
            .clamp(
                autoscaling.min_shards,
                autoscaling.max_shards.max(autoscaling.min_shards),
            ),
        None => stream.spec.shards,
    }
}

fn unsigned(n: i32) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(0)
}

/// The decision's policy from the Stream's spec: its bounds, target and windows, and its
/// shards' write quotas.
pub fn policy(stream: &Stream, autoscaling: &Autoscaling) -> ScalingPolicy {
    let limits = &stream.spec.limits;
    let window_seconds = autoscaling
        .prometheus
        .as_ref()
        .map_or(60, |p| p.window_seconds);
    let period_ms = u64::from(unsigned(autoscaling.period_seconds)) * 1000;
    ScalingPolicy {
        min_shards: unsigned(autoscaling.min_shards).max(1),
        max_shards: unsigned(autoscaling.max_shards).max(1),
        target_utilization_percent: unsigned(autoscaling.target_utilization_percent),
        scale_up_window_ms: u64::from(unsigned(autoscaling.scale_up_stabilization_seconds)) * 1000,
        scale_down_window_ms: u64::from(unsigned(autoscaling.scale_down_stabilization_seconds))
            * 1000,
        rate_window_ms: u64::from(unsigned(window_seconds)) * 1000,
        // Three missed periods, and never less than two minutes, make the demand stale.
        max_sample_age_ms: (3 * period_ms).max(120_000),
        ..ScalingPolicy::with_quotas(
            limits.write_bytes_per_second as f64,
            limits.write_records_per_second as f64,
        )
    }
}

/// The default queries with the Stream's overrides.
pub fn queries(source: &PrometheusSource) -> QueryTemplates {
    let defaults = QueryTemplates::default();
    let Some(overrides) = &source.queries else {
        return defaults;
    };
    let pick = |custom: &Option<String>, default: String| custom.clone().unwrap_or(default);
    QueryTemplates {
        incoming_bytes: pick(&overrides.incoming_bytes, defaults.incoming_bytes),
        incoming_records: pick(&overrides.incoming_records, defaults.incoming_records),
        throttled: pick(&overrides.throttled, defaults.throttled),
        shard_incoming_bytes: pick(
            &overrides.shard_incoming_bytes,
            defaults.shard_incoming_bytes,
        ),
        shard_incoming_records: pick(
            &overrides.shard_incoming_records,
            defaults.shard_incoming_records,
        ),
        shard_throttled: pick(&overrides.shard_throttled, defaults.shard_throttled),
    }
}

/// `status.autoscaling` after `evaluation` (`error` when the brokers failed it): a new
/// decision, reason or error, a rescale, or a utilization move of 5 points or more is written;
/// anything else keeps the previous status, so a steady stream gets no writes.
pub fn next_status(
    previous: Option<&AutoscalingStatus>,
    evaluation: Result<&Evaluation, &str>,
    now: Time,
) -> AutoscalingStatus {
    let previous = previous.cloned().unwrap_or_default();
    let Ok(evaluation) = evaluation else {
        return AutoscalingStatus {
            last_error: evaluation.err().map(str::to_owned),
            ..previous
        };
    };
    let decision = &evaluation.decision;
    let utilization = i32::try_from(decision.utilization_percent).unwrap_or(i32::MAX);
    let next = AutoscalingStatus {
        desired_shards: Some(i32::try_from(decision.desired_shards).unwrap_or(i32::MAX)),
        utilization_percent: previous.utilization_percent,
        last_scale_time: if evaluation.resized() {
            Some(now)
        } else {
            previous.last_scale_time.clone()
        },
        reason: Some(decision.reason.clone()),
        last_error: evaluation
            .metrics_error
            .clone()
            .or_else(|| decision.problem.clone()),
    };
    let moved = previous
        .utilization_percent
        .is_none_or(|before| (before - utilization).abs() >= UTILIZATION_STEP);
    if moved || next != previous {
        AutoscalingStatus {
            utilization_percent: Some(utilization),
            ..next
        }
    } else {
        previous
    }
}

/// Reads a key of a Secret in `namespace`.
async fn secret_key(
    ctx: &Context,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read Secret {name}: {e}"))?
        .ok_or_else(|| format!("Secret {name} does not exist"))?;
    // The API server answers with `data` only (it merges a written `stringData` into it).
    let bytes = secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0)
        .ok_or_else(|| format!("Secret {name} has no key {key}"))?;
    String::from_utf8(bytes).map_err(|_| format!("key {key} of Secret {name} is not text"))
}

/// The Prometheus client of a Stream's source, its credentials read from Secrets.
async fn client(
    ctx: &Context,
    namespace: &str,
    source: &PrometheusSource,
) -> Result<PrometheusClient, String> {
    let credentials = match (
        &source.bearer_token_secret_ref,
        &source.basic_auth_secret_ref,
    ) {
        (Some(token), _) => {
            Credentials::Bearer(secret_key(ctx, namespace, &token.name, &token.key).await?)
        }
        (None, Some(basic)) => Credentials::Basic {
            username: secret_key(ctx, namespace, &basic.name, "username").await?,
            password: secret_key(ctx, namespace, &basic.name, "password").await?,
        },
        (None, None) => Credentials::None,
    };
    let ca_pem = match &source.ca_secret_ref {
        Some(ca) => Some(
            secret_key(ctx, namespace, &ca.name, &ca.key)
                .await?
                .into_bytes(),
        ),
        None => None,
    };
    PrometheusClient::new(&ClientSettings {
        url: source.url.clone(),
        credentials,
        ca_pem,
        timeout: Duration::from_secs(u64::from(unsigned(source.timeout_seconds)).max(1)),
    })
    .map_err(|e| e.to_string())
}

/// The autoscaler's step for a serving Stream, when it is on and due: the new
/// `status.autoscaling`, or None to keep it as it is.
pub async fn autoscale(
    ctx: &Context,
    stream: &Stream,
    admin: &BrokerAdmin,
) -> Option<AutoscalingStatus> {
    let autoscaling = enabled(stream)?;
    let source = autoscaling.prometheus.as_ref()?;
    let namespace = stream.namespace()?;
    let name = stream.name_any();
    let now_ms = crate::broker::shard::wall_clock_ms();
    if !ctx.autoscaler.due(&namespace, &name, now_ms) {
        return None;
    }
    let period = Duration::from_secs(u64::from(unsigned(autoscaling.period_seconds)).max(1));
    // Due again one period on, whatever this evaluation meets.
    ctx.autoscaler.postpone(&namespace, &name, now_ms, period);
    let previous = stream.status.as_ref().and_then(|s| s.autoscaling.as_ref());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let queries = queries(source);
    let target = Target {
        namespace: &namespace,
        stream: &name,
        window_seconds: unsigned(source.window_seconds),
        queries: &queries,
        period,
    };
    let policy = policy(stream, autoscaling);
    let evaluated = async {
        let prometheus = client(ctx, &namespace, source).await?;
        ctx.autoscaler
            .evaluate(&prometheus, admin, &target, &policy, now_ms)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    let reference = stream.object_ref(&());
    let outcome = match &evaluated {
        Ok(evaluation) if evaluation.resized() => {
            let (verb, action) = match &evaluation.decision.resize {
                Resize::Split { .. } => ("split a shard", "SplitShard"),
                Resize::Merge { .. } => ("merged two shards", "MergeShards"),
                _ => ("resharded", "UpdateShardCount"),
            };
            ctx.event(
                &reference,
                false,
                "Autoscaled",
                action,
                format!(
                    "{verb}: {} to {} open shards ({})",
                    evaluation.current,
                    evaluation.decision.desired_shards,
                    evaluation.decision.reason
                ),
            )
            .await;
            "resized"
        }
        Ok(evaluation) if evaluation.metrics_error.is_some() => "metrics_unavailable",
        Ok(_) => "hold",
        Err(_) => "error",
    };
    ctx.metrics.autoscaler_evaluated(outcome);
    let error = match &evaluated {
        Ok(evaluation) => evaluation.metrics_error.clone(),
        Err(problem) => Some(problem.clone()),
    };
    let was = previous.and_then(|p| p.last_error.clone());
    if let Some(error) = error
        && was.as_ref() != Some(&error)
    {
        ctx.event(&reference, true, "AutoscalerError", "Autoscale", error)
            .await;
    }
    Some(next_status(
        previous,
        evaluated.as_ref().map_err(String::as_str),
        now,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::Decision;
    use crate::operator::resources::fixtures::stream;

    fn autoscaled(autoscaling: serde_json::Value) -> Stream {
        let mut stream = stream("orders");
        stream.spec.shards = 3;
        stream.spec.autoscaling = Some(serde_json::from_value(autoscaling).expect("autoscaling"));
        stream
    }

    fn evaluation(
        desired: u32,
        utilization: u32,
        resized: bool,
        error: Option<&str>,
    ) -> Evaluation {
        Evaluation {
            current: 4,
            decision: Decision {
                desired_shards: desired,
                utilization_percent: utilization,
                resize: if resized {
                    Resize::ShardCount(desired)
                } else {
                    Resize::Hold
                },
                reason: format!("wants {desired}"),
                problem: None,
            },
            metrics_error: error.map(str::to_owned),
        }
    }

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("time"))
    }

    #[test]
    fn autoscaling_target_is_the_autoscalers_count_within_bounds_and_spec_without_it() {
        let source = serde_json::json!({"url": "http://prometheus:9090"});
        let mut stream = autoscaled(
            serde_json::json!({"enabled": true, "minShards": 4, "maxShards": 8, "prometheus": source}),
        );
        assert_eq!(
            target_shards(&stream),
            4,
            "spec.shards 3 is below minShards"
        );
        stream.status = Some(crate::api::StreamStatus {
            autoscaling: Some(AutoscalingStatus {
                desired_shards: Some(6),
                ..AutoscalingStatus::default()
            }),
            ..crate::api::StreamStatus::default()
        });
        assert_eq!(target_shards(&stream), 6);
        if let Some(a) = stream.spec.autoscaling.as_mut() {
            a.enabled = false;
        }
        assert_eq!(target_shards(&stream), 3, "turned off: spec.shards rules");
    }

    #[test]
    fn autoscaling_policy_and_queries_come_from_the_spec() {
        let stream = autoscaled(serde_json::json!({
            "enabled": true, "minShards": 2, "maxShards": 9, "targetUtilizationPercent": 60,
            "scaleDownStabilizationSeconds": 600, "periodSeconds": 15,
            "prometheus": {"url": "http://p:9090", "windowSeconds": 45,
                "queries": {"throttled": "sum(rate(my_throttles{app=\"$stream\"}[$window]))"}}}));
        let autoscaling = enabled(&stream).expect("on");
        let policy = policy(&stream, autoscaling);
        assert_eq!((policy.min_shards, policy.max_shards), (2, 9));
        assert_eq!(policy.target_utilization_percent, 60);
        assert_eq!(policy.scale_down_window_ms, 600_000);
        assert_eq!(policy.rate_window_ms, 45_000);
        assert_eq!(
            policy.max_sample_age_ms, 120_000,
            "three periods, at least 2 min"
        );
        assert_eq!(policy.shard_records_per_second, 1000.0);
        let queries = queries(autoscaling.prometheus.as_ref().expect("source"));
        assert_eq!(
            queries.throttled,
            "sum(rate(my_throttles{app=\"$stream\"}[$window]))"
        );
        assert_eq!(
            queries.incoming_bytes,
            QueryTemplates::default().incoming_bytes,
            "the others keep their defaults"
        );
    }

    #[test]
    fn autoscaling_status_changes_only_when_something_worth_writing_does() {
        let first = next_status(None, Ok(&evaluation(4, 70, false, None)), at(100));
        assert_eq!(first.desired_shards, Some(4));
        assert_eq!(first.utilization_percent, Some(70));
        assert_eq!(first.last_scale_time, None);
        // A small utilization move alone keeps the status as it was: no write.
        let same = next_status(Some(&first), Ok(&evaluation(4, 73, false, None)), at(130));
        assert_eq!(same, first);
        // A larger one is written.
        let moved = next_status(Some(&first), Ok(&evaluation(4, 76, false, None)), at(160));
        assert_eq!(moved.utilization_percent, Some(76));
        // A rescale records when.
        let scaled = next_status(Some(&moved), Ok(&evaluation(8, 150, true, None)), at(190));
        assert_eq!(scaled.desired_shards, Some(8));
        assert_eq!(scaled.last_scale_time, Some(at(190)));
        // Lost metrics are reported; the last scale time stays.
        let lost = next_status(
            Some(&scaled),
            Ok(&evaluation(
                8,
                150,
                false,
                Some("Prometheus cannot be reached"),
            )),
            at(220),
        );
        assert_eq!(
            lost.last_error.as_deref(),
            Some("Prometheus cannot be reached")
        );
        assert_eq!(lost.last_scale_time, Some(at(190)));
        // A broker error keeps the decision and says why.
        let failed = next_status(Some(&lost), Err("brokers unreachable"), at(250));
        assert_eq!(failed.desired_shards, Some(8));
        assert_eq!(failed.last_error.as_deref(), Some("brokers unreachable"));
    }
}
